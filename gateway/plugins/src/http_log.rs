//! http-log (priority 12): sends each transaction, serialized as Kong's
//! `kong.log.serialize()` JSON, to an HTTP(S) endpoint, in batches through a queue with
//! retries (Kong's `config.queue`).
//!
//! The log phase only enqueues; a sender thread per queue does the I/O ([`queue`]).

mod queue;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::schema::{ALL_PROTOCOLS, Field, HTTP_PROTOCOLS, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::LogCtx;

/// Kong's name.
pub const NAME: &str = "http-log";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 12;

/// Header names Kong reserves (`http-log` sets them itself).
const RESERVED: [&str; 3] = ["host", "content-length", "content-type"];

fn header_name(v: &Value) -> Result<(), String> {
    let name = v.as_str().unwrap_or_default();
    match RESERVED.iter().find(|r| name.eq_ignore_ascii_case(r)) {
        Some(&"host") => Err("cannot contain 'Host' header".into()),
        Some(&"content-length") => Err("cannot contain 'Content-Length' header".into()),
        Some(_) => Err("cannot contain 'Content-Type' header".into()),
        None => Ok(()),
    }
}

fn http_url(v: &Value) -> Result<(), String> {
    Endpoint::parse(v.as_str().unwrap_or_default()).map(|_| ())
}

/// Kong's `typedefs.queue`.
fn queue_schema() -> Field {
    Field::record(vec![
        (
            "max_batch_size",
            Field::integer()
                .default(json!(1))
                .between(1, 1_000_000)
                .describe("Maximum number of entries that can be processed at a time."),
        ),
        (
            "max_coalescing_delay",
            Field::number()
                .default(json!(1))
                .between(0, 3600)
                .describe("Maximum seconds to wait for more entries before sending a batch."),
        ),
        (
            "max_entries",
            Field::integer()
                .default(json!(10000))
                .between(1, 1_000_000)
                .describe("Maximum number of entries that can be waiting on the queue."),
        ),
        (
            "max_bytes",
            Field::integer().describe(
                "Maximum number of bytes that can be waiting on a queue, requires string content.",
            ),
        ),
        (
            "max_retry_time",
            Field::number()
                .default(json!(60))
                .describe("Seconds a batch is retried before it is dropped."),
        ),
        (
            "initial_retry_delay",
            Field::number()
                .default(json!(0.01))
                .between(0.001, 1_000_000)
                .describe("Seconds before the first retry; doubled for each following one."),
        ),
        (
            "max_retry_delay",
            Field::number()
                .default(json!(60))
                .between(0.001, 1_000_000)
                .describe("Longest delay between retries, in seconds."),
        ),
        (
            "concurrency_limit",
            Field::integer()
                .default(json!(1))
                .one_of_values(vec![json!(-1), json!(1)])
                .describe("The number of batches sent at once (gangway sends one at a time)."),
        ),
    ])
}

/// Kong's config schema (`kong/plugins/http-log/schema.lua`).
pub fn schema() -> Schema {
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "http_endpoint",
                Field::string()
                    .required()
                    .custom_validator(http_url)
                    .referenceable()
                    .encrypted()
                    .describe("The HTTP URL the log entries are sent to."),
            ),
            (
                "method",
                Field::string()
                    .default(json!("POST"))
                    .one_of(&["POST", "PUT", "PATCH"])
                    .describe("The method used to send the data: POST (default), PUT or PATCH."),
            ),
            (
                "content_type",
                Field::string()
                    .default(json!("application/json"))
                    .one_of(&["application/json", "application/json; charset=utf-8"])
                    .describe("Indicates the type of data sent."),
            ),
            (
                "timeout",
                Field::number()
                    .default(json!(10000))
                    .describe("Milliseconds before a send to the log server times out."),
            ),
            (
                "keepalive",
                Field::number()
                    .default(json!(60000))
                    .describe("Milliseconds an idle connection to the log server lives."),
            ),
            (
                "retry_count",
                Field::integer().describe("Deprecated (Kong 3.x): use queue.max_retry_time."),
            ),
            (
                "queue_size",
                Field::integer().describe("Deprecated (Kong 3.x): use queue.max_batch_size."),
            ),
            (
                "flush_timeout",
                Field::number().describe("Deprecated (Kong 3.x): use queue.max_coalescing_delay."),
            ),
            (
                "headers",
                Field::map(
                    Field::string().custom_validator(header_name),
                    Field::string().referenceable(),
                )
                .describe("Headers sent with every message to the log server."),
            ),
            ("queue", queue_schema()),
            ("custom_fields_by_lua", crate::file_log::lua_fields()),
        ]),
    )
    .protocols(HTTP_PROTOCOLS, ALL_PROTOCOLS)
}

