//! The JSON a function is invoked with (Kong's `request-util.lua`): the request's arguments
//! (plain), the `forward_request_*` fields, or an API Gateway event (REST 1.0, HTTP API 2.0).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use gangway_pipeline::context::AccessCtx;
use gangway_plugins::request_body::{self, BodyArgs};
use gangway_plugins::request_tables;

use super::config::LambdaConfig;

/// Content types Kong forwards as text even when it cannot parse them.
const RAW_CONTENT_TYPES: [&str; 5] = [
    "text/plain",
    "text/html",
    "application/xml",
    "text/xml",
    "application/soap+xml",
];

/// The invocation payload for this request. `raw_body` is the body as Kong reads it for the
/// forwarded and API Gateway payloads: `None` when `skip_large_bodies` left it out.
pub(crate) fn payload(
    conf: &LambdaConfig,
    ctx: &AccessCtx<'_>,
    raw_body: Option<&[u8]>,
    now_ms: u64,
) -> Vec<u8> {
    let event = if conf.awsgateway_compatible {
        let facts = Facts::of(conf, ctx, raw_body, now_ms);
        match conf.awsgateway_compatible_payload_version.as_str() {
            "2.0" => facts.http_api_v2(),
            _ => facts.rest_v1(),
        }
    } else if conf.forward_request_body
        || conf.forward_request_headers
        || conf.forward_request_method
        || conf.forward_request_uri
    {
        forwarded(conf, ctx, raw_body)
    } else {
        // Kong's `kong.table.merge(query, body)`: a body argument wins over a query one.
        let mut args = request_tables::query(ctx);
        if let Some(body) = body_args(ctx) {
            args.extend(body);
        } else if let Some(items) = json_array_body(ctx) {
            // A JSON array is a Lua table too: alone it encodes as the array, beside query
            // arguments as an object keyed "1", "2", ...
            if args.is_empty() {
                return serde_json::to_vec(&Value::Array(items)).unwrap_or_default();
            }
            args.extend((1..).map(|i: usize| i.to_string()).zip(items));
        }
        Value::Object(args)
    };
    serde_json::to_vec(&event).unwrap_or_default()
}

