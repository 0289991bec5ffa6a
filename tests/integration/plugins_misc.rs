//! correlation-id, request-size-limiting and ip-restriction end to end (assertions ported
//! from Kong's spec/03-plugins/11-correlation-id, 12-request-size-limiting and
//! 17-ip-restriction).

use std::io::Write;

use crate::harness::client::Conn;
use crate::harness::gangway_command;
use crate::harness::{
    Gangway, Options, Response, TempDir, Upstream, echo_header, free_port, request, send_raw,
};

const ROUTES: &str = r#"    routes:
      - name: corr1
        paths: ["/corr1"]
        plugins:
          - name: correlation-id
      - name: corr2
        paths: ["/corr2"]
        plugins:
          - name: correlation-id
            config:
              header_name: Foo-Bar-Id
      - name: corr3
        paths: ["/corr3"]
        plugins:
          - name: correlation-id
            config:
              generator: uuid
              echo_downstream: true
      - name: tracker
        paths: ["/corr-tracker"]
        plugins:
          - name: correlation-id
            config:
              generator: tracker
      - name: corr5
        paths: ["/corr5"]
        plugins:
          - name: correlation-id
            config:
              generator: uuid
              echo_downstream: true
          - name: request-termination
            config:
              status_code: 418
              message: "I'm a teapot"
      - name: limit
        paths: ["/limit"]
        plugins:
          - name: request-size-limiting
            config:
              allowed_payload_size: 2
      - name: required
        paths: ["/required"]
        plugins:
          - name: request-size-limiting
            config:
              allowed_payload_size: 2
              require_content_length: true
      - name: limit_kilobytes
        paths: ["/limit_kilobytes"]
        plugins:
          - name: request-size-limiting
            config:
              allowed_payload_size: 2
              size_unit: kilobytes
      - name: limit_bytes
        paths: ["/limit_bytes"]
        plugins:
          - name: request-size-limiting
            config:
              allowed_payload_size: 2
              size_unit: bytes
      - name: ip1
        paths: ["/ip1"]
        plugins:
          - name: ip-restriction
            config:
              deny: [127.0.0.1, 127.0.0.2]
      - name: ip2
        paths: ["/ip2"]
        plugins:
          - name: ip-restriction
            config:
              deny: [127.0.0.2]
      - name: ip3
        paths: ["/ip3"]
        plugins:
          - name: ip-restriction
            config:
              allow: [127.0.0.2]
      - name: ip4
        paths: ["/ip4"]
        plugins:
          - name: ip-restriction
            config:
              allow: [127.0.0.1]
      - name: ip5
        paths: ["/ip5"]
        plugins:
          - name: ip-restriction
            config:
              deny: [127.0.0.0/24]
      - name: ip6
        paths: ["/ip6"]
        plugins:
          - name: ip-restriction
            config:
              allow: [127.0.0.0/24]
              deny: [127.0.0.1]
      - name: ip7
        paths: ["/ip7"]
        plugins:
          - name: ip-restriction
            config:
              deny: [127.0.0.0/24]
              status: 401
              message: Forbidden
      - name: ip8
        paths: ["/ip8"]
        plugins:
          - name: ip-restriction
            config:
              allow: [0.0.0.0/0]
      - name: ip9
        paths: ["/ip9"]
        plugins:
          - name: ip-restriction
            config:
              deny: ["::1", "::2"]
      - name: ip10
        paths: ["/ip10"]
        plugins:
          - name: ip-restriction
            config:
              deny: ["fe80::/8"]
      - name: ip11
        paths: ["/ip11"]
        plugins:
          - name: ip-restriction
            config:
              allow: ["::1/128"]
              deny: ["::1"]
  - name: dead
    url: http://127.0.0.1:DEAD_PORT
    routes:
      - name: corr-timeout
        paths: ["/corr-timeout"]
        plugins:
          - name: correlation-id
            config:
              generator: uuid
              echo_downstream: true
"#;

