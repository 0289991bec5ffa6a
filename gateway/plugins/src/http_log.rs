//! http-log (priority 12): sends each transaction, serialized as Kong's
//! `kong.log.serialize()` JSON, to an HTTP(S) endpoint, in batches through a queue with
//! retries (Kong's `config.queue`).
//!
//! The log phase only enqueues; a sender thread per queue does the I/O ([`queue`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::schema::{ALL_PROTOCOLS, Field, HTTP_PROTOCOLS, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::LogCtx;

use crate::log_queue::{self, Endpoint, Queue};

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
            ("queue", log_queue::schema(1)),
            ("custom_fields_by_lua", crate::file_log::lua_fields()),
        ]),
    )
    .protocols(HTTP_PROTOCOLS, ALL_PROTOCOLS)
}

#[derive(Debug, Deserialize)]
struct Config {
    http_endpoint: String,
    method: String,
    content_type: String,
    timeout: f64,
    keepalive: f64,
    headers: Option<BTreeMap<String, String>>,
    queue: log_queue::QueueConfig,
    queue_size: Option<usize>,
    flush_timeout: Option<f64>,
    custom_fields_by_lua: Option<BTreeMap<String, String>>,
}

struct HttpLog {
    queue: std::sync::Arc<Queue>,
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
    // Kong's schema sets no upper bound; a Duration past its range (1e23 ms) panics.
    let timeout =
        std::time::Duration::from_secs_f64((conf.timeout / 1000.0).clamp(0.001, 86_400.0));
    let settings = log_queue::Settings {
        method: conf.method,
        content_type: conf.content_type,
        headers,
        connect_timeout: timeout,
        send_timeout: timeout,
        read_timeout: timeout,
        // lua-resty-http's `keepalive_timeout`: 0 keeps an idle connection without limit.
        keepalive: if conf.keepalive <= 0.0 {
            std::time::Duration::from_secs(86_400)
        } else {
            std::time::Duration::from_secs_f64((conf.keepalive / 1000.0).clamp(0.001, 86_400.0))
        },
        ..conf.queue.settings(
            NAME,
            endpoint,
            log_queue::deprecated(conf.queue_size, 1),
            log_queue::deprecated(conf.flush_timeout, 2.0),
        )
    };
    Ok(Box::new(HttpLog {
        queue: Queue::shared(settings, payload),
    }))
}

/// One entry as it is, or a JSON array of them (Kong: when `max_batch_size` is over 1).
fn payload(settings: &log_queue::Settings, batch: &[Vec<u8>]) -> Vec<u8> {
    if settings.max_batch_size == 1 {
        return batch.concat();
    }
    let mut out = Vec::with_capacity(batch.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(entry);
    }
    out.push(b']');
    out
}

impl Plugin for HttpLog {
    fn accesses(&self) -> bool {
        false
    }

    fn log(&self, ctx: &LogCtx<'_>) {
        self.queue.push(ctx.entry.json().to_vec());
    }

    fn logs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
