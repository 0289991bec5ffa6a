//! Unit tests on parsed requests, no sockets: the cases of Kong's
//! `spec/03-plugins/36-request-transformer/02-access_spec.lua` that do not need the router
//! (those run in `tests/integration/transformers.rs`), and the schema's messages.

mod validation;

use serde_json::{Value, json};

use super::env::Request;
use super::{RequestTransformer, config, schema};
use gangway_config::ConfigErrors;
use gangway_http::{Limits, RequestHead, parse_request};
use gangway_pipeline::RequestState;
use gangway_router::MatchScratch;

/// Validates `config` with the schema (defaults filled) and compiles it.
fn plugin(config: Value) -> RequestTransformer {
    let mut errors = ConfigErrors::default();
    let filled = schema().validate(Some(&config), "config", &mut errors);
    assert!(errors.is_empty(), "schema errors: {errors:?}");
    config::compile(&filled).expect("config compiles")
}

/// What the upstream would receive.
struct Out {
    raw: Vec<u8>,
    head: RequestHead,
    state: RequestState,
    result: Result<(), ()>,
}

impl Out {
    fn headers(&self, name: &str) -> Vec<String> {
        self.state
            .headers
            .values(name, self.head.header_values(&self.raw, name))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The query string sent upstream, with its `?`.
    fn query(&self) -> String {
        let mut out = Vec::new();
        self.state.query.write(self.head.query(&self.raw), &mut out);
        String::from_utf8(out).expect("utf-8 query")
    }

    fn body(&self) -> Option<String> {
        self.state
            .body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    fn json_body(&self) -> Value {
        serde_json::from_str(&self.body().expect("a body")).expect("a JSON body")
    }

    fn method(&self) -> Option<&str> {
        self.state.method.as_deref()
    }
}

/// Runs `plugin` on `GET`-style request text (`head` without the final blank line), with
/// `body` buffered as the proxy would.
fn run(p: &RequestTransformer, head: &str, body: Option<&str>) -> Out {
    let raw = format!("{head}\r\n\r\n").into_bytes();
    let mut parsed = RequestHead::default();
    parse_request(&raw, &Limits::default(), &mut parsed)
        .expect("valid head")
        .expect("complete head");
    let mut state = RequestState::default();
    state.reset(1);
    state.body = body.map(|b| b.as_bytes().to_vec());
    let captures = MatchScratch::default();
    let result = {
        let mut req = Request {
            head: &parsed,
            buf: &raw,
            captures: &captures,
            state: &mut state,
        };
        p.transform(&mut req)
    };
    Out {
        raw,
        head: parsed,
        state,
        result,
    }
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded";
const JSON: &str = "Content-Type: application/json";

#[test]
fn add_sets_absent_headers_query_and_body_args() {
    // test1: values may contain colons.
    let p = plugin(json!({"add": {
        "headers": ["h1:v1", "h2:value:2"],
        "querystring": ["q1:v1"],
        "body": ["p1:v1"],
    }}));
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: test1.test\r\nh1: keep\r\n{FORM}"),
        Some("hello=world"),
    );
    assert_eq!(
        out.headers("h1"),
        ["keep"],
        "add never changes a present header"
    );
    assert_eq!(out.header("h2").as_deref(), Some("value:2"));
    assert_eq!(out.query(), "?q1=v1");
    assert_eq!(out.body().as_deref(), Some("hello=world&p1=v1"));
    // An argument that is already there keeps its value.
    let out = run(
        &p,
        &format!("POST /request?q1=v2 HTTP/1.1\r\nHost: x\r\n{FORM}"),
        Some("p1=v2"),
    );
    assert_eq!(out.query(), "?q1=v2");
    assert_eq!(out.body().as_deref(), Some("p1=v2"), "nothing changed");
    // JSON: added as a string, only when absent (or false).
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"p2":"v1","emptyarray":[]}"#),
    );
    assert_eq!(
        out.body().as_deref(),
        Some(r#"{"p2":"v1","emptyarray":[],"p1":"v1"}"#)
    );
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"p1":false}"#),
    );
    assert_eq!(
        out.json_body(),
        json!({"p1": "v1"}),
        "false counts as absent"
    );
}

#[test]
fn host_can_be_replaced_but_never_added_removed_or_renamed() {
    let p = plugin(json!({
        "add": {"headers": ["host:mark"]},
        "remove": {"headers": ["host"]},
        "rename": {"headers": ["host:x-host"]},
    }));
    let out = run(&p, "GET /get HTTP/1.1\r\nHost: test2.test", None);
    assert!(out.state.headers.is_empty(), "no edit of host");
    let p = plugin(json!({"replace": {"headers": ["host:new.test"]}}));
    let out = run(&p, "GET /get HTTP/1.1\r\nHost: test2.test", None);
    assert_eq!(out.header("host").as_deref(), Some("new.test"));
}

