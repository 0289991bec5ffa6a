//! request-transformer and response-transformer end to end, with assertions ported from
//! Kong's spec/03-plugins/36-request-transformer/02-access_spec.lua and
//! 15-response-transformer/{04-filter,05-big_response_body}_spec.lua.

use crate::harness::client::Conn;
use crate::harness::gangway_command;
use crate::harness::{Gangway, TempDir, Upstream, echo_header, request, send_raw};

const ROUTES: &str = r#"    routes:
      - name: t3
        paths: ["/t3"]
        plugins:
          - name: request-transformer
            config:
              add:
                headers: ["x-added:a1", "x-added2:b1", "x-added3:c2"]
                querystring: ["query-added:newvalue", "p1:anything:1"]
                body: ["newformparam:newvalue"]
              remove:
                headers: ["x-to-remove"]
                querystring: ["toremovequery"]
              append:
                headers: ["x-added:a2", "x-added:a3"]
                querystring: ["p1:a2", "p2:b1"]
              replace:
                headers: ["x-to-replace:false"]
                querystring: ["toreplacequery:no"]
      - name: json-body
        paths: ["/json"]
        plugins:
          - name: request-transformer
            config:
              remove:
                body: ["toremove"]
              add:
                body: ["added:yes"]
      - name: to-get
        paths: ["/to-get"]
        plugins:
          - name: request-transformer
            config:
              http_method: GET
      - name: to-head
        paths: ["/to-head"]
        plugins:
          - name: request-transformer
            config:
              http_method: HEAD
      - name: captures
        paths: ['~/requests/user1/(?<user1>\w+)/user2/(?<user2>\S+)']
        strip_path: false
        plugins:
          - name: request-transformer
            config:
              add:
                querystring:
                  - "uri_param1:$(uri_captures.user1)"
                  - "uri_param2[some_index][1]:$(uri_captures.user2)"
      - name: swap
        paths: ['~/swap/user1/(?<user1>\w+)/user2/(?<user2>\S+)']
        plugins:
          - name: request-transformer
            config:
              replace:
                uri: "/requests/user2/$(uri_captures.user2)/user1/$(uri_captures.user1)"
      - name: optional-prefix
        paths: ['~/(gw/)?api/(?<subpath>htest)$']
        strip_path: false
        plugins:
          - name: request-transformer
            config:
              replace:
                uri: '/api/v2/$(uri_captures["subpath"])'
      - name: response-headers
        paths: ["/rh"]
        plugins:
          - name: response-transformer
            config:
              remove:
                headers: ["x-upstream", "via", "x-kong-upstream-latency", "content-length"]
              rename:
                headers: ["x-from:x-to"]
              replace:
                headers: ["x-rep:new", "x-absent:never"]
              add:
                headers: ["x-add:added", "content-type:text/never"]
              append:
                headers: ["x-app:1", "x-app:2"]
      - name: response-json
        paths: ["/rj"]
        plugins:
          - name: response-transformer
            config:
              remove:
                json: ["conn_id", "request_on_conn"]
              rename:
                json: ["target:path"]
              replace:
                json: ["method:changed"]
              add:
                json: ["p1:v1", "n:5"]
                json_types: ["string", "number"]
              append:
                json: ["headers:extra"]
"#;

fn start() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let config = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n{ROUTES}",
        up.addr
    );
    let gw = Gangway::start(&config);
    (up, gw)
}

/// Every value of request header `name` the upstream received.
fn echo_headers(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case(name))
        })
        .filter_map(|pair| pair[1].as_str().map(str::to_string))
        .collect()
}

#[test]
fn request_transformer_rewrites_headers_query_and_form_body() {
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "POST",
        "/t3?toremovequery=yes&toreplacequery=yes&nottoremove=yes",
        &[
            ("x-to-remove", "true"),
            ("x-to-replace", "true"),
            ("x-added3", "c1"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        b"hello=world",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        echo["target"],
        "/?nottoremove=yes&p1=anything%3A1&p1=a2&p2=b1&query-added=newvalue&toreplacequery=no"
    );
    assert_eq!(echo_header(&echo, "x-to-remove"), None);
    assert_eq!(echo_headers(&echo, "x-to-replace"), ["false"]);
    assert_eq!(echo_headers(&echo, "x-added"), ["a1", "a2", "a3"]);
    assert_eq!(echo_headers(&echo, "x-added2"), ["b1"]);
    assert_eq!(echo_headers(&echo, "x-added3"), ["c1"]);
    assert_eq!(echo["body"], "hello=world&newformparam=newvalue");
    assert_eq!(
        echo_headers(&echo, "content-length"),
        ["33"],
        "framed from the new body"
    );
}

#[test]
fn request_transformer_writes_the_query_back_as_kong_s_set_query_does() {
    // Kong reads `?flag` as `true`, and its set_query writes it back alone; `e=` is the
    // empty string and keeps its `=`; ngx.encode_args writes a space as %20 and keeps `~`.
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "GET",
        "/t3?flag&e=&s=a+b~&toremovequery=yes",
        &[],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["target"],
        "/?e=&flag&p1=anything%3A1&p1=a2&p2=b1&query-added=newvalue&s=a%20b~"
    );
}

