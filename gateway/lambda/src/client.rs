//! Invoking through aws-sdk-lambda. Each worker thread keeps its own client per connection
//! settings, so an invocation and its pooled connections stay on the worker's runtime;
//! credentials (and their cache, refreshed ahead of expiry: [`Refreshing`]) are shared by
//! every worker, so the default chain, IMDS or STS is asked once per process, not once per
//! worker.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_lambda::config::{Region, timeout::TimeoutConfig};
use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{SharedHttpClient, SharedHttpConnector, http_client_fn};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;

use super::config::LambdaConfig;
use super::credentials::Refreshing;
use super::response::{Failure, Invoked};

/// What makes two instances' credentials the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CredentialsKey {
    key: Option<String>,
    secret: Option<String>,
    assume_role_arn: Option<String>,
    role_session_name: Option<String>,
    sts_endpoint_url: Option<String>,
    /// STS is reached through the proxy too, as Kong does.
    proxy_url: Option<String>,
    region: String,
}

/// What makes two instances' clients the same (Kong's service cache key); an instance works
/// it out once, when it is built.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    credentials: CredentialsKey,
    endpoint: Option<String>,
    timeout_ms: u64,
    keepalive_ms: u64,
}

/// Clients (per worker) and credentials kept, as Kong's lrucache of 1,000: every distinct
/// config (a rotated secret, a new timeout) adds one, and the least recently used go.
const KEPT: usize = 1000;

thread_local! {
    static CLIENTS: RefCell<quick_cache::unsync::Cache<ClientKey, aws_sdk_lambda::Client>> =
        RefCell::new(quick_cache::unsync::Cache::new(KEPT));
}

static CREDENTIALS: LazyLock<quick_cache::sync::Cache<CredentialsKey, SharedCredentialsProvider>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(KEPT));

/// The HTTP client the default chain's providers (IMDS, ECS, web identity) use: never
/// through a proxy, as the instance and task endpoints are local.
static CREDENTIALS_HTTP: LazyLock<SharedHttpClient> = LazyLock::new(|| {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
});

/// How long a proxied STS client keeps an idle connection: credentials are refreshed about
/// hourly, so a connection seldom outlives its call.
const STS_IDLE: Duration = Duration::from_secs(60);

/// An HTTP(S) client on rustls with ring, closing idle connections after `idle`, that sends
/// every request through `proxy` when there is one (Kong's `proxy_url`: an http proxy,
/// tunnelling https with CONNECT).
fn http_client(idle: Duration, proxy: Option<&str>) -> Result<SharedHttpClient, String> {
    let Some(url) = proxy else {
        return Ok(aws_smithy_http_client::Builder::new()
            .pool_idle_timeout(idle)
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https());
    };
    let proxy = ProxyConfig::all(url).map_err(|e| format!("proxy_url {url}: {e}"))?;
    let connector = SharedHttpConnector::new(
        Connector::builder()
            .pool_idle_timeout(idle)
            .proxy_config(proxy)
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build(),
    );
    Ok(http_client_fn(move |_, _| connector.clone()))
}

impl ClientKey {
    /// The key of `conf`'s clients; `None` without a region.
    pub(crate) fn of(conf: &LambdaConfig) -> Option<ClientKey> {
        let region = conf.region()?;
        Some(ClientKey {
            // AWS's own endpoint is the SDK's to resolve (China and FIPS regions differ).
            endpoint: (conf.host.is_some()
                || conf.disable_https
                || conf.port.unwrap_or(443) != 443)
                .then(|| conf.endpoint(&region)),
            credentials: CredentialsKey {
                key: conf.aws_key.clone(),
                secret: conf.aws_secret.clone(),
                assume_role_arn: conf.aws_assume_role_arn.clone(),
                role_session_name: conf.aws_role_session_name.clone(),
                sts_endpoint_url: conf.aws_sts_endpoint_url.clone(),
                proxy_url: conf.proxy_url.clone(),
                region,
            },
            timeout_ms: conf.timeout.max(1.0) as u64,
            keepalive_ms: conf.keepalive.max(0.0) as u64,
        })
    }
}

