//! Kong behaviours pinned against Kong 3.x's own specs (issue 15): each test names the spec
//! it follows and failed before the fix.

use serde_json::Value;

use crate::harness::{Gangway, Options, TempDir, Upstream, request};

fn echo(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("echo body")
}

/// The values the echo upstream received for request header `name`.
fn upstream_header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|h| h[1].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// spec/02-integration/05-proxy/02-router_spec.lua, "handles not enabled services".
#[test]
fn routes_of_a_disabled_service_are_left_out_of_the_router() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: enabled-service
    url: http://{up}
    routes:
      - name: enabled
        paths: ["/enabled-service"]
        strip_path: false
  - name: disabled-service
    url: http://{up}
    enabled: false
    routes:
      - name: only-disabled
        paths: ["/disabled-service1"]
      - name: longer-disabled
        paths: ["/enabled-service/disabled"]
"#,
        up = up.addr
    ));
    let r = gw.get("/disabled-service1");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains("no Route matched with those values"),
        "{}",
        r.text()
    );
    // The longer path leads to the disabled service: the enabled route's prefix wins.
    let r = gw.get("/enabled-service/disabled");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(echo(&r.body)["target"], "/enabled-service/disabled");
}

fn key_auth_gateway(up: &Upstream) -> Gangway {
    Gangway::start(&format!(
        r#"_format_version: "3.0"
consumers:
  - username: bob
    keyauth_credentials:
      - key: kong
  - username: no-groups
services:
  - name: echo
    url: http://{up}
    routes:
      - name: body
        paths: ["/body"]
        strip_path: false
        plugins:
          - name: key-auth
            config:
              key_in_body: true
              hide_credentials: true
      - name: query
        paths: ["/query"]
        strip_path: false
        plugins:
          - name: key-auth
            config:
              hide_credentials: true
      - name: underscores
        paths: ["/underscores"]
        plugins:
          - name: key-auth
            config:
              key_names: [api_key]
      - name: anonymous
        paths: ["/anonymous"]
        plugins:
          - name: key-auth
            config:
              anonymous: no-groups
          - name: acl
            config:
              deny: [blocked]
"#,
        up = up.addr
    ))
}

/// spec/03-plugins/09-key-auth/02-access_spec.lua, config.hide_credentials with
/// multipart/form-data bodies.
#[test]
fn key_auth_reads_and_hides_a_key_in_a_multipart_body() {
    let up = Upstream::start();
    let gw = key_auth_gateway(&up);
    let content_type = "multipart/form-data; boundary=kong-boundary";
    let keep_a = "--kong-boundary\r\nContent-Disposition: form-data; name=\"foo\"\r\n\r\nbar\r\n";
    let key = "--kong-boundary\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nkong\r\n";
    let keep_b = "--kong-boundary\r\nContent-Disposition: form-data; name=\"note\"; filename=\"n.txt\"\r\nContent-Type: text/plain\r\n\r\nline one\r\n\r\nline two\r\n";
    let end = "--kong-boundary--\r\n";
    let body = format!("{keep_a}{key}{keep_b}{end}");
    let r = request(
        gw.proxy,
        "POST",
        "/body",
        &[("content-type", content_type)],
        body.as_bytes(),
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = echo(&r.body);
    assert_eq!(
        sent["body"].as_str(),
        Some(format!("{keep_a}{keep_b}{end}").as_str()),
        "the key's part is cut, every other byte kept"
    );
    assert_eq!(upstream_header(&sent, "content-type"), [content_type]);
    // Without a key part: Kong's 401.
    let r = request(
        gw.proxy,
        "POST",
        "/body",
        &[("content-type", content_type)],
        format!("{keep_a}{end}").as_bytes(),
    )
    .expect("request");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "No API key found in request");
}