#[test]
fn request_transformer_rewrites_json_multipart_and_chunked_bodies() {
    let (_up, gw) = start();
    let json = [("content-type", "application/json")];
    let r = request(
        gw.proxy,
        "POST",
        "/json",
        &json,
        br#"{"toremove":1,"keep":[]}"#,
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["body"], r#"{"keep":[],"added":"yes"}"#);
    assert_eq!(echo["body_len"], 25);
    // multipart/form-data: parts removed and added by name.
    let multipart = "--b0\r\nContent-Disposition: form-data; name=\"toremove\"\r\n\r\nx\r\n\
                     --b0\r\nContent-Disposition: form-data; name=\"keep\"\r\n\r\ny\r\n--b0--\r\n";
    let r = request(
        gw.proxy,
        "POST",
        "/json",
        &[("content-type", "multipart/form-data; boundary=b0")],
        multipart.as_bytes(),
    )
    .expect("request");
    assert_eq!(
        r.json()["body"],
        "--b0\r\nContent-Disposition: form-data; name=\"keep\"\r\n\r\ny\r\n\
         --b0\r\nContent-Disposition: form-data; name=\"added\"\r\n\r\nyes\r\n--b0--\r\n"
    );
    // A malformed JSON body is left as it is.
    let r = request(gw.proxy, "POST", "/json", &json, b"malformed json body").expect("request");
    assert_eq!(r.json()["body"], "malformed json body");
    // A chunked request body is buffered, rewritten and sent with a Content-Length.
    let r = send_raw(
        gw.proxy,
        b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          8\r\n{\"toremo\r\nb\r\nve\":true}  \r\n0\r\n\r\n",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["body"], r#"{"added":"yes"}"#);
    assert_eq!(echo_header(&echo, "transfer-encoding"), None);
    assert_eq!(echo_headers(&echo, "content-length"), ["15"]);
}

#[test]
fn request_transformer_switch_to_get_moves_form_args_to_the_query() {
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "POST",
        "/to-get?hello=world",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"name=marco",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["target"], "/?hello=world&name=marco");
}

#[test]
fn request_transformer_method_switches_to_and_from_head_keep_framing_right() {
    let (_up, gw) = start();
    // The upstream answers a HEAD: no body follows its Content-Length, so gangway must not
    // wait for one (Kong's client gets the head only, too).
    let mut conn = Conn::open(gw.proxy);
    conn.write(b"GET /to-head HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let r = conn.read(true).expect("head");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("echo"));
    // The same connection serves the next request at once (nothing waits for a body).
    conn.stream()
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let r = conn.get("/to-get?next=1").expect("next response");
    assert_eq!(r.json()["target"], "/?next=1");
    // A HEAD client whose request goes up as GET gets no body, and the upstream connection
    // that still carries one is not reused.
    for _ in 0..3 {
        let r = send_raw(
            gw.proxy,
            b"HEAD /to-get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("head");
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        let r = gw.get("/to-get?after=head");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["target"], "/?after=head");
    }
}

#[test]
fn request_transformer_templates_read_uri_captures() {
    let (_up, gw) = start();
    let r = gw.get("/requests/user1/foo/user2/bar?q1=20");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["target"],
        "/requests/user1/foo/user2/bar?q1=20&uri_param1=foo&uri_param2%5Bsome_index%5D%5B1%5D=bar"
    );
    let r = gw.get("/swap/user1/foo/user2/bar?x=1");
    assert_eq!(r.json()["target"], "/requests/user2/bar/user1/foo?x=1");
    // Group 1 of the route regex may not take part; the named group still renders.
    for path in ["/api/htest", "/gw/api/htest"] {
        let r = gw.get(path);
        assert_eq!(r.json()["target"], "/api/v2/htest", "{path}");
    }
}

#[test]
fn request_transformer_bad_template_is_a_config_error() {
    let dir = TempDir::new("rt-check");
    let file = dir.path("kong.yml");
    std::fs::write(
        &file,
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://example.com
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - name: request-transformer
            config:
              add:
                querystring: ["uri_param2:$(uri_captures user2)", "q:"]
"#,
    )
    .expect("write");
    let out = gangway_command()
        .arg("check")
        .arg(&file)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "add.querystring[0]: value '$(uri_captures user2)' is not in supported format, error:"
        ),
        "{err}"
    );
    assert!(
        err.contains("add.querystring[1]: key 'q' has no value"),
        "{err}"
    );
}