#[test]
fn remove_replace_add_append_together() {
    // test3.
    let p = plugin(json!({
        "add": {
            "headers": ["x-added:a1", "x-added2:b1", "x-added3:c2"],
            "querystring": ["query-added:newvalue", "p1:anything:1"],
            "body": ["newformparam:newvalue"],
        },
        "remove": {"headers": ["x-to-remove"], "querystring": ["toremovequery"]},
        "append": {"headers": ["x-added:a2", "x-added:a3"], "querystring": ["p1:a2", "p2:b1"]},
        "replace": {"headers": ["x-to-replace:false"], "querystring": ["toreplacequery:no"]},
    }));
    let out = run(
        &p,
        "GET /request?toremovequery=yes&toreplacequery=yes&nottoremove=yes HTTP/1.1\r\n\
         Host: test3.test\r\nx-to-remove: true\r\nx-to-replace: true\r\nx-added3: c1",
        None,
    );
    assert_eq!(out.header("x-to-remove"), None);
    assert_eq!(out.headers("x-to-replace"), ["false"]);
    assert_eq!(out.headers("x-added"), ["a1", "a2", "a3"]);
    assert_eq!(out.headers("x-added2"), ["b1"]);
    assert_eq!(out.headers("x-added3"), ["c1"]);
    assert_eq!(
        out.query(),
        "?nottoremove=yes&p1=anything%3A1&p1=a2&p2=b1&query-added=newvalue&toreplacequery=no"
    );
    let out = run(&p, "GET /request HTTP/1.1\r\nHost: test3.test", None);
    assert_eq!(out.header("x-to-replace"), None, "replace needs the header");
}

#[test]
fn remove_from_form_json_and_query() {
    // test4.
    let p = plugin(json!({"remove": {
        "headers": ["x-to-remove"],
        "querystring": ["q1"],
        "body": ["toremoveform"],
    }}));
    let out = run(
        &p,
        &format!("POST /request?q1=v1&q2=v2 HTTP/1.1\r\nHost: x\r\n{FORM}"),
        Some("toremoveform=yes&nottoremove=yes"),
    );
    assert_eq!(out.body().as_deref(), Some("nottoremove=yes"));
    assert_eq!(out.query(), "?q2=v2");
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"toremoveform":"yes","nottoremove":"yes"}"#),
    );
    assert_eq!(out.json_body(), json!({"nottoremove": "yes"}));
    let malformed = "malformed json body";
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(malformed),
    );
    assert_eq!(out.body().as_deref(), Some(malformed), "left unchanged");
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some("{}"),
    );
    assert_eq!(out.body().as_deref(), Some("{}"));
    let out = run(&p, "POST /request HTTP/1.1\r\nHost: x", Some(""));
    assert_eq!(
        out.body().as_deref(),
        Some(""),
        "no content type: untouched"
    );
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"emptyarray":[]}"#),
    );
    assert_eq!(out.body().as_deref(), Some(r#"{"emptyarray":[]}"#));
}

#[test]
fn rename_moves_values_and_overrides_the_target() {
    // test9 and the rename.mock route.
    let p = plugin(json!({"rename": {
        "headers": ["x-to-rename:x-is-renamed", "rename:Rename", "identical:identical"],
        "querystring": ["originalparam:renamedparam", "inexist:exist"],
        "body": ["originalparam:renamedparam"],
    }}));
    let out = run(
        &p,
        "GET /request?originalparam=true&nottorename=true HTTP/1.1\r\nHost: x\r\n\
         x-to-rename: new-result\r\nX-Is-Renamed: old-result\r\nrename: true\r\nidentical: true",
        None,
    );
    assert_eq!(out.header("x-to-rename"), None);
    assert_eq!(out.headers("x-is-renamed"), ["new-result"]);
    assert_eq!(out.headers("rename"), ["true"]);
    let added: Vec<_> = out.state.headers.added().map(|(n, _)| n.to_vec()).collect();
    assert!(
        added.contains(&b"Rename".to_vec()),
        "case change keeps the new spelling"
    );
    assert_eq!(out.headers("identical"), ["true"]);
    assert_eq!(out.query(), "?nottorename=true&renamedparam=true");
    let out = run(&p, "GET /request?exist=true HTTP/1.1\r\nHost: x", None);
    assert_eq!(
        out.query(),
        "?exist=true",
        "an absent name is not renamed onto"
    );
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{FORM}"),
        Some("originalparam=yes&x-a-header=true"),
    );
    assert_eq!(
        out.body().as_deref(),
        Some("renamedparam=yes&x-a-header=true")
    );
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"originalparam":"yes","nottorename":"yes"}"#),
    );
    assert_eq!(
        out.json_body(),
        json!({"nottorename": "yes", "renamedparam": "yes"})
    );
}