/// Same spec: "removes apikey and preserves order of query parameters" and its
/// encoded-query variant.
#[test]
fn key_auth_removes_the_key_and_keeps_the_query_order() {
    let up = Upstream::start();
    let gw = key_auth_gateway(&up);
    for (path, upstream) in [
        (
            "/query?c=value1&b=value2&apikey=kong&a=value3",
            "/query?c=value1&b=value2&a=value3",
        ),
        (
            "/query?c=valu%651&b=value2&api%6B%65%79=kong&a=valu%653",
            "/query?c=value1&b=value2&a=value3",
        ),
    ] {
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(echo(&r.body)["target"], upstream, "{path}");
    }
    // A key in a header leaves the query exactly as sent.
    let r = request(
        gw.proxy,
        "GET",
        "/query?z=1&a=%2F",
        &[("apikey", "kong")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(echo(&r.body)["target"], "/query?z=1&a=%2F");
}

/// Same spec: "underscores or hyphens in key headers".
#[test]
fn key_auth_names_with_underscores_match_hyphenated_headers() {
    let up = Upstream::start();
    let gw = key_auth_gateway(&up);
    for header in ["api_key", "api-key"] {
        let ok =
            request(gw.proxy, "GET", "/underscores", &[(header, "kong")], b"").expect("request");
        assert_eq!(ok.status, 200, "{header}: {}", ok.text());
        let bad =
            request(gw.proxy, "GET", "/underscores", &[(header, "123")], b"").expect("request");
        assert_eq!(bad.status, 401, "{header}");
        assert_eq!(bad.json()["message"], "Unauthorized");
        assert_eq!(bad.header("www-authenticate"), Some("Key"));
    }
}

/// spec/03-plugins/18-acl/02-access_spec.lua, "anonymous > with authentication without
/// groups > returns 200 with deny groups".
#[test]
fn acl_sends_an_empty_group_list_for_a_consumer_without_groups() {
    let up = Upstream::start();
    let gw = key_auth_gateway(&up);
    let r = gw.get("/anonymous");
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = echo(&r.body);
    assert_eq!(upstream_header(&sent, "x-consumer-username"), ["no-groups"]);
    assert_eq!(upstream_header(&sent, "x-consumer-groups"), [""]);
}

/// spec/03-plugins/14-request-termination/02-access_spec.lua, "status code and message":
/// the body is `{"message": ...}` and nothing else (Kong's `kong.response.exit`, not its
/// error page), JSON whatever the client accepts. It used to carry a request_id and turn
/// into HTML for a browser.
#[test]
fn request_termination_answers_its_message_as_kong_response_exit_does() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://{up}
    routes:
      - paths: ["/default"]
        plugins:
          - name: request-termination
      - paths: ["/not-found"]
        plugins:
          - name: request-termination
            config: {{status_code: 404}}
      - paths: ["/custom"]
        plugins:
          - name: request-termination
            config: {{status_code: 402, message: "Invalid"}}
"#,
        up = up.addr
    ));
    for (path, status, body) in [
        ("/default", 503, r#"{"message":"Service unavailable"}"#),
        ("/not-found", 404, r#"{"message":"Not found"}"#),
        ("/custom", 402, r#"{"message":"Invalid"}"#),
    ] {
        for accept in ["application/json", "text/html"] {
            let r = request(gw.proxy, "GET", path, &[("accept", accept)], b"").expect("request");
            assert_eq!(r.status, status, "{path}");
            assert_eq!(r.text(), body, "{path}, accept {accept}");
            assert_eq!(
                r.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{path}"
            );
        }
    }
}

/// spec/03-plugins/14-request-termination/02-access_spec.lua: "returns 204 without content
/// length header" and "echos a request if no trigger is set".
#[test]
fn request_termination_sends_a_bare_204_and_echoes_the_raw_body_and_captures() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://{up}
    routes:
      - name: no-content
        paths: ["/no-content"]
        plugins:
          - name: request-termination
            config:
              status_code: 204
      - name: not-modified
        paths: ["/not-modified"]
        plugins:
          - name: request-termination
            config:
              status_code: 304
      - name: echo
        paths: ["~/(?<parameter>[^#?/]+)/200"]
        strip_path: false
        plugins:
          - name: request-termination
            config:
              echo: true
              status_code: 404
"#,
        up = up.addr
    ));
    let raw_get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(gw.proxy).expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    // A 304 has no body either (nginx's header_only): one sent would be read as the next
    // response on a kept connection.
    for (path, status) in [("/no-content", "204"), ("/not-modified", "304")] {
        let raw = raw_get(path);
        assert!(raw.starts_with(&format!("HTTP/1.1 {status} ")), "{raw}");
        let lower = raw.to_ascii_lowercase();
        assert!(!lower.contains("content-length"), "{raw}");
        assert!(!lower.contains("content-type"), "{raw}");
        assert!(raw.ends_with("\r\n\r\n"), "no body: {raw}");
    }

    let r = request(
        gw.proxy,
        "GET",
        "/status/200?hello=there",
        &[],
        b"cool body",
    )
    .expect("request");
    assert_eq!(r.status, 404);
    let json = r.json();
    let req = &json["request"];
    assert_eq!(req["raw_body"], "cool body");
    assert!(req.get("body").is_none(), "no parsed body for text: {req}");
    assert_eq!(req["query"]["hello"], "there");
    assert_eq!(
        req["uri_captures"],
        serde_json::json!({"named": {"parameter": "status"}, "unnamed": ["status"]})
    );
}