fn start() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let routes = ROUTES.replace("DEAD_PORT", &free_port().to_string());
    let config = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n{routes}",
        up.addr
    );
    // X-Real-IP from the test client is believed, as in Kong's specs.
    let gw = Gangway::start_with(Options::new(config).env("GANGWAY_TRUSTED_IPS", "0.0.0.0/0,::/0"));
    (up, gw)
}

fn get(gw: &Gangway, path: &str, headers: &[(&str, &str)]) -> Response {
    request(gw.proxy, "GET", path, headers, b"").expect("request")
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit() && !b.is_ascii_uppercase(),
        })
}

// ---- correlation-id ----

#[test]
fn uuid_counter_counts_requests_of_the_process() {
    let (_up, gw) = start();
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = gw.get("/corr1");
            assert_eq!(r.status, 200);
            echo_header(&r.json(), "kong-request-id").expect("id for the upstream")
        })
        .collect();
    let (u1, n1) = ids[0].split_once('#').expect("uuid#counter");
    let (u2, n2) = ids[1].split_once('#').expect("uuid#counter");
    assert!(is_uuid(u1), "{}", ids[0]);
    assert_eq!(u1, u2);
    assert_eq!((n1, n2), ("1", "2"));
}

#[test]
fn uuid_and_tracker_generators() {
    let (_up, gw) = start();
    let a = echo_header(&gw.get("/corr3").json(), "kong-request-id").expect("id");
    let b = echo_header(&gw.get("/corr3").json(), "kong-request-id").expect("id");
    assert!(is_uuid(&a) && is_uuid(&b));
    assert_ne!(a, b);
    let t1 = echo_header(&gw.get("/corr-tracker").json(), "kong-request-id").expect("id");
    let t2 = echo_header(&gw.get("/corr-tracker").json(), "kong-request-id").expect("id");
    for t in [&t1, &t2] {
        // %d+.%d+.%d+.%d+-port-pid-connection-requests-seconds.millis
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts.len(), 6, "{t}");
        assert_eq!(parts[0].split('.').count(), 4, "{t}");
        assert_eq!(parts[1], gw.proxy.port().to_string());
        assert!(parts[2..5].iter().all(|p| p.parse::<u64>().is_ok()), "{t}");
        let (secs, millis) = parts[5].split_once('.').expect("time");
        assert_eq!((secs.len(), millis.len()), (10, 3), "{t}");
    }
    assert_ne!(t1, t2);
}

#[test]
fn echo_downstream_and_custom_header_name() {
    let (_up, gw) = start();
    let r = gw.get("/corr3");
    let upstream_id = echo_header(&r.json(), "kong-request-id").expect("id");
    assert_eq!(r.header("kong-request-id"), Some(upstream_id.as_str()));

    let r = gw.get("/corr2");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("kong-request-id"), None, "not echoed unless asked");
    let id = echo_header(&r.json(), "foo-bar-id").expect("custom header");
    assert!(is_uuid(id.split('#').next().unwrap_or_default()), "{id}");
}

#[test]
fn an_existing_id_is_kept_unless_empty() {
    let (_up, gw) = start();
    let r = get(&gw, "/corr2", &[("Foo-Bar-Id", "foobar")]);
    assert_eq!(
        echo_header(&r.json(), "foo-bar-id").as_deref(),
        Some("foobar")
    );
    for blank in ["", " "] {
        let r = get(&gw, "/corr2", &[("Foo-Bar-Id", blank)]);
        let id = echo_header(&r.json(), "foo-bar-id").expect("id");
        assert!(id.contains('#'), "a fresh id replaces {blank:?}: {id}");
    }
}

#[test]
fn echo_downstream_on_plugin_answers_and_gateway_errors() {
    let (_up, gw) = start();
    let r = gw.get("/corr5");
    assert_eq!(r.status, 418);
    assert!(
        r.header("kong-request-id").is_some_and(is_uuid),
        "{:?}",
        r.headers
    );
    let r = get(&gw, "/corr5", &[("kong-request-id", "my very personal id")]);
    assert_eq!(r.status, 418);
    assert_eq!(r.header("kong-request-id"), Some("my very personal id"));
    let r = gw.get("/corr-timeout");
    assert_eq!(r.status, 502);
    assert!(
        r.header("kong-request-id").is_some_and(is_uuid),
        "{:?}",
        r.headers
    );
}