#[test]
fn replace_only_touches_present_values() {
    // test5.
    let p = plugin(json!({"replace": {
        "headers": ["h1:v1"],
        "querystring": ["q1:v1"],
        "body": ["p1:v1"],
    }}));
    let out = run(
        &p,
        &format!("POST /request?q1=a&q1=b&q2=c HTTP/1.1\r\nHost: x\r\nh1: V\r\nh2: v2\r\n{FORM}"),
        Some("p1=v&p2=v1"),
    );
    assert_eq!(out.headers("h1"), ["v1"]);
    assert_eq!(out.headers("h2"), ["v2"]);
    assert_eq!(out.query(), "?q1=v1&q2=c");
    assert_eq!(out.body().as_deref(), Some("p1=v1&p2=v1"));
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{FORM}"),
        Some("p2=v1"),
    );
    assert_eq!(out.header("h1"), None);
    assert_eq!(out.query(), "", "no query at all stays without one");
    assert_eq!(out.body(), Some("p2=v1".into()));
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"p1":"v","p2":"v1","p3":false}"#),
    );
    assert_eq!(
        out.json_body(),
        json!({"p1": "v1", "p2": "v1", "p3": false})
    );
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"p1":false}"#),
    );
    assert_eq!(
        out.body().as_deref(),
        Some(r#"{"p1":false}"#),
        "false is absent"
    );
}

#[test]
fn append_makes_arrays_and_repeats() {
    // test6 and the '#' regression.
    let p = plugin(json!({"append": {
        "headers": ["h1:v1", "h1:v2", "h1:#value_with_hash", "h2:v1"],
        "querystring": ["q1:v1", "q1:v2", "q2:v1"],
        "body": ["p1:v1", "p1:v2", "p2:value:1"],
    }}));
    let out = run(
        &p,
        &format!("POST /request?q1=v0 HTTP/1.1\r\nHost: x\r\n{FORM}"),
        Some("p1=v0&flag"),
    );
    assert_eq!(out.headers("h1"), ["v1", "v2", "#value_with_hash"]);
    assert_eq!(out.headers("h2"), ["v1"]);
    assert_eq!(out.query(), "?q1=v0&q1=v1&q1=v2&q2=v1");
    assert_eq!(
        out.body().as_deref(),
        Some("p1=v0&flag&p1=v1&p1=v2&p2=value%3A1")
    );
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"p1":"v0","p2":7}"#),
    );
    assert_eq!(
        out.json_body(),
        json!({"p1": ["v0", "v1", "v2"], "p2": ["value:1"]})
    );
    let out = run(
        &p,
        &format!("POST /request HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some("not json"),
    );
    assert_eq!(out.body().as_deref(), Some("not json"));
}

#[test]
fn remove_then_add_the_same_header() {
    // test22: Authorization is replaced whether the client sent one or not.
    let p = plugin(json!({
        "http_method": "POST",
        "remove": {"headers": ["Authorization"]},
        "add": {"headers": ["Authorization:Basic test"]},
    }));
    for head in [
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dGVzdDp0ZXN0",
        "GET / HTTP/1.1\r\nHost: x",
    ] {
        let out = run(&p, head, None);
        assert_eq!(out.headers("authorization"), ["Basic test"]);
        assert_eq!(out.method(), Some("POST"));
    }
}