/// A plugin that reads the body whole gets it in memory, up to buffered_body_max_size:
/// beyond that, 413 (Kong writes long bodies to a file; unbounded, one request could take
/// all the memory there is, client_max_body_size being unlimited by default).
#[test]
fn a_body_read_for_a_plugin_is_bounded_in_memory() {
    let up = Upstream::start();
    let config = format!(
        r#"_format_version: "3.0"
consumers:
  - username: bob
    keyauth_credentials:
      - key: kong
services:
  - name: echo
    url: http://{up}
    routes:
      - name: body
        paths: ["/body"]
        plugins:
          - name: key-auth
            config:
              key_in_body: true
"#,
        up = up.addr
    );
    let gw = Gangway::start_with(Options::new(config).env("GANGWAY_BUFFERED_BODY_MAX_SIZE", "1k"));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let small = format!("apikey=kong&pad={}", "x".repeat(900));
    let r = request(gw.proxy, "POST", "/body", &form, small.as_bytes()).expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let large = format!("apikey=kong&pad={}", "x".repeat(2000));
    let r = request(gw.proxy, "POST", "/body", &form, large.as_bytes()).expect("request");
    assert_eq!(r.status, 413, "{}", r.text());
    // Chunked, so no length announces it: refused once 1k has been read.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.proxy).expect("connect");
    s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("head");
    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
    for _ in 0..4 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
}

/// A multipart part with no header lines used to panic the body parser, which aborts the
/// release build: one request took the gateway down.
#[test]
fn a_multipart_part_without_headers_does_not_take_the_gateway_down() {
    let up = Upstream::start();
    let gw = key_auth_gateway(&up);
    let r = request(
        gw.proxy,
        "POST",
        "/body",
        &[
            ("content-type", "multipart/form-data; boundary=X"),
            ("apikey", "kong"),
        ],
        b"--X\r\n\r\nv\r\n--X--\r\n",
    )
    .expect("an answer, not a closed connection");
    assert_eq!(r.status, 200, "{}", r.text());
    let after = request(gw.proxy, "GET", "/query?apikey=kong", &[], b"").expect("still up");
    assert_eq!(after.status, 200);
}

/// A consumer's username (or custom_id, or an ACL group) with CR/LF in it goes upstream
/// escaped, as OpenResty escapes header values: it used to end the header line and add
/// headers of its own choosing (here one naming another consumer).
#[test]
fn a_consumer_name_cannot_inject_headers_upstream() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        r#"_format_version: "3.0"
consumers:
  - username: "eve\r\nX-Consumer-ID: someone-else"
    custom_id: "c\nX-Injected: 1"
    keyauth_credentials:
      - key: eves-key
services:
  - name: echo
    url: http://{up}
    routes:
      - paths: ["/"]
        plugins:
          - name: key-auth
"#,
        up = up.addr
    ));
    let r = request(gw.proxy, "GET", "/x?apikey=eves-key", &[], b"").expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        crate::harness::echo_header(&echo, "x-consumer-username").as_deref(),
        Some("eve%0D%0AX-Consumer-ID: someone-else")
    );
    assert_eq!(
        crate::harness::echo_header(&echo, "x-consumer-custom-id").as_deref(),
        Some("c%0AX-Injected: 1")
    );
    assert!(
        crate::harness::echo_header(&echo, "x-injected").is_none(),
        "{echo}"
    );
    let ids: Vec<&str> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("x-consumer-id"))
        })
        .filter_map(|h| h[1].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one X-Consumer-ID, the real one: {ids:?}");
    assert_ne!(ids[0], "someone-else");
}

