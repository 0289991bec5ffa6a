//! Kong's opentelemetry config schema (`kong/plugins/opentelemetry/schema.lua` and the
//! propagation record of `kong/observability/tracing/propagation/schema.lua`).

use serde_json::{Value, json};

use gangway_config::schema::{EntityCheck, Field, Schema};
use gangway_plugins::log_queue;

use super::NAME;
use super::propagation::Format;

/// Every format's name, in Kong's order.
fn formats() -> Vec<&'static str> {
    Format::ALL.iter().map(|f| f.name()).collect()
}

/// `prefix` and then every format's name.
fn with_formats(prefix: &[&'static str]) -> Vec<&'static str> {
    prefix.iter().copied().chain(formats()).collect()
}

fn http_url(v: &Value) -> Result<(), String> {
    log_queue::Endpoint::parse(v.as_str().unwrap_or_default()).map(|_| ())
}

/// Kong's `validate_header_name`: letters, digits, `-` and `_`.
fn header_name(v: &Value) -> Result<(), String> {
    let name = v.as_str().unwrap_or_default();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

fn non_empty(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some("") => Err("required field missing".into()),
        _ => Ok(()),
    }
}

fn url_field(description: &'static str) -> Field {
    Field::string()
        .custom_validator(http_url)
        .referenceable()
        .describe(description)
}

fn propagation() -> Field {
    let list = |options: &[&str]| Field::array(Field::string().one_of(options));
    // b3-single has no extractor of its own: the b3 one reads both.
    let extractors: Vec<&str> = formats()
        .into_iter()
        .filter(|f| *f != Format::B3Single.name())
        .collect();
    Field::record(vec![
        (
            "extract",
            list(&extractors).describe(
                "Header formats read from the request, the first one found wins; empty: none.",
            ),
        ),
        (
            "clear",
            Field::array(Field::string().custom_validator(header_name))
                .describe("Header names removed from the request after extraction."),
        ),
        (
            "inject",
            list(&with_formats(&["preserve"])).describe(
                "Header formats set on the upstream request; `preserve` is the format found.",
            ),
        ),
        (
            "default_format",
            Field::string()
                .required()
                .default(json!("w3c"))
                .one_of(&formats())
                .describe("The format `preserve` injects when no format was extracted."),
        ),
    ])
}

/// The plugin's schema.
pub fn schema() -> Schema {
    let config = Field::record(vec![
        (
            "traces_endpoint",
            url_field("The OTLP/HTTP endpoint spans are posted to."),
        ),
        (
            "logs_endpoint",
            url_field("The OTLP/HTTP endpoint for logs (not exported by gangway)."),
        ),
        (
            "headers",
            Field::map(
                Field::string().custom_validator(header_name),
                Field::string().referenceable(),
            )
            .describe("Headers added to every export request (an APM token)."),
        ),
        (
            "resource_attributes",
            Field::map(
                Field::string().required(),
                Field::string().required().custom_validator(non_empty),
            )
            .describe("Attributes of the OpenTelemetry resource (service.name overrides kong)."),
        ),
        ("queue", log_queue::schema(200)),
        (
            "batch_span_count",
            Field::integer().describe("Deprecated: use queue.max_batch_size."),
        ),
        (
            "batch_flush_delay",
            Field::integer().describe("Deprecated: use queue.max_coalescing_delay."),
        ),
        (
            "connect_timeout",
            timeout(1000, "Milliseconds to connect to the collector."),
        ),
        (
            "send_timeout",
            timeout(5000, "Milliseconds to send one export request."),
        ),
        (
            "read_timeout",
            timeout(5000, "Milliseconds to read the collector's answer."),
        ),
        (
            "http_response_header_for_traceid",
            Field::string().describe("A response header that carries the trace id."),
        ),
        (
            "header_type",
            Field::string()
                .default(json!("preserve"))
                .one_of(&with_formats(&["preserve", "ignore"]))
                .describe("Deprecated: use propagation."),
        ),
        (
            "sampling_rate",
            Field::number()
                .between(0, 1)
                .describe("The share of traces exported; overrides tracing_sampling_rate."),
        ),
        ("propagation", propagation()),
    ])
    .with_check(EntityCheck::AtLeastOneOf(vec![
        "traces_endpoint",
        "logs_endpoint",
    ]))
    .shorthand(
        "endpoint",
        url_field("Deprecated: use traces_endpoint."),
        "traces_endpoint",
    );
    Schema::new(NAME, config)
}

/// Kong's `typedefs.timeout`: whole milliseconds, 0 to 2^31-2.
fn timeout(default: u32, description: &'static str) -> Field {
    Field::integer()
        .default(json!(default))
        .between(0, 2_147_483_646)
        .describe(description)
}