/// No route matched: a global instance's access never ran, so, as in Kong, its
/// header_filter echoes the client's id, or makes one.
#[test]
fn echo_downstream_on_an_unrouted_404() {
    let up = Upstream::start();
    let config = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n    routes:\n      - paths: [\"/routed\"]\nplugins:\n  - name: correlation-id\n    config: {{generator: uuid, echo_downstream: true}}\n",
        up.addr
    );
    let gw = Gangway::start(&config);
    let r = get(&gw, "/nowhere", &[("Kong-Request-ID", "client-made")]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("kong-request-id"), Some("client-made"));
    let r = gw.get("/nowhere");
    assert_eq!(r.status, 404);
    assert!(
        r.header("kong-request-id").is_some_and(is_uuid),
        "{:?}",
        r.headers
    );
    let r = get(&gw, "/routed", &[("Kong-Request-ID", "client-made")]);
    assert_eq!(r.header("kong-request-id"), Some("client-made"));
}

// ---- request-size-limiting ----

const KB: usize = 1024;
const MB: usize = 1024 * 1024;

fn post(gw: &Gangway, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    request(gw.proxy, "POST", path, headers, body).expect("request")
}

fn chunked(gw: &Gangway, path: &str, extra: &str, len: usize) -> Response {
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n{extra}Connection: close\r\n\r\n{len:x}\r\n"
    )
    .into_bytes();
    raw.resize(raw.len() + len, b'a');
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    send_raw(gw.proxy, &raw).expect("request")
}

fn assert_too_large(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["message"], "Request size limit exceeded");
}

#[test]
fn content_length_is_checked_without_reading_the_body() {
    let (_up, gw) = start();
    let body = vec![b'a'; 2 * MB];
    let r = post(&gw, "/limit", &[], &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 2 * MB);
    let r = post(&gw, "/limit", &[("Expect", "100-continue")], &body);
    assert_eq!(r.status, 200);
    // Over the limit: the answer comes from the head alone.
    let too_big = (2 * MB + 1).to_string();
    let head = |expect: &str| {
        format!(
            "POST /limit HTTP/1.1\r\nHost: localhost\r\nContent-Length: {too_big}\r\n{expect}\r\n"
        )
    };
    assert_too_large(
        &send_raw(gw.proxy, head("").as_bytes()).expect("request"),
        413,
    );
    let r = send_raw(gw.proxy, head("Expect: 100-continue\r\n").as_bytes()).expect("request");
    assert_too_large(&r, 417);
    for (path, unit) in [("/limit_kilobytes", KB), ("/limit_bytes", 1)] {
        assert_too_large(&post(&gw, path, &[], &vec![b'a'; 2 * unit + 1]), 413);
        assert_eq!(post(&gw, path, &[], &vec![b'a'; 2 * unit - 1]).status, 200);
        assert_eq!(post(&gw, path, &[], &vec![b'a'; 2 * unit]).status, 200);
    }
}

#[test]
fn chunked_bodies_are_measured() {
    let (_up, gw) = start();
    let r = chunked(&gw, "/limit", "", 2 * MB);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 2 * MB);
    let r = chunked(&gw, "/limit", "Expect: 100-continue\r\n", 2 * MB);
    assert_eq!(r.status, 200);
    let r = chunked(&gw, "/limit_kilobytes", "", 2 * KB);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 2 * KB);
    assert_too_large(&chunked(&gw, "/limit_kilobytes", "", 2 * KB + 1), 413);
    assert_too_large(
        &chunked(
            &gw,
            "/limit_kilobytes",
            "Expect: 100-continue\r\n",
            2 * KB + 1,
        ),
        417,
    );
    assert_too_large(&chunked(&gw, "/limit_bytes", "", 3), 413);
    assert_eq!(chunked(&gw, "/limit_bytes", "", 2).status, 200);
}