/// key-auth with key_in_body reads the body only when the key is in neither the headers nor
/// the query, and a body it cannot parse is as good as an empty one (Kong's get_body): a
/// valid key in a header used to get 400 'Cannot process request body' with such a body.
#[test]
fn key_auth_with_a_key_in_a_header_ignores_a_body_it_cannot_parse() {
    let up = Upstream::start();
    let gw = key_auth_gateway(&up);
    for (content_type, body) in [
        ("application/json", &b"{not json"[..]),
        ("application/json", b"[1, 2]"),
        ("multipart/form-data", b"no boundary"),
    ] {
        let r = request(
            gw.proxy,
            "POST",
            "/body",
            &[("content-type", content_type), ("apikey", "kong")],
            body,
        )
        .expect("request");
        assert_eq!(r.status, 200, "{content_type} {:?}: {}", body, r.text());
        let sent = echo(&r.body);
        assert_eq!(
            sent["body"].as_str().map(str::as_bytes),
            Some(body),
            "body kept"
        );
        // With no key anywhere, such a body is an empty one: 401, not 400.
        let r = request(
            gw.proxy,
            "POST",
            "/body",
            &[("content-type", content_type)],
            body,
        )
        .expect("request");
        assert_eq!(r.status, 401, "{}", r.text());
    }
}

/// Plugins read the query as `kong.request.get_query()` gives it: flags are `true`, repeats
/// are arrays, empty names are left out, and only the first `lua_max_uri_args` pieces count
/// (empty ones too). The upstream still gets the whole query unless a plugin rewrites it.
#[test]
fn plugins_read_at_most_lua_max_uri_args_query_arguments_as_kong_does() {
    let up = Upstream::start();
    let config = format!(
        r#"_format_version: "3.0"
consumers:
  - username: bob
    keyauth_credentials:
      - key: kong
services:
  - name: echo
    url: http://{up}
    routes:
      - name: echo
        paths: ["/echo"]
        plugins:
          - name: request-termination
            config:
              echo: true
              status_code: 200
      - name: key
        paths: ["/key"]
        plugins:
          - name: key-auth
      - name: rewrite
        paths: ["/rewrite"]
        plugins:
          - name: request-transformer
            config:
              add:
                querystring: ["added:yes"]
"#,
        up = up.addr
    );
    let gw = Gangway::start_with(Options::new(config).env("KONG_LUA_MAX_URI_ARGS", "5"));
    let get = |path: &str| {
        request(
            gw.proxy,
            "GET",
            path,
            &[("x-twice", "1"), ("x-twice", "2")],
            b"",
        )
        .expect("request")
    };

    let echo = get("/echo?flag&a=1&a=2&=x&b=%20y+z&past=limit").json();
    assert_eq!(
        echo["request"]["query"],
        serde_json::json!({"flag": true, "a": ["1", "2"], "b": " y z"}),
        "{echo}"
    );
    assert_eq!(
        echo["request"]["headers"]["x-twice"],
        serde_json::json!(["1", "2"])
    );

    // key-auth looks only among the arguments it can read.
    assert_eq!(get("/key?a&b&c&d&e&apikey=kong").status, 401);
    let found = get("/key?a&b&&d&apikey=kong&past=limit");
    assert_eq!(found.status, 200, "{}", found.text());
    assert_eq!(found.json()["target"], "/?a&b&&d&apikey=kong&past=limit");

    // set_query writes back what get_query read: the sixth piece and the empty name are gone.
    let rewritten = get("/rewrite?z=1&=e&y&x=%41&w=2&past=limit");
    assert_eq!(rewritten.json()["target"], "/?added=yes&w=2&x=A&y&z=1");
}