#[test]
fn a_switch_to_get_moves_form_args_into_the_query() {
    // test8.
    let p = plugin(json!({"http_method": "GET"}));
    assert!(p.method_moves_form);
    let out = run(
        &p,
        &format!("POST /request?hello=world HTTP/1.1\r\nHost: x\r\n{FORM}"),
        Some("name=marco&hello=again"),
    );
    assert_eq!(out.method(), Some("GET"));
    assert_eq!(out.query(), "?hello=world&hello=again&name=marco");
    assert_eq!(
        out.body().as_deref(),
        Some("name=marco&hello=again"),
        "Kong leaves the body in place"
    );
    let out = run(
        &p,
        &format!("POST /request?hello=world HTTP/1.1\r\nHost: x\r\n{JSON}"),
        Some(r#"{"name":"marco"}"#),
    );
    assert_eq!(out.query(), "?hello=world", "only form bodies move");
    // test7: GET to POST keeps the query.
    let p = plugin(json!({"http_method": "POST"}));
    assert!(!p.method_moves_form);
    let out = run(
        &p,
        "GET /request?hello=world&name=marco HTTP/1.1\r\nHost: x",
        None,
    );
    assert_eq!(out.method(), Some("POST"));
    assert_eq!(out.query(), "?hello=world&name=marco");
}

#[test]
fn an_added_content_type_selects_the_body_format() {
    // test20: the header change happens before the body change.
    let p = plugin(json!({
        "http_method": "POST",
        "add": {"headers": ["Content-Type:application/json"], "body": ["body:somecontent"]},
    }));
    let out = run(&p, "GET /request HTTP/1.1\r\nHost: x", Some(""));
    assert_eq!(out.method(), Some("POST"));
    assert_eq!(
        out.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(out.json_body(), json!({"body": "somecontent"}));
}

#[test]
fn templates_read_the_request_as_the_plugin_received_it() {
    // test15/16/17: a removed or replaced header, or a removed query arg, still renders.
    let p = plugin(json!({
        "remove": {"headers": ["x-remove-header"], "querystring": ["q1"]},
        "replace": {
            "headers": ["x-replace-header:the new value"],
            "querystring": ["q2:$(headers['x-remove-header'])"],
        },
        "add": {
            "querystring": ["uri_param2:$(headers.host)", "f:$(query_params.flag)"],
            "headers": [
                "x-test-header:$(query_params.q1)",
                "x-old:$(headers['x-replace-header'])",
                "x-missing:$(headers.nope)",
            ],
        },
    }));
    let out = run(
        &p,
        "GET /r?q1=20&q2=1&flag HTTP/1.1\r\nHost: test15.test\r\n\
         x-remove-header: its a test\r\nx-replace-header: the old value",
        None,
    );
    assert_eq!(out.header("x-remove-header"), None);
    assert_eq!(out.headers("x-test-header"), ["20"]);
    assert_eq!(out.headers("x-old"), ["the old value"]);
    assert_eq!(out.headers("x-replace-header"), ["the new value"]);
    assert_eq!(
        out.headers("x-missing"),
        [""],
        "a missing lookup renders empty"
    );
    // `?flag` is `true` in Kong's argument table, and `set_query` writes it back alone.
    assert_eq!(
        out.query(),
        "?f=true&flag&q2=its%20a%20test&uri_param2=test15.test"
    );
}

#[test]
fn escaped_template_and_literal_values() {
    // test18: `$('...')` is a string literal.
    let p = plugin(json!({"add": {"querystring": ["q1:$('$(uri_captures.user1)')"]}}));
    let out = run(&p, "GET / HTTP/1.1\r\nHost: x", None);
    // ngx.encode_args keeps `(` and `)` (its URI-component table) and escapes `$`.
    assert_eq!(out.query(), "?q1=%24(uri_captures.user1)");
}

#[test]
fn replace_uri_sets_an_escaped_upstream_path() {
    let p = plugin(json!({"replace": {"uri": "/requests/tést"}}));
    let out = run(&p, "GET /anything?a=1 HTTP/1.1\r\nHost: x", None);
    assert_eq!(out.state.path.as_deref(), Some(&b"/requests/t%C3%A9st"[..]));
    assert_eq!(out.query(), "?a=1", "the query is the proxy's to append");
    let p = plugin(json!({"replace": {"uri": "$(headers.x_path)"}}));
    let out = run(&p, "GET / HTTP/1.1\r\nHost: x\r\nx-path: relative", None);
    assert_eq!(
        out.result,
        Err(()),
        "Kong's set_path refuses a path without /"
    );
    let out = run(
        &p,
        "GET / HTTP/1.1\r\nHost: x\r\nx-path: /from/header",
        None,
    );
    assert_eq!(out.state.path.as_deref(), Some(&b"/from/header"[..]));
}

#[test]
fn empty_header_values_clear_on_replace_and_do_nothing_otherwise() {
    let p = plugin(json!({
        "replace": {"headers": ["h1:"]},
        "add": {"headers": ["h2:"]},
        "append": {"headers": ["h3:"]},
    }));
    let out = run(&p, "GET / HTTP/1.1\r\nHost: x\r\nh1: a\r\nh3: c", None);
    assert_eq!(out.header("h1"), None);
    assert_eq!(out.header("h2"), None);
    assert_eq!(out.headers("h3"), ["c"]);
}

#[test]
fn body_is_buffered_only_when_needed() {
    use gangway_pipeline::Plugin;
    assert!(!plugin(json!({"add": {"headers": ["a:b"]}})).needs_body());
    assert!(plugin(json!({"remove": {"body": ["a"]}})).needs_body());
    assert!(plugin(json!({"http_method": "HEAD"})).needs_body());
    assert!(!plugin(json!({"http_method": "PUT"})).needs_body());
}

#[test]
fn templated_header_values_cannot_start_a_new_header_line() {
    let p = plugin(json!({"add": {"headers": ["x-q:$(query_params.q)"]}}));
    let out = run(&p, "GET /?q=a%0D%0AEvil:%20x%09y HTTP/1.1\r\nHost: x", None);
    assert_eq!(out.headers("x-q"), ["a%0D%0AEvil: x\ty"]);
}