#[derive(Debug, Deserialize)]
struct QueueConfig {
    max_batch_size: usize,
    max_coalescing_delay: f64,
    max_entries: usize,
    max_bytes: Option<usize>,
    max_retry_time: f64,
    initial_retry_delay: f64,
    max_retry_delay: f64,
}

#[derive(Debug, Deserialize)]
struct Config {
    http_endpoint: String,
    method: String,
    content_type: String,
    timeout: f64,
    headers: Option<BTreeMap<String, String>>,
    queue: QueueConfig,
    queue_size: Option<usize>,
    flush_timeout: Option<f64>,
    custom_fields_by_lua: Option<BTreeMap<String, String>>,
}

/// Where the entries go: `scheme://[userinfo@]host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    path: String,
    authorization: Option<String>,
}

impl Endpoint {
    fn parse(text: &str) -> Result<Endpoint, String> {
        let url = url::Url::parse(text).map_err(|e| format!("invalid url: {e}"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "unsupported scheme '{other}': expected http or https"
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("missing host in url")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let userinfo = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = percent_decode(url.username());
            let pass = url.password().map(percent_decode);
            Some(match pass {
                Some(p) => format!("{user}:{p}"),
                None => user,
            })
        };
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Endpoint {
            tls,
            port: url.port().unwrap_or(if tls { 443 } else { 80 }),
            host,
            path,
            authorization: userinfo.map(|u| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(u)
                )
            }),
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Waits (up to `timeout`) until every http-log queue has sent its entries; called on
/// shutdown. Returns false on timeout.
pub fn flush(timeout: std::time::Duration) -> bool {
    queue::flush(timeout)
}

struct HttpLog {
    queue: std::sync::Arc<queue::Queue>,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    crate::file_log::refuse_lua(conf.custom_fields_by_lua.as_ref())?;
    let endpoint =
        Endpoint::parse(&conf.http_endpoint).map_err(|e| vec![("http_endpoint".to_string(), e)])?;
    let headers: Vec<(String, String)> = conf.headers.unwrap_or_default().into_iter().collect();
    if endpoint.authorization.is_some()
        && headers
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case("authorization"))
    {
        return Err(vec![(
            String::new(),
            "specifying both an 'Authorization' header and user info in 'http_endpoint' is not \
             allowed"
                .into(),
        )]);
    }
    let q = &conf.queue;
    let settings = queue::Settings {
        endpoint,
        method: conf.method,
        content_type: conf.content_type,
        headers,
        timeout: std::time::Duration::from_secs_f64((conf.timeout / 1000.0).max(0.001)),
        // The deprecated fields still apply when set, as in Kong.
        max_batch_size: conf.queue_size.unwrap_or(q.max_batch_size).max(1),
        max_coalescing_delay: std::time::Duration::from_secs_f64(
            conf.flush_timeout
                .unwrap_or(q.max_coalescing_delay)
                .max(0.0),
        ),
        max_entries: q.max_entries.max(1),
        max_bytes: q.max_bytes,
        max_retry_time: std::time::Duration::from_secs_f64(q.max_retry_time.max(0.0)),
        initial_retry_delay: std::time::Duration::from_secs_f64(q.initial_retry_delay.max(0.001)),
        max_retry_delay: std::time::Duration::from_secs_f64(q.max_retry_delay.max(0.001)),
    };
    Ok(Box::new(HttpLog {
        queue: queue::Queue::shared(settings),
    }))
}

impl Plugin for HttpLog {
    fn log(&self, ctx: &LogCtx<'_>) {
        match serde_json::to_vec(ctx.entry.get()) {
            Ok(entry) => self.queue.push(entry),
            Err(e) => tracing::error!(error = %e, "http-log: cannot serialize the transaction"),
        }
    }

    fn logs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