#[test]
fn an_oversized_chunked_body_is_refused_before_it_ends() {
    let (_up, gw) = start();
    let mut conn = Conn::open(gw.proxy);
    let head =
        "POST /limit_bytes HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    conn.write(head.as_bytes()).expect("head");
    // More than the limit, and no last chunk: the gateway must not wait for the end.
    conn.write(b"10\r\n0123456789abcdef\r\n").expect("chunk");
    let _ = conn.stream().flush();
    let r = conn.read(false).expect("response");
    assert_too_large(&r, 413);
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn content_length_required() {
    let (_up, gw) = start();
    let r = send_raw(
        gw.proxy,
        b"GET /required HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .expect("request");
    assert_eq!(r.status, 411);
    assert_eq!(
        r.json()["message"],
        "A valid Content-Length header is required"
    );
    assert_eq!(post(&gw, "/required", &[], b"ab").status, 200);
    // A chunked body is measured instead (the limit is 2 megabytes).
    assert_eq!(chunked(&gw, "/required", "", 3).status, 200);
}

// ---- ip-restriction ----

#[test]
fn deny_and_allow_lists() {
    let (_up, gw) = start();
    let r = gw.get("/ip1");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "IP address not allowed: 127.0.0.1");
    let r = gw.get("/ip7");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Forbidden");
    assert_eq!(gw.get("/ip2").status, 200, "not denied");
    assert_eq!(gw.get("/ip5").status, 403, "CIDR");
    assert_eq!(gw.get("/ip3").status, 403, "not allowed");
    assert_eq!(gw.get("/ip4").status, 200, "allowed");
    assert_eq!(gw.get("/ip6").status, 403, "deny wins over an allowed CIDR");
    assert_eq!(gw.get("/ip8").status, 200, "0.0.0.0/0");
}

#[test]
fn the_real_client_ip_is_checked() {
    let (_up, gw) = start();
    assert_eq!(get(&gw, "/ip4", &[("X-Real-IP", "127.0.0.1")]).status, 200);
    let r = get(&gw, "/ip4", &[("X-Real-IP", "127.0.0.9")]);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "IP address not allowed: 127.0.0.9");
    assert_eq!(get(&gw, "/ip3", &[("X-Real-IP", "127.0.0.2")]).status, 200);
    let r = get(&gw, "/ip9", &[("X-Real-IP", "::1")]);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "IP address not allowed: ::1");
    assert_eq!(get(&gw, "/ip9", &[("X-Real-IP", "::3")]).status, 200);
    assert_eq!(get(&gw, "/ip10", &[("X-Real-IP", "fe80::1")]).status, 403);
    assert_eq!(get(&gw, "/ip11", &[("X-Real-IP", "::1")]).status, 403);
    assert_eq!(
        get(&gw, "/ip8", &[("X-Real-IP", "::1")]).status,
        403,
        "v4 list, v6 client"
    );
}

#[test]
fn invalid_lists_are_config_errors() {
    let dir = TempDir::new("ip-restriction-check");
    let bad = dir.path("bad.yml");
    std::fs::write(
        &bad,
        "_format_version: \"3.0\"\nplugins:\n  - name: ip-restriction\n    config:\n      allow: [127.0.0.1/33]\n      deny: [hello]\n",
    )
    .expect("write");
    let out = gangway_command()
        .arg("check")
        .arg(&bad)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugins[0].config.allow[0]: invalid ip or cidr range: '127.0.0.1/33'")
            && err.contains("plugins[0].config.deny[0]: invalid ip or cidr range: 'hello'"),
        "{err}"
    );
}

#[test]
fn a_pipelined_request_follows_a_measured_chunked_body() {
    let (_up, gw) = start();
    let mut conn = Conn::open(gw.proxy);
    let two = "GET /limit_bytes HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nGET /limit_bytes HTTP/1.1\r\nHost: localhost\r\n\r\n";
    conn.write(two.as_bytes()).expect("write");
    let first = conn.read(false).expect("first");
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["body"], "ab");
    let second = conn.read(false).expect("second");
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["method"], "GET");
}