#[test]
fn plugins_and_the_router_read_at_most_kongs_lua_max_headers_and_post_args() {
    let up = Upstream::start();
    let dir = TempDir::new("lua-max");
    let log = dir.path("respond.log");
    let config = format!(
        r#"_format_version: "3.0"
consumers:
  - username: bob
    keyauth_credentials:
      - key: kong
services:
  - name: echo
    url: http://{up}
    routes:
      - name: echo
        paths: ["/echo"]
        plugins:
          - name: request-termination
            config:
              echo: true
              status_code: 200
      - name: key
        paths: ["/key"]
        plugins:
          - name: key-auth
      - name: body-key
        paths: ["/body-key"]
        plugins:
          - name: key-auth
            config:
              key_in_body: true
      - name: pick
        paths: ["/pick"]
        headers:
          x-pick: ["yes"]
      - name: replace
        paths: ["/replace"]
        plugins:
          - name: request-transformer
            config:
              replace:
                headers: ["x-a:new", "x-d:new"]
      - name: respond
        paths: ["/respond"]
        plugins:
          - name: response-transformer
            config:
              replace:
                headers: ["x-first:new", "x-second:new"]
          - name: file-log
            config:
              path: {log}
"#,
        up = up.addr,
        log = log.display()
    );
    let gw = Gangway::start_with(
        Options::new(config)
            .env("KONG_LUA_MAX_REQ_HEADERS", "4")
            .env("KONG_LUA_MAX_RESP_HEADERS", "3")
            .env("KONG_LUA_MAX_POST_ARGS", "2"),
    );
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        request(gw.proxy, method, path, headers, body).expect("request")
    };
    let four = [("x-a", "1"), ("x-b", "2"), ("x-c", "3"), ("x-d", "4")];

    // The table holds Host and the next three; Connection and x-d are past it.
    let echo = send("GET", "/echo", &four, b"").json();
    let names: Vec<&String> = echo["request"]["headers"]
        .as_object()
        .expect("headers")
        .keys()
        .collect();
    assert_eq!(names, ["host", "x-a", "x-b", "x-c"], "{echo}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let posted = send("POST", "/echo", &form, b"a=1&b=2&c=3").json();
    assert_eq!(
        posted["request"]["body"],
        serde_json::json!({"a": "1", "b": "2"}),
        "{posted}"
    );
    assert_eq!(posted["request"]["raw_body"], "a=1&b=2&c=3");

    // key-auth finds its key only among the headers it can read; the upstream gets all.
    let fourth = send(
        "GET",
        "/key",
        &[("x-a", "1"), ("x-b", "2"), ("apikey", "kong")],
        b"",
    );
    assert_eq!(fourth.status, 200, "{}", fourth.text());
    assert_eq!(upstream_header(&fourth.json(), "x-b"), ["2"]);
    let fifth = &[("x-a", "1"), ("x-b", "2"), ("x-c", "3"), ("apikey", "kong")];
    assert_eq!(send("GET", "/key", fifth, b"").status, 401);

    // And only among the form arguments it can read.
    let late_key = send("POST", "/body-key", &form, b"a=1&b=2&apikey=kong");
    assert_eq!(late_key.status, 401, "{}", late_key.text());
    assert_eq!(
        send("POST", "/body-key", &form, b"apikey=kong&a=1").status,
        200
    );

    // So does the router when a route matches on a header.
    assert_eq!(send("GET", "/pick", &[("x-pick", "yes")], b"").status, 200);
    let late = &[("x-a", "1"), ("x-b", "2"), ("x-c", "3"), ("x-pick", "yes")];
    assert_eq!(send("GET", "/pick", late, b"").status, 404);
    let warned = "consider increasing the 'lua_max_req_headers' configuration value";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gw.log().contains(warned) {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // request-transformer replaces what its table holds, and leaves x-d, past it, alone.
    let replaced = send("GET", "/replace", &four, b"").json();
    assert_eq!(upstream_header(&replaced, "x-a"), ["new"], "{replaced}");
    assert_eq!(upstream_header(&replaced, "x-d"), ["4"], "{replaced}");

    // The upstream answers Content-Type, X-Upstream, x-first, x-second, Content-Length: the
    // response table holds the first three.
    let extra = [
        ("x-echo-response-header", "x-first: old"),
        ("x-echo-response-header", "x-second: old"),
        ("x-fourth", "in"),
    ];
    let responded = send("GET", "/respond", &extra, b"");
    assert_eq!(responded.header("x-first"), Some("new"));
    assert_eq!(responded.header("x-second"), Some("old"));
    let entry = &crate::harness::json_lines(&log, 1)[0];
    let logged = entry["response"]["headers"].as_object().expect("headers");
    assert_eq!(logged.len(), 3, "{entry}");
    // Host, the two x-echo-response-header and x-fourth; Connection is past the limit.
    let request_headers = entry["request"]["headers"].as_object().expect("headers");
    let names: Vec<&String> = request_headers.keys().collect();
    assert_eq!(
        names,
        ["host", "x-echo-response-header", "x-fourth"],
        "{entry}"
    );
}
