//! The validated config, typed.

use serde::Deserialize;

/// Kong's aws-lambda config, defaults filled by the schema.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LambdaConfig {
    pub timeout: f64,
    pub keepalive: f64,
    pub aws_key: Option<String>,
    pub aws_secret: Option<String>,
    pub aws_assume_role_arn: Option<String>,
    pub aws_role_session_name: Option<String>,
    pub aws_sts_endpoint_url: Option<String>,
    pub aws_region: Option<String>,
    pub function_name: Option<String>,
    pub qualifier: Option<String>,
    pub invocation_type: String,
    pub log_type: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub disable_https: bool,
    pub unhandled_status: Option<u16>,
    pub forward_request_method: bool,
    pub forward_request_uri: bool,
    pub forward_request_headers: bool,
    pub forward_request_body: bool,
    pub is_proxy_integration: bool,
    pub awsgateway_compatible: bool,
    pub awsgateway_compatible_payload_version: String,
    pub proxy_url: Option<String>,
    pub base64_encode_body: bool,
    pub skip_large_bodies: bool,
    pub empty_arrays_mode: String,
}

impl LambdaConfig {
    /// The region: the config's, else `AWS_REGION`, else `AWS_DEFAULT_REGION` (read when
    /// the instance is built, as Kong reads them at start).
    pub fn region(&self) -> Option<String> {
        self.aws_region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
    }

    /// The Invoke endpoint: `host` (else `lambda.<region>.amazonaws.com`), `port`, and
    /// https unless `disable_https`.
    pub fn endpoint(&self, region: &str) -> String {
        let host = match &self.host {
            Some(host) => host.clone(),
            None => format!("lambda.{region}.amazonaws.com"),
        };
        let scheme = if self.disable_https { "http" } else { "https" };
        let port = self.port.unwrap_or(443);
        let default_port = if self.disable_https { 80 } else { 443 };
        if port == default_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        }
    }
}