/// The `forward_request_*` fields.
fn forwarded(conf: &LambdaConfig, ctx: &AccessCtx<'_>, raw_body: Option<&[u8]>) -> Value {
    let mut out = Map::new();
    if conf.forward_request_method {
        out.insert("request_method".into(), text(ctx.method()).into());
    }
    if conf.forward_request_headers {
        out.insert(
            "request_headers".into(),
            request_tables::headers(ctx).into(),
        );
    }
    if conf.forward_request_uri {
        let uri = String::from_utf8_lossy(ctx.head.target(ctx.buf)).into_owned();
        out.insert("request_uri".into(), uri.into());
        out.insert("request_uri_args".into(), request_tables::query(ctx).into());
    }
    if conf.forward_request_body {
        if kong_parses(ctx.content_type()) {
            if let Some(raw) = raw_body {
                out.insert("request_body".into(), text(raw).into());
            }
            if let Some(args) = body_args(ctx) {
                out.insert("request_body_args".into(), args.into());
            } else if let Some(items) = json_array_body(ctx) {
                out.insert("request_body_args".into(), Value::Array(items));
            }
        } else {
            // Kong: a body of a type it cannot parse (or none) has no arguments, and unless
            // its Content-Type, whole, is known text, it travels base64-encoded: a body left
            // out by skip_large_bodies as "".
            let content_type = ctx.content_type().map(text);
            let known_text = content_type
                .as_deref()
                .is_some_and(|ct| RAW_CONTENT_TYPES.contains(&ct));
            if !known_text && conf.base64_encode_body {
                let raw = raw_body.unwrap_or_default();
                out.insert("request_body".into(), BASE64.encode(raw).into());
                out.insert("request_body_base64".into(), true.into());
            } else if let Some(raw) = raw_body {
                out.insert("request_body".into(), text(raw).into());
            }
            out.insert("request_body_args".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(out)
}

/// What an API Gateway event says about the request.
struct Facts<'c, 'a> {
    ctx: &'c AccessCtx<'a>,
    conf: &'c LambdaConfig,
    raw_body: Option<&'c [u8]>,
    now_ms: u64,
    /// The path sent upstream (Kong's `upstream_uri` without its query).
    path: String,
    host: String,
    /// Request headers, names lower-cased, in order.
    headers: Vec<(String, String)>,
}

impl<'c, 'a> Facts<'c, 'a> {
    fn of(
        conf: &'c LambdaConfig,
        ctx: &'c AccessCtx<'a>,
        raw_body: Option<&'c [u8]>,
        now_ms: u64,
    ) -> Facts<'c, 'a> {
        let host = ctx
            .head
            .host(ctx.buf)
            .map(text)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let host = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
            _ => host,
        };
        Facts {
            ctx,
            conf,
            raw_body,
            now_ms,
            path: upstream_path(ctx),
            host,
            headers: request_tables::header_pairs(ctx),
        }
    }

    fn method(&self) -> String {
        text(self.ctx.method())
    }

    fn protocol(&self) -> &'static str {
        match self.ctx.head.version() {
            gangway_http::Version::Http10 => "HTTP/1.0",
            gangway_http::Version::Http11 => "HTTP/1.1",
        }
    }

    fn user_agent(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == "user-agent")
            .map(|(_, v)| v.as_str())
    }

    fn request_id(&self) -> String {
        text(self.ctx.request_id)
    }

    fn domain_prefix(&self) -> &str {
        self.host.split('.').next().unwrap_or_default()
    }

    /// The request's time in the Common Log Format, as API Gateway writes it.
    fn clf_time(&self) -> String {
        clf(self.now_ms)
    }

    /// The body and whether it is base64: Kong encodes any non-empty body unless
    /// `base64_encode_body` is off. No body is `null`, as API Gateway sends it.
    fn body(&self) -> (Value, bool) {
        match self.raw_body {
            None | Some([]) => (Value::Null, false),
            Some(bytes) if self.conf.base64_encode_body => (BASE64.encode(bytes).into(), true),
            Some(bytes) => (text(bytes).into(), false),
        }
    }

    /// Named regex captures of the route path (API Gateway's `pathParameters`).
    fn path_parameters(&self) -> Map<String, Value> {
        self.ctx
            .captures
            .named_captures()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect()
    }

    /// API Gateway's `resource`: the matched route path, its named groups written `{name}`
    /// (`~/users/(?<id>\d+)$` is `/users/{id}`); a prefix route's path as it is.
    fn resource(&self) -> Value {
        let Some(route) = self.ctx.route else {
            return Value::Null;
        };
        if let Some(i) = self.ctx.captures.captured_path_index() {
            if let Some(path) = route.paths.as_ref().and_then(|p| p.get(i)) {
                return resource_template(path).into();
            }
        }
        match self
            .ctx
            .route_match
            .and_then(|m| m.matched_path(self.ctx.captures))
        {
            Some(prefix) if route.paths.as_ref().is_some_and(|p| !p.is_empty()) => prefix.into(),
            _ => Value::Null,
        }
    }

    /// `requestContext.authorizer`'s context: the authenticated consumer.
    fn authorizer_context(&self) -> Option<Map<String, Value>> {
        let consumer = self.ctx.identities.consumer(self.ctx.state.consumer?);
        let mut out = Map::new();
        let id = consumer.id.to_string();
        out.insert("principalId".into(), id.clone().into());
        out.insert("consumer_id".into(), id.into());
        if let Some(name) = &consumer.username {
            out.insert("consumer_username".into(), name.as_ref().into());
        }
        if let Some(custom) = &consumer.custom_id {
            out.insert("consumer_custom_id".into(), custom.as_ref().into());
        }
        if let Some(c) = self.ctx.state.credential {
            let credential = self.ctx.identities.credential(c);
            out.insert("credential_id".into(), credential.id.to_string().into());
        }
        Some(out)
    }

    /// An API Gateway REST API proxy event (payload 1.0), as Kong's `aws_serializer`
    /// builds it.
    fn rest_v1(&self) -> Value {
        let mut headers = Map::new();
        let mut multi_headers: Map<String, Value> = Map::new();
        for (name, value) in &self.headers {
            headers
                .entry(name.clone())
                .or_insert_with(|| value.clone().into());
            push(&mut multi_headers, name, value.clone().into());
        }
        let (single_query, multi_query) = split_multi(request_tables::query(self.ctx));
        // Kong base64-encodes whatever body it read, none included (as ""), unless
        // `base64_encode_body` is off: then no body leaves the key out.
        let (body, base64) = match self.body() {
            (Value::Null, _) if self.conf.base64_encode_body => ("".into(), true),
            other => other,
        };
        let mut context = json!({
            "path": self.path,
            "protocol": self.protocol(),
            "httpMethod": self.method(),
            "domainName": self.host,
            "domainPrefix": self.domain_prefix(),
            "identity": {
                "sourceIp": self.ctx.client_ip.to_string(),
                "userAgent": self.user_agent(),
            },
            "requestId": self.request_id(),
            "requestTime": self.clf_time(),
            "requestTimeEpoch": self.now_ms,
            "resourcePath": self.path,
            "stage": STAGE,
        });
        if let Some(authorizer) = self.authorizer_context() {
            context["authorizer"] = Value::Object(authorizer);
        }
        let mut event = json!({
            "version": "1.0",
            "resource": self.resource(),
            "path": self.path,
            "httpMethod": self.method(),
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "pathParameters": self.path_parameters(),
            "queryStringParameters": single_query,
            "multiValueQueryStringParameters": multi_query,
            "stageVariables": null,
            "body": body,
            "isBase64Encoded": base64,
            "requestContext": context,
        });
        if event["body"].is_null() {
            event.as_object_mut().map(|e| e.remove("body"));
        }
        event
    }

    /// An API Gateway HTTP API event (payload 2.0): repeated headers and query arguments
    /// joined with commas, cookies apart.
    fn http_api_v2(&self) -> Value {
        let mut headers: Map<String, Value> = Map::new();
        let mut cookies: Vec<Value> = Vec::new();
        for (name, value) in &self.headers {
            if name == "cookie" {
                cookies.extend(
                    value
                        .split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(|c| Value::String(c.to_owned())),
                );
                continue;
            }
            match headers.get_mut(name) {
                Some(Value::String(joined)) => {
                    joined.push(',');
                    joined.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), value.clone().into());
                }
            }
        }
        let mut query: Map<String, Value> = Map::new();
        for (name, value) in self.ctx.state.query.args(self.ctx.raw_query()) {
            let value = value.unwrap_or_default();
            match query.get_mut(name.as_ref()) {
                Some(Value::String(joined)) => {
                    joined.push(',');
                    joined.push_str(&value);
                }
                _ => {
                    query.insert(name.into_owned(), value.into_owned().into());
                }
            }
        }
        let (body, base64) = self.body();
        let raw_query = self.ctx.raw_query().map(text).unwrap_or_default();
        let route_key = match self.resource() {
            Value::String(resource) => format!("{} {resource}", self.method()),
            _ => "$default".to_owned(),
        };
        let mut context = json!({
            "accountId": "anonymous",
            "apiId": "gangway",
            "domainName": self.host,
            "domainPrefix": self.domain_prefix(),
            "http": {
                "method": self.method(),
                "path": self.path,
                "protocol": self.protocol(),
                "sourceIp": self.ctx.client_ip.to_string(),
                "userAgent": self.user_agent().unwrap_or_default(),
            },
            "requestId": self.request_id(),
            "routeKey": route_key,
            "stage": STAGE,
            "time": self.clf_time(),
            "timeEpoch": self.now_ms,
        });
        if let Some(authorizer) = self.authorizer_context() {
            context["authorizer"] = json!({ "lambda": authorizer });
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": base64,
        });
        if !cookies.is_empty() {
            event["cookies"] = Value::Array(cookies);
        }
        if !query.is_empty() {
            event["queryStringParameters"] = Value::Object(query);
        }
        let parameters = self.path_parameters();
        if !parameters.is_empty() {
            event["pathParameters"] = Value::Object(parameters);
        }
        if !body.is_null() {
            event["body"] = body;
        }
        event
    }
}

