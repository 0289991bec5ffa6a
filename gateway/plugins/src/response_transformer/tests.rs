//! Unit tests: Kong's `spec/03-plugins/15-response-transformer/01-header_transformer_spec.lua`
//! and `02-body_transformer_spec.lua`, and the API spec's config errors.

use serde_json::{Value, json};

use super::json::{JsonType, is_json_body, json_value};
use super::{ResponseTransformer, build, schema};
use gangway_config::ConfigErrors;
use gangway_http::{Limits, ResponseHead, parse_response};
use gangway_pipeline::edits::HeaderEdits;

/// Validates `config` with the schema and builds the plugin.
fn plugin(config: Value) -> ResponseTransformer {
    let mut errors = ConfigErrors::default();
    let filled = schema().validate(Some(&config), "config", &mut errors);
    assert!(errors.is_empty(), "schema errors: {errors:?}");
    assert!(build(&filled).is_ok());
    let conf: super::Config = serde_json::from_value(filled).expect("config shape");
    super::compile(conf).expect("config compiles")
}

fn problems(config: Value) -> Vec<String> {
    let mut errors = ConfigErrors::default();
    schema().validate(Some(&config), "config", &mut errors);
    errors.0.iter().map(ToString::to_string).collect()
}

/// Runs the header operations on a response with `headers` (`name: value` lines); returns
/// every header after the edits, in the order the head writer emits them.
fn headers_after(p: &ResponseTransformer, headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut raw = String::from("HTTP/1.1 200 OK\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let mut head = ResponseHead::default();
    parse_response(raw.as_bytes(), &Limits::default(), false, &mut head)
        .expect("valid head")
        .expect("complete head");
    let mut edits = HeaderEdits::default();
    p.transform_headers(Some((&head, raw.as_bytes())), &mut edits, 100);
    let originals = head
        .headers()
        .iter()
        .map(|f| (f.name.get(raw.as_bytes()), f.value.get(raw.as_bytes())));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    edits
        .table(originals, u16::MAX)
        .map(|(n, v)| (text(n).to_ascii_lowercase(), text(v)))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn is_json_body_follows_kongs_media_type_rules() {
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "application/problem+json; charset=utf-8",
        "application/x-www-form-urlencoded, application/json",
        "Application/JSON",
        "application/json;charset=\"utf-8\"",
    ] {
        assert!(is_json_body(ct.as_bytes()), "{ct}");
    }
    for ct in [
        "application/x-www-form-urlencoded",
        "text/json",
        "application/jsonx",
        "application/+json",
        "application/json;",
        "*",
        "",
    ] {
        assert!(!is_json_body(ct.as_bytes()), "{ct}");
    }
}

#[test]
fn remove_rename_replace_add_append_headers() {
    let p = plugin(json!({"remove": {"headers": ["h1", "h2", "h3"]}}));
    assert_eq!(
        headers_after(
            &p,
            &[("h1", "value1"), ("h2", "value2a"), ("h2", "value2b")]
        ),
        []
    );
    let p = plugin(json!({"rename": {"headers": ["h1:h2", "h3:h4"]}}));
    assert_eq!(
        headers_after(&p, &[("h1", "v1"), ("h3", "v3")]),
        pairs(&[("h2", "v1"), ("h4", "v3")])
    );
    assert_eq!(
        headers_after(&p, &[("h1", "v1"), ("h1", "v2")]),
        pairs(&[("h2", "v1"), ("h2", "v2")])
    );
    assert_eq!(headers_after(&p, &[]), []);
    let p = plugin(json!({"replace": {"headers": ["h1:v1", "h2:value:2"]}}));
    assert_eq!(
        headers_after(
            &p,
            &[("h1", "value1"), ("h2", "value2a"), ("h2", "value2b")]
        ),
        pairs(&[("h1", "v1"), ("h2", "value:2")])
    );
    assert_eq!(
        headers_after(&p, &[("h2", "value2a")]),
        pairs(&[("h2", "value:2")])
    );
    let p = plugin(json!({"add": {"headers": ["h2:v2"]}}));
    assert_eq!(
        headers_after(&p, &[("h1", "v1")]),
        pairs(&[("h1", "v1"), ("h2", "v2")])
    );
    assert_eq!(
        headers_after(&p, &[("h1", "v1"), ("h2", "v3")]),
        pairs(&[("h1", "v1"), ("h2", "v3")])
    );
    let p = plugin(json!({"append": {"headers": ["h1:v2"]}}));
    assert_eq!(headers_after(&p, &[]), pairs(&[("h1", "v2")]));
    assert_eq!(
        headers_after(&p, &[("h1", "v1")]),
        pairs(&[("h1", "v1"), ("h1", "v2")])
    );
    let p = plugin(json!({
        "remove": {"headers": ["h1:v1"]},
        "replace": {"headers": ["h2:v3"]},
        "add": {"headers": ["h3:v3"]},
        "append": {"headers": ["h3:v4"]},
    }));
    assert_eq!(
        headers_after(&p, &[("h1", "v1"), ("h2", "v2")]),
        pairs(&[("h2", "v3"), ("h3", "v3"), ("h3", "v4")])
    );
}

#[test]
fn presence_is_tested_on_the_headers_as_they_arrived() {
    // Kong reads the headers into a table once: a removed header still counts as present
    // for replace and add.
    let p = plugin(json!({
        "remove": {"headers": ["h1", "h2"]},
        "replace": {"headers": ["h1:back"]},
        "add": {"headers": ["h2:never"]},
        "rename": {"headers": ["h3:h3"]},
    }));
    assert_eq!(
        headers_after(&p, &[("h1", "a"), ("h2", "b"), ("h3", "c")]),
        pairs(&[("h1", "back")])
    );
}

#[test]
fn json_values_convert_like_kong() {
    let conv = |text: Option<&str>, ty| json_value(text, ty);
    assert_eq!(conv(Some("v1"), JsonType::String), Some(json!("v1")));
    assert_eq!(
        conv(Some("\"v1\""), JsonType::String),
        Some(json!("\"v1\""))
    );
    assert_eq!(
        conv(Some("/hello/world"), JsonType::String),
        Some(json!("/hello/world"))
    );
    assert_eq!(conv(Some("a\\b"), JsonType::String), Some(json!("a\\\\b")));
    assert_eq!(conv(None, JsonType::String), Some(json!("null")));
    assert_eq!(conv(Some("-1"), JsonType::Number), Some(json!(-1)));
    assert_eq!(conv(Some(" 1.5 "), JsonType::Number), Some(json!(1.5)));
    assert_eq!(conv(Some("0x10"), JsonType::Number), Some(json!(16)));
    assert_eq!(conv(Some("1e2"), JsonType::Number), Some(json!(100)));
    assert_eq!(conv(Some("abc"), JsonType::Number), None);
    assert_eq!(conv(Some("inf"), JsonType::Number), None);
    assert_eq!(conv(Some("true"), JsonType::Boolean), Some(json!(true)));
    assert_eq!(conv(Some("yes"), JsonType::Boolean), Some(json!(false)));
}

fn transform(p: &ResponseTransformer, body: &str) -> Value {
    let out = p
        .json
        .transform(body.as_bytes())
        .expect("a JSON object body");
    serde_json::from_slice(&out).expect("JSON out")
}

#[test]
fn json_add_append_remove_rename_replace() {
    let add = plugin(json!({"add": {
        "json": ["p1:v1", "p3:value:3", "p4:\"v1\"", "p5:-1", "p6:false", "p7:true"],
        "json_types": ["string", "string", "string", "number", "boolean", "boolean"],
    }}));
    let all = json!({"p1": "v1", "p2": "v1", "p3": "value:3", "p4": "\"v1\"", "p5": -1,
                     "p6": false, "p7": true});
    assert_eq!(transform(&add, r#"{"p2":"v1"}"#), all);
    let mut with_array = all.clone();
    with_array["a"] = json!([]);
    assert_eq!(transform(&add, r#"{"p2":"v1", "a":[]}"#), with_array);
    assert_eq!(transform(&add, r#"{"p2":false}"#)["p2"], json!(false));

    let append = plugin(json!({"append": {
        "json": ["p1:v1", "p3:\"v1\"", "p4:-1", "p5:false", "p6:true"],
        "json_types": ["string", "string", "number", "boolean", "boolean"],
    }}));
    assert_eq!(
        transform(&append, r#"{"p1":"v2"}"#),
        json!({"p1": ["v2", "v1"], "p3": ["\"v1\""], "p4": [-1], "p5": [false], "p6": [true]})
    );
    assert_eq!(
        transform(&append, r#"{"p5":"v5","p6":"v6"}"#),
        json!({"p5": ["v5", false], "p6": ["v6", true], "p1": ["v1"], "p3": ["\"v1\""], "p4": [-1]})
    );

    let remove = plugin(json!({"remove": {"json": ["p1", "p2"]}}));
    let out = remove.json.transform(br#"{"p1" : "v1", "p2" : "v1"}"#);
    assert_eq!(out.as_deref(), Some(&b"{}"[..]));

    let rename = plugin(json!({"rename": {"json": ["p1:k1", "p2:k2", "p3:k3", "p4:k4", "p5:k5"]}}));
    assert_eq!(
        transform(&rename, r#"{"p1" : "v1", "p2" : "v2", "p3": []}"#),
        json!({"k1": "v1", "k2": "v2", "k3": []})
    );
    assert_eq!(
        transform(&rename, r#"{"p4" : false, "p5" : true}"#),
        json!({"k4": false, "k5": true})
    );

    let replace = plugin(json!({"replace": {
        "json": ["p1:v2", "p2:\"v2\"", "p3:-1", "p4:false", "p5:true"],
        "json_types": ["string", "string", "number", "boolean", "boolean"],
    }}));
    assert_eq!(
        transform(&replace, r#"{"p1" : "v1", "p2" : "v1"}"#),
        json!({"p1": "v2", "p2": "\"v2\""})
    );
    assert_eq!(
        transform(&replace, r#"{"p3" : "v1", "p4" : "v4", "p5" : false}"#),
        json!({"p3": -1, "p4": false, "p5": false})
    );

    let combo = plugin(json!({
        "remove": {"json": ["p1"]},
        "rename": {"json": ["p4:p2"]},
        "replace": {"json": ["p2:v2"]},
        "add": {"json": ["p3:v1"]},
        "append": {"json": ["p3:v2"]},
    }));
    assert_eq!(
        transform(&combo, r#"{"p1" : "v1", "p4" : "v1", "a" : []}"#),
        json!({"p2": "v2", "p3": ["v1", "v2"], "a": []})
    );
    // 04-filter_spec: replace with slashes and quotes.
    let filter = plugin(json!({"replace": {
        "json": ["headers:/hello/world", "uri_args:this is a / test", "url:\"wot\""],
    }}));
    assert_eq!(
        transform(&filter, r#"{"headers":{},"uri_args":{},"url":"x"}"#),
        json!({"headers": "/hello/world", "uri_args": "this is a / test", "url": "\"wot\""})
    );
}

#[test]
fn bodies_that_are_not_json_objects_are_left_alone() {
    let p = plugin(json!({"remove": {"json": ["foo"]}}));
    assert_eq!(p.json.transform(b"not a json value"), None);
    assert_eq!(p.json.transform(b"[1,2]"), None);
    assert!(
        plugin(json!({"remove": {"headers": ["h1"]}}))
            .json
            .is_empty()
    );
}

#[test]
fn config_errors_carry_kongs_messages() {
    assert_eq!(
        problems(json!({"rename": {"headers": ["x-request-idx-custom-request-id"]}})),
        ["config.rename.headers[0]: invalid value: x-request-idx-custom-request-id"]
    );
    assert_eq!(
        problems(json!({"rename": {"headers": ["x-requ,est-id:x-custom-request-id"]}})),
        ["config.rename.headers[0]: 'x-requ,est-id' is not a valid header"]
    );
    for op in ["add", "replace", "append"] {
        assert_eq!(
            problems(json!({op: {"headers": ["just_a_key"]}})),
            [format!("config.{op}.headers[0]: invalid value: just_a_key")]
        );
    }
    assert_eq!(
        problems(json!({"add": {"json_types": ["list"]}})),
        ["config.add.json_types[0]: expected one of: boolean, number, string"]
    );
    assert_eq!(
        problems(json!({"remove": {"json": null}})),
        ["config.remove.json: required field missing"]
    );
    assert!(
        problems(json!({"remove": {"headers": ["just_a_key"], "json": ["just_a_key"]}})).is_empty()
    );
}

/// Kong writes and finds response headers through `ngx.header`, which turns `_` into `-`:
/// `X_Custom:1` adds `X-Custom`, and `x_powered_by` removes `X-Powered-By`.
#[test]
fn underscores_in_header_names_are_hyphens_as_nginx_writes_them() {
    let p = plugin(json!({
        "add": {"headers": ["X_Custom:1"]},
        "remove": {"headers": ["x_powered_by"]},
        "rename": {"headers": ["x_old:x_new"]},
    }));
    assert_eq!(
        headers_after(&p, &[("X-Powered-By", "PHP"), ("X-Old", "v")]),
        pairs(&[("x-new", "v"), ("x-custom", "1")])
    );
}