#[test]
fn response_transformer_rewrites_headers() {
    let (_up, gw) = start();
    let r = request(
        gw.proxy,
        "GET",
        "/rh",
        &[
            ("x-echo-response-header", "x-from: f"),
            ("x-echo-response-header", "x-rep: old"),
            ("x-echo-response-header", "x-app: 0"),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), None);
    assert_eq!(r.header("x-from"), None);
    assert_eq!(r.header("x-to"), Some("f"));
    assert_eq!(r.headers_named("x-rep"), ["new"]);
    assert_eq!(r.header("x-absent"), None);
    assert_eq!(r.header("x-add"), Some("added"));
    assert_eq!(r.headers_named("content-type"), ["application/json"]);
    assert_eq!(r.headers_named("x-app"), ["0", "1", "2"]);
    assert!(r.json().is_object(), "the body streams through untouched");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "framing is not the plugin's to remove"
    );
    // Headers gangway adds itself are set before header_filter, as in Kong: removable.
    assert_eq!(r.header("via"), None);
    assert_eq!(r.header("x-kong-upstream-latency"), None);
    assert!(r.header("x-kong-proxy-latency").is_some());
    let other = gw.get("/rj");
    assert!(other.header("via").is_some());
    assert!(other.header("x-kong-upstream-latency").is_some());
}

#[test]
fn response_transformer_rewrites_json_bodies_with_a_new_length() {
    let (_up, gw) = start();
    let check = |r: &crate::harness::Response| {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.chunked, "framed with Content-Length");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let body = r.json();
        assert_eq!(body.get("conn_id"), None);
        assert_eq!(body.get("request_on_conn"), None);
        assert_eq!(body.get("target"), None);
        assert_eq!(body["path"], "/");
        assert_eq!(body["method"], "changed");
        assert_eq!(body["p1"], "v1");
        assert_eq!(body["n"], 5);
        let headers = body["headers"].as_array().expect("headers array");
        assert_eq!(headers.last().and_then(|v| v.as_str()), Some("extra"));
    };
    check(&gw.get("/rj"));
    // A chunked upstream body is decoded, rewritten and sent with a length, and both
    // connections stay usable.
    let mut conn = Conn::open(gw.proxy);
    for _ in 0..3 {
        conn.write(b"GET /rj HTTP/1.1\r\nHost: x\r\nx-echo-chunked: 1\r\n\r\n")
            .expect("write");
        check(&conn.read(false).expect("response"));
    }
    // An upstream body ended by closing the connection is buffered too.
    let r = request(gw.proxy, "GET", "/rj", &[("x-echo-close", "1")], b"").expect("request");
    check(&r);
}

#[test]
fn response_transformer_only_rewrites_json_media_types() {
    let (_up, gw) = start();
    let body = r#"{"conn_id":1,"method":"m"}"#;
    let r = request(
        gw.proxy,
        "GET",
        "/rj",
        &[("x-echo-content-type", "text/plain"), ("x-echo-body", body)],
        b"",
    )
    .expect("request");
    assert_eq!(r.text(), body);
    let r = request(
        gw.proxy,
        "GET",
        "/rj",
        &[
            (
                "x-echo-content-type",
                "application/problem+json; charset=utf-8",
            ),
            ("x-echo-body", body),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(
        r.json(),
        serde_json::json!({"method": "changed", "p1": "v1", "n": 5, "headers": ["extra"]})
    );
    // Not JSON after all: sent unchanged, with its own length.
    let r = request(gw.proxy, "GET", "/rj", &[("x-echo-body", "not json")], b"").expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "not json");
    assert_eq!(r.header("content-length"), Some("8"));
    // HEAD has no body to rewrite.
    let r = send_raw(
        gw.proxy,
        b"HEAD /rj HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[test]
fn response_transformer_rewrites_a_large_body() {
    // 05-big_response_body_spec: a 1 MiB field in the echoed request.
    let (_up, gw) = start();
    let big = format!(r#"{{"big_field":"{}"}}"#, "*".repeat(1024 * 1024));
    let r = request(
        gw.proxy,
        "POST",
        "/rj",
        &[("content-type", "application/json")],
        big.as_bytes(),
    )
    .expect("request");
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["p1"], "v1");
    assert_eq!(body["body"].as_str().map(str::len), Some(big.len()));
}