/// The stage gangway reports: an HTTP API's default stage.
const STAGE: &str = "$default";

/// A route path as an API Gateway resource: `~` and anchors dropped, each named group
/// `(?<name>...)` written `{name}`.
fn resource_template(path: &str) -> String {
    let Some(pattern) = path.strip_prefix('~') else {
        return path.to_owned();
    };
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    let pattern = pattern.strip_suffix('$').unwrap_or(pattern);
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &pattern[i..];
        let named = rest
            .strip_prefix("(?<")
            .or_else(|| rest.strip_prefix("(?P<"));
        if let Some(after) = named {
            if let Some(end) = after.find('>') {
                let name = &after[..end];
                // Skip to the group's closing parenthesis, counting nested ones.
                let mut depth = 0usize;
                let mut j = i;
                while j < bytes.len() {
                    match bytes[j] {
                        b'\\' => j += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                out.push('{');
                out.push_str(name);
                out.push('}');
                i = j + 1;
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Kong's `upstream_uri` path: the request path after `strip_path`, under the service's
/// path (`/` without a service).
fn upstream_path(ctx: &AccessCtx<'_>) -> String {
    if let Some(path) = &ctx.state.path {
        return text(path);
    }
    let Some(route) = ctx.route else {
        return text(ctx.path());
    };
    let mut out = Vec::new();
    gangway_router::upstream_path(
        ctx.service.and_then(|s| s.path.as_deref()),
        route.strip_path,
        route.path_handling,
        gangway_router::RouterFlavor::TraditionalCompatible,
        ctx.captures.normalized_path(),
        ctx.route_match.and_then(|m| m.matched_len),
        &mut out,
    );
    text(&out)
}

/// Kong's `kong.request.get_body()` arguments; `None` when the body does not parse or has
/// a type Kong does not parse.
fn body_args(ctx: &AccessCtx<'_>) -> Option<Map<String, Value>> {
    let body = ctx.body().unwrap_or_default();
    match request_body::parse(ctx.content_type(), body, ctx.state.limits.post_args).ok()? {
        BodyArgs::None => match request_body::media_type(ctx.content_type()) {
            request_body::MediaType::Other => None,
            _ => Some(Map::new()),
        },
        BodyArgs::Form(pairs) => {
            let mut out = Map::new();
            for (name, value) in pairs {
                request_tables::push_or_array(&mut out, &name, value.into());
            }
            Some(out)
        }
        BodyArgs::Json(map) => Some(map),
        multipart @ BodyArgs::Multipart(_) => multipart.to_object(),
    }
}

/// Whether Kong's `kong.request.get_body()` parses a body of this Content-Type: it looks
/// at what the lower-cased header starts with, so `application/vnd.api+json` is not JSON
/// to it, and no Content-Type is an error.
fn kong_parses(content_type: Option<&[u8]>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let lower = String::from_utf8_lossy(ct).to_ascii_lowercase();
    [
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data",
    ]
    .iter()
    .any(|kind| lower.starts_with(kind))
}

/// The body as a JSON array, when it is one: Kong's `kong.request.get_body()` takes any
/// JSON table, where the shared parser takes objects only.
fn json_array_body(ctx: &AccessCtx<'_>) -> Option<Vec<Value>> {
    if request_body::media_type(ctx.content_type()) != request_body::MediaType::Json {
        return None;
    }
    match serde_json::from_slice(ctx.body()?) {
        Ok(Value::Array(items)) => Some(items),
        _ => None,
    }
}

/// Splits arguments into the single (first value) and multi-value maps, empty ones
/// included (Kong sends `{}`, not null). An argument without `=` is `""`, as API Gateway
/// sends it: Kong's `true` fails the published event types (aws_lambda_events' query maps
/// hold strings), so a function built on them could not read the event.
fn split_multi(args: Map<String, Value>) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi = Map::new();
    for (name, value) in args {
        let values = match value {
            Value::Array(values) => values,
            one => vec![one],
        };
        let as_text = |v: &Value| match v {
            Value::String(s) => Value::String(s.clone()),
            _ => Value::String(String::new()),
        };
        single.insert(
            name.clone(),
            values.first().map(as_text).unwrap_or_default(),
        );
        multi.insert(name, values.iter().map(as_text).collect());
    }
    (Value::Object(single), Value::Object(multi))
}

fn push(map: &mut Map<String, Value>, name: &str, value: Value) {
    match map.get_mut(name) {
        Some(Value::Array(list)) => list.push(value),
        _ => {
            map.insert(name.to_owned(), Value::Array(vec![value]));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Epoch milliseconds as `dd/Mon/yyyy:HH:MM:SS +0000`.
fn clf(epoch_ms: u64) -> String {
    gangway_http::clf::clf_time(epoch_ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_write_named_groups_as_api_gateway_parameters() {
        assert_eq!(resource_template(r"~/users/(?<id>\d+)$"), "/users/{id}");
        assert_eq!(
            resource_template(r"~^/a/(?<x>[^/]+)/b/(?P<y>(\d|z)+)"),
            "/a/{x}/b/{y}"
        );
        assert_eq!(resource_template("/plain"), "/plain");
    }

    #[test]
    fn request_times_use_the_common_log_format() {
        assert_eq!(clf(1_583_348_638_390), "04/Mar/2020:19:03:58 +0000");
    }
}