/// Invokes the function of `conf` with `payload`, on this worker's client for `key`.
pub(crate) async fn invoke(
    conf: &LambdaConfig,
    key: Option<&ClientKey>,
    payload: Vec<u8>,
) -> Result<Invoked, Failure> {
    let key = key.ok_or_else(|| Failure::Other("no region specified".into()))?;
    let client = client(key).await.map_err(Failure::Other)?;
    let started = std::time::Instant::now();
    let invoked = send_invoke(&client, conf, payload).await;
    call_metrics().record(started.elapsed(), &invoked);
    invoked
}

/// `/metrics` figures of the Invoke calls: latency, and calls by result.
struct CallMetrics {
    latency: metrics::Histogram,
    ok: metrics::Counter,
    timeout: metrics::Counter,
    error: metrics::Counter,
}

/// The histogram of Invoke call latencies, in seconds; the binary sets its buckets.
const INVOKE_SECONDS: &str = "gangway_lambda_invoke_seconds";

/// The handles, taken on first use (after the binary installed its recorder).
fn call_metrics() -> &'static CallMetrics {
    static METRICS: std::sync::OnceLock<CallMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let calls = |result: &'static str| {
            metrics::counter!("gangway_lambda_invocations_total", "result" => result)
        };
        CallMetrics {
            latency: metrics::histogram!(INVOKE_SECONDS),
            ok: calls("ok"),
            timeout: calls("timeout"),
            error: calls("error"),
        }
    })
}

impl CallMetrics {
    fn record(&self, took: std::time::Duration, invoked: &Result<Invoked, Failure>) {
        self.latency.record(took.as_secs_f64());
        match invoked {
            Ok(_) => self.ok.increment(1),
            Err(Failure::Timeout) => self.timeout.increment(1),
            Err(Failure::Other(_)) => self.error.increment(1),
        }
    }
}

/// The Invoke API call itself.
async fn send_invoke(
    client: &aws_sdk_lambda::Client,
    conf: &LambdaConfig,
    payload: Vec<u8>,
) -> Result<Invoked, Failure> {
    let captured = Arc::new(Mutex::new(Vec::new()));
    let sent = client
        .invoke()
        .set_function_name(conf.function_name.clone())
        .set_qualifier(conf.qualifier.clone())
        .invocation_type(InvocationType::from(conf.invocation_type.as_str()))
        .log_type(LogType::from(conf.log_type.as_str()))
        .payload(Blob::new(payload))
        .customize()
        .interceptor(ResponseHeaders(captured.clone()))
        .send()
        .await;
    match sent {
        Ok(output) => {
            let headers = std::mem::take(&mut *captured.lock().unwrap_or_else(|e| e.into_inner()));
            Ok(Invoked {
                status: u16::try_from(output.status_code()).unwrap_or(500),
                headers,
                payload: output.payload.map(Blob::into_inner).unwrap_or_default(),
            })
        }
        Err(SdkError::TimeoutError(_)) => Err(Failure::Timeout),
        Err(SdkError::DispatchFailure(f)) if f.is_timeout() => Err(Failure::Timeout),
        Err(e) => Err(Failure::Other(DisplayErrorContext(&e).to_string())),
    }
}

/// Copies the Invoke API's response headers (Kong passes them to the client).
#[derive(Debug)]
struct ResponseHeaders(Arc<Mutex<Vec<(String, String)>>>);

impl Intercept for ResponseHeaders {
    fn name(&self) -> &'static str {
        "gangway-response-headers"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context
            .response()
            .headers()
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = headers;
        Ok(())
    }
}

/// This worker's client for `key`, built on first use.
async fn client(key: &ClientKey) -> Result<aws_sdk_lambda::Client, String> {
    if let Some(found) = CLIENTS.with(|c| c.borrow_mut().get(key).cloned()) {
        return Ok(found);
    }
    let credentials = credentials(&key.credentials).await?;
    let http = http_client(
        Duration::from_millis(key.keepalive_ms),
        key.credentials.proxy_url.as_deref(),
    )?;
    let mut config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(key.credentials.region.clone()))
        .credentials_provider(credentials)
        // The credentials are a shared cache of their own (refreshed in the background).
        .identity_cache(aws_config::identity::IdentityCache::no_cache())
        .http_client(http)
        // Kong invokes once; a retry would double a function's side effects.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(key.timeout_ms))
                .build(),
        );
    if let Some(endpoint) = &key.endpoint {
        config = config.endpoint_url(endpoint);
    }
    let client = aws_sdk_lambda::Client::from_conf(config.build());
    CLIENTS.with(|c| c.borrow_mut().insert(key.clone(), client.clone()));
    Ok(client)
}

