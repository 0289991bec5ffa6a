//! What the client gets from an invocation, as Kong's handler maps it.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use gangway_pipeline::flow::{Response, ResponseBody};

use super::config::LambdaConfig;

/// An invocation's outcome as the Invoke API returned it.
#[derive(Debug, Default)]
pub(crate) struct Invoked {
    /// The Invoke API's status (200, 202 for Event, 204 for DryRun).
    pub status: u16,
    /// Its response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The function's payload.
    pub payload: Vec<u8>,
}

/// Why no answer came back from the Invoke API.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The call took longer than the config's `timeout`.
    Timeout,
    /// Anything else: no region, a refused or failed call, an error status from the API.
    Other(String),
}

/// Headers the proxy sets itself or that only describe the Invoke API's connection.
const NOT_PASSED: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
];

/// The client's response for `outcome`; `waited` is the time spent on the invocation.
pub(crate) fn respond(
    conf: &LambdaConfig,
    outcome: Result<Invoked, Failure>,
    waited: Duration,
) -> Response {
    let mut response = match outcome {
        Ok(invoked) => answer(conf, invoked),
        // Kong raises the client's error, timeouts included: its 500 (its spec's "errors
        // on connection timeout").
        Err(Failure::Timeout) => {
            tracing::error!("aws-lambda: the invocation timed out");
            Response::error(500, "An unexpected error occurred")
        }
        Err(Failure::Other(message)) => {
            tracing::error!(error = %message, "aws-lambda: invocation failed");
            Response::error(500, "An unexpected error occurred")
        }
    };
    response.waited = Some(waited);
    response
}

fn answer(conf: &LambdaConfig, invoked: Invoked) -> Response {
    let mut headers: Vec<(String, String)> = invoked
        .headers
        .into_iter()
        .filter(|(n, _)| !NOT_PASSED.iter().any(|h| n.eq_ignore_ascii_case(h)))
        .collect();
    let mut status = invoked.status;
    let mut body = invoked.payload;
    let mut from_proxy_integration = false;
    if conf.is_proxy_integration {
        match proxy_response(&body) {
            Ok(proxied) => {
                status = proxied.status;
                for (name, values) in proxied.headers {
                    // The proxy frames the answer itself: a function cannot set its framing.
                    if NOT_PASSED.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                        continue;
                    }
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
                    headers.extend(values.into_iter().map(|v| (name.clone(), v)));
                }
                body = proxied.body;
                from_proxy_integration = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "aws-lambda: could not decode the function's response");
                let mut bad = Response::error(502, "Bad Gateway");
                bad.body = ResponseBody::Json(json!({
                    "message": "Bad Gateway",
                    "error": format!("could not JSON decode Lambda function response: {e}"),
                }));
                return bad;
            }
        }
    }
    if !from_proxy_integration
        && conf.unhandled_status.is_some()
        && header(&headers, "x-amz-function-error") == Some("Unhandled")
    {
        status = conf.unhandled_status.unwrap_or(status);
    }
    if conf.empty_arrays_mode == "legacy" && !from_proxy_integration {
        let json = header(&headers, "content-type")
            .is_some_and(|ct| is_json_media_type(&ct.to_ascii_lowercase()));
        if json {
            body = legacy_empty_arrays(body);
        }
    }
    let content_type = header(&headers, "content-type").map(str::to_owned);
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
    Response {
        status,
        body: ResponseBody::Raw { content_type, body },
        headers: headers
            .into_iter()
            .map(|(n, v)| (Cow::Owned(n), v))
            .collect(),
        proxied: false,
        via: true,
        waited: None,
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Kong's `application/.*json`.
fn is_json_media_type(lower: &str) -> bool {
    lower
        .strip_prefix("application/")
        .is_some_and(|rest| rest.contains("json"))
}

/// Kong's legacy mode answers empty JSON arrays as `{}` (its JSON encoder could not tell
/// them from empty objects). Bodies without one are left byte for byte.
fn legacy_empty_arrays(body: Vec<u8>) -> Vec<u8> {
    fn has_empty_array(v: &Value) -> bool {
        match v {
            Value::Array(a) => a.is_empty() || a.iter().any(has_empty_array),
            Value::Object(o) => o.values().any(has_empty_array),
            _ => false,
        }
    }
    fn replace(v: &mut Value) {
        match v {
            Value::Array(a) if a.is_empty() => *v = Value::Object(Map::new()),
            Value::Array(a) => a.iter_mut().for_each(replace),
            Value::Object(o) => o.values_mut().for_each(replace),
            _ => {}
        }
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(mut value) if has_empty_array(&value) => {
            replace(&mut value);
            serde_json::to_vec(&value).unwrap_or(body)
        }
        _ => body,
    }
}

/// A proxy-integration answer: `{statusCode, headers, multiValueHeaders, body,
/// isBase64Encoded}`.
#[derive(Debug)]
struct ProxyResponse {
    status: u16,
    /// Each name with its values; `multiValueHeaders` win over `headers`.
    headers: Vec<(String, Vec<String>)>,
    body: Vec<u8>,
}

/// Kong's `extract_proxy_response`, with its messages.
fn proxy_response(payload: &[u8]) -> Result<ProxyResponse, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let Value::Object(object) = value else {
        return Err("statusCode validation failed".into());
    };
    let status = match object.get("statusCode") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| (100.0..=599.0).contains(s))
    .ok_or("statusCode validation failed")? as u16;
    let headers = match object.get("headers") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(h)) => h.clone(),
        Some(_) => return Err("headers must be a table".into()),
    };
    let body = match object.get("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(b)) => b.clone(),
        Some(_) => return Err("body must be a string".into()),
    };
    let base64 = match object.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("isBase64Encoded must be a boolean".into()),
    };
    let body = if base64 {
        decode_base64(&body).ok_or("invalid base64 body")?
    } else {
        body.into_bytes()
    };
    let mut out: Vec<(String, Vec<String>)> = headers
        .into_iter()
        .map(|(name, value)| (name, values(&value)))
        .collect();
    if let Some(Value::Object(multi)) = object.get("multiValueHeaders") {
        for (name, value) in multi {
            out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            out.push((name.clone(), values(value)));
        }
    }
    // API Gateway v2 answers carry cookies apart.
    if let Some(Value::Array(cookies)) = object.get("cookies") {
        let cookies: Vec<String> = cookies.iter().filter_map(scalar_text).collect();
        if !cookies.is_empty() {
            out.push(("Set-Cookie".into(), cookies));
        }
    }
    Ok(ProxyResponse {
        status,
        headers: out,
        body,
    })
}

