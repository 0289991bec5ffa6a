//! request-termination (priority 2): answers with a fixed response instead of proxying
//! (kong-reference.md 4.7).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use gangway_config::schema::{EntityCheck, Field, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::flow::{Flow, Response, ResponseBody};

/// Kong's name.
pub const NAME: &str = "request-termination";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 2;

/// Kong's `kong/plugins/request-termination/schema.lua`.
pub fn schema() -> Schema {
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "status_code",
                Field::integer()
                    .required()
                    .default(json!(503))
                    .between(100, 599),
            ),
            ("message", Field::string()),
            ("content_type", Field::string()),
            ("body", Field::string()),
            ("echo", Field::boolean().required().default(json!(false))),
            ("trigger", Field::string()),
        ]),
    )
    .with_check(EntityCheck::MutuallyExclusiveSets {
        set1: vec!["config.message"],
        set2: vec!["config.content_type", "config.body"],
    })
}

#[derive(Debug, Deserialize)]
struct Config {
    status_code: u16,
    message: Option<String>,
    content_type: Option<String>,
    body: Option<String>,
    echo: bool,
    trigger: Option<String>,
}

struct RequestTermination {
    conf: Config,
    trigger_lower: Option<String>,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let mut problems = Vec::new();
    if !(100..=599).contains(&conf.status_code) {
        problems.push((
            "status_code".into(),
            "value should be between 100 and 599".into(),
        ));
    }
    if conf.message.is_some() && (conf.content_type.is_some() || conf.body.is_some()) {
        problems.push((
            String::new(),
            "message cannot be used with content_type or body".into(),
        ));
    }
    if conf.content_type.is_some() && conf.body.is_none() {
        problems.push((String::new(), "content_type requires a body".into()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Box::new(RequestTermination {
        trigger_lower: conf.trigger.as_ref().map(|t| t.to_ascii_lowercase()),
        conf,
    }))
}

/// Kong's default messages (the plugin's `DEFAULT_RESPONSE`).
fn default_message(status: u16) -> Option<&'static str> {
    Some(match status {
        401 => "Unauthorized",
        404 => "Not found",
        405 => "Method not allowed",
        500 => "An unexpected error occurred",
        502 => "Bad Gateway",
        503 => "Service unavailable",
        _ => return None,
    })
}

impl RequestTermination {
    fn echo(&self, ctx: &AccessCtx<'_>) -> Value {
        let headers = crate::request_tables::headers(ctx);
        let query = crate::request_tables::query(ctx);
        let host = ctx.head.host(ctx.buf).unwrap_or_default();
        let (hostname, port) = split_host(host, ctx.tls);
        // `kong.request.get_raw_body()`: the body as sent, empty without one.
        let raw_body = String::from_utf8_lossy(ctx.body().unwrap_or_default()).into_owned();
        // `kong.request.get_body()`: the parsed arguments, absent for other media types.
        let body = ctx
            .body()
            .and_then(|b| {
                crate::request_body::parse(ctx.content_type(), b, ctx.state.limits.post_args).ok()
            })
            .and_then(|args| args.to_object())
            .map(Value::Object);
        let named: Map<String, Value> = ctx
            .captures
            .named_captures()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        // Every group by number, named ones too, as ngx.re.match numbers them; a group that
        // did not take part is false.
        let unnamed: Vec<Value> = (1..ctx.captures.capture_len())
            .map(|i| {
                ctx.captures
                    .capture(i)
                    .map_or(Value::Bool(false), |v| Value::String(v.to_owned()))
            })
            .collect();
        let has_body = body.is_some();
        let mut echo = json!({
            "message": self.conf.message,
            "kong": {
                "node_id": gangway_config::node::node_id().to_string(),
                "worker_pid": std::process::id(),
                "hostname": gangway_config::node::hostname(),
            },
            "request": {
                "scheme": if ctx.tls { "https" } else { "http" },
                "host": hostname,
                "port": port,
                "headers": headers,
                "query": query,
                "body": body,
                "raw_body": raw_body,
                "method": String::from_utf8_lossy(ctx.method()),
                "path": String::from_utf8_lossy(ctx.path()),
                "uri_captures": {"named": named, "unnamed": unnamed},
            },
            "matched_route": ctx.route.map(|r| serde_json::to_value(r).unwrap_or_default()),
            "matched_service": ctx.service.map(|s| serde_json::to_value(s).unwrap_or_default()),
        });
        if !has_body {
            // Kong's table has no `body` key then (a Lua nil), not a null.
            if let Some(request) = echo["request"].as_object_mut() {
                request.remove("body");
            }
        }
        echo
    }
}

fn split_host(host: &[u8], tls: bool) -> (String, u16) {
    let text = String::from_utf8_lossy(host);
    let default = if tls { 443 } else { 80 };
    match text.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || text.starts_with('[') => {
            (h.to_owned(), p.parse().unwrap_or(default))
        }
        _ => (text.into_owned(), default),
    }
}

impl Plugin for RequestTermination {
    /// `echo` returns the request body as sent (`raw_body`).
    fn needs_body(&self) -> bool {
        self.conf.echo
    }

    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        if let Some(trigger) = &self.trigger_lower {
            let present = ctx.header(trigger).is_some()
                || !ctx
                    .query_values(self.conf.trigger.as_deref().unwrap_or_default())
                    .is_empty();
            if !present {
                return Flow::Continue;
            }
        }
        let status = self.conf.status_code;
        if self.conf.echo {
            return Flow::Respond(Response::exit(status, ResponseBody::Json(self.echo(ctx))));
        }
        if let Some(body) = &self.conf.body {
            let body = ResponseBody::Raw {
                content_type: self.conf.content_type.clone(),
                body: body.as_bytes().to_vec(),
            };
            return Flow::Respond(Response::exit(status, body));
        }
        let message = (self.conf.message.as_deref()).or_else(|| default_message(status));
        match message {
            // `kong.response.exit(status, { message = message })`: that JSON alone, whatever
            // the client accepts, without Kong's error page and its request_id.
            Some(message) => {
                let body = ResponseBody::Json(serde_json::json!({ "message": message }));
                Flow::Respond(Response::exit(status, body))
            }
            // Kong exits with no body, and nginx's error page (Kong's, for most statuses)
            // answers.
            None => Flow::error(
                status,
                gangway_http::error_page::default_message(status)
                    .unwrap_or(gangway_http::error_page::reason_phrase(status)),
            ),
        }
    }
}