/// Whether the environment names a web identity token and a role to exchange it for (EKS
/// IRSA), as Kong checks before sending that exchange through `proxy_url`.
fn web_identity_configured() -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN")
}

/// The process's credentials for `key`: the config's keys; else, with a `proxy_url` and a
/// web identity in the environment, that identity exchanged at STS through the proxy (as
/// Kong does); else the default chain (environment, profile, web identity, ECS task role,
/// IMDSv2). Wrapped in STS AssumeRole when a role is configured.
async fn credentials(key: &CredentialsKey) -> Result<SharedCredentialsProvider, String> {
    if let Some(found) = CREDENTIALS.get(key) {
        return Ok(found);
    }
    let region = Region::new(key.region.clone());
    let base = match (&key.key, &key.secret) {
        (Some(id), Some(secret)) => SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            None,
            None,
            "gangway-plugin-config",
        )),
        _ if key.proxy_url.is_some() && web_identity_configured() => {
            // Kong re-creates the web identity (EKS IRSA) provider with the plugin's proxy:
            // a pod that reaches AWS only through a proxy cannot reach STS otherwise.
            let proxy = http_client(STS_IDLE, key.proxy_url.as_deref())?;
            SharedCredentialsProvider::new(
                WebIdentityTokenCredentialsProvider::builder()
                    .configure(
                        &ProviderConfig::default()
                            .with_http_client(proxy)
                            .with_region(Some(region.clone())),
                    )
                    .build(),
            )
        }
        _ => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .configure(
                    ProviderConfig::default()
                        .with_http_client(CREDENTIALS_HTTP.clone())
                        .with_region(Some(region.clone())),
                )
                .region(region.clone())
                .build()
                .await,
        ),
    };
    let provider = match &key.assume_role_arn {
        Some(role) => {
            let sts_http = match &key.proxy_url {
                Some(proxy) => http_client(STS_IDLE, Some(proxy))?,
                None => CREDENTIALS_HTTP.clone(),
            };
            let mut sts = aws_config::defaults(BehaviorVersion::latest())
                .http_client(sts_http)
                .region(region.clone())
                .credentials_provider(base);
            if let Some(url) = &key.sts_endpoint_url {
                sts = sts.endpoint_url(url);
            }
            let sts = sts.load().await;
            let assume = AssumeRoleProvider::builder(role)
                .session_name(
                    key.role_session_name
                        .clone()
                        .unwrap_or_else(|| "kong".into()),
                )
                .region(region)
                .configure(&sts)
                .build()
                .await;
            SharedCredentialsProvider::new(assume)
        }
        None => base,
    };
    let provider = SharedCredentialsProvider::new(Refreshing::new(provider));
    // Another request may have built one meanwhile: the first kept serves both.
    Ok(match CREDENTIALS.get(key) {
        Some(found) => found,
        None => {
            CREDENTIALS.insert(key.clone(), provider.clone());
            provider
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials for a config rotated a thousand times over stay bounded (a plain map
    /// kept every one).
    #[tokio::test]
    async fn kept_credentials_are_bounded() {
        for i in 0..3 * KEPT {
            let key = CredentialsKey {
                key: Some(format!("AKID{i}")),
                secret: Some(format!("secret-{i}")),
                assume_role_arn: None,
                role_session_name: None,
                sts_endpoint_url: None,
                proxy_url: None,
                region: "us-east-1".into(),
            };
            credentials(&key).await.expect("static keys");
        }
        assert!(
            CREDENTIALS.len() <= KEPT + KEPT / 10,
            "{}",
            CREDENTIALS.len()
        );
    }
}