/// A header's values: a scalar, or each scalar of an array.
fn values(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
        other => scalar_text(other).into_iter().collect(),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// nginx's base64 decoding, which Kong's `ngx.decode_base64` is: the padding may be left
/// out, and decoding stops at the first `=`.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const NGINX: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let unpadded = text.split('=').next().unwrap_or_default();
    NGINX.decode(unpadded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_integration_answers_are_checked_with_kongs_messages() {
        let ok = proxy_response(
            br#"{"statusCode": "201", "headers": {"a": "1", "b": "2"},
                 "multiValueHeaders": {"b": ["x", "y"]}, "body": "aGk=", "isBase64Encoded": true,
                 "cookies": ["c=1", "d=2"]}"#,
        )
        .expect("valid");
        assert_eq!(ok.status, 201);
        assert_eq!(ok.body, b"hi");
        assert_eq!(
            ok.headers,
            vec![
                ("a".to_owned(), vec!["1".to_owned()]),
                ("b".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
                (
                    "Set-Cookie".to_owned(),
                    vec!["c=1".to_owned(), "d=2".to_owned()]
                ),
            ]
        );
        let err = |payload: &str| proxy_response(payload.as_bytes()).expect_err("invalid");
        assert_eq!(
            err(r#"{"statusCode": 600}"#),
            "statusCode validation failed"
        );
        assert_eq!(
            err(r#"{"statusCode": 200, "headers": 1}"#),
            "headers must be a table"
        );
        assert_eq!(
            err(r#"{"statusCode": 200, "body": {}}"#),
            "body must be a string"
        );
        assert_eq!(
            err(r#"{"statusCode": 200, "isBase64Encoded": "yes"}"#),
            "isBase64Encoded must be a boolean"
        );
        assert!(err("not json").contains("expected"));
    }

    #[test]
    fn legacy_mode_turns_empty_arrays_into_objects_and_leaves_other_bodies_alone() {
        assert_eq!(
            legacy_empty_arrays(br#"{"a": [], "b": [[]]}"#.to_vec()),
            br#"{"a":{},"b":[{}]}"#
        );
        assert_eq!(
            legacy_empty_arrays(br#"{"a": [1]}"#.to_vec()),
            br#"{"a": [1]}"#
        );
    }

    /// nginx's decoder, which Kong's `ngx.decode_base64` is, takes a body without its
    /// padding and stops at `=`; the strict decoder answered 502.
    #[test]
    fn a_base64_body_decodes_as_nginx_decodes_it() {
        assert_eq!(
            super::decode_base64("dGVzdA").as_deref(),
            Some(&b"test"[..])
        );
        assert_eq!(
            super::decode_base64("dGVzdA=").as_deref(),
            Some(&b"test"[..])
        );
        assert_eq!(
            super::decode_base64("dGVzdA==").as_deref(),
            Some(&b"test"[..])
        );
        assert_eq!(super::decode_base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(super::decode_base64("a"), None, "one char short of a byte");
        assert_eq!(super::decode_base64("a*b="), None, "not base64");
    }
}
