//! Error statuses and bodies, request-smuggling shapes, limits and slow clients.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::harness::client::Conn;
use crate::harness::{
    Gangway, Options, Upstream, config_with_routes, free_port, request, send_raw,
};

const JSON: (&str, &str) = ("Accept", "application/json");

fn gw_with_echo() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n",
    ));
    (up, gw)
}

fn assert_kong_error(r: &crate::harness::Response, status: u16, message: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_eq!(body["message"], message);
    assert_eq!(
        body["request_id"].as_str().map(str::len),
        Some(32),
        "{body}"
    );
    assert_eq!(r.header("x-kong-request-id"), body["request_id"].as_str());
    assert!(
        r.header("server")
            .is_some_and(|s| s.starts_with("gangway/"))
    );
}

#[test]
fn no_route_is_a_kong_404() {
    let (_up, gw) = gw_with_echo();
    let r = request(gw.proxy, "GET", "/nowhere", &[JSON], b"").expect("req");
    assert_kong_error(&r, 404, "no Route matched with those values");
    // Without Accept, error_default_type (text/plain) applies and still names the problem.
    let r = gw.get("/nowhere");
    assert_eq!(r.status, 404);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    assert!(r.text().contains("no Route matched with those values"));
}

#[test]
fn route_without_service_is_503() {
    let gw = Gangway::start(
        "_format_version: \"3.0\"\nroutes:\n  - name: lonely\n    paths: [\"/lonely\"]\n",
    );
    let r = request(gw.proxy, "GET", "/lonely", &[JSON], b"").expect("req");
    assert_kong_error(&r, 503, "no Service found with those values");
}

#[test]
fn upstream_failures_map_to_502_and_504() {
    let (_up, gw) = gw_with_echo();
    let r = request(
        gw.proxy,
        "GET",
        "/echo",
        &[JSON, ("x-echo-garbage", "1")],
        b"",
    )
    .expect("garbage");
    assert_kong_error(
        &r,
        502,
        "An invalid response was received from the upstream server",
    );

    let dead = free_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: dead\n    url: http://127.0.0.1:{dead}\n    retries: 2\n    routes:\n      - paths: [\"/dead\"]\n\
         \x20 - name: slow\n    url: http://{}\n    read_timeout: 300\n    routes:\n      - paths: [\"/slow\"]\n",
        _up.addr
    );
    let gw = Gangway::start(&yaml);
    let r = request(gw.proxy, "GET", "/dead", &[JSON], b"").expect("dead");
    assert_kong_error(
        &r,
        502,
        "An invalid response was received from the upstream server",
    );
    let started = Instant::now();
    let r = request(
        gw.proxy,
        "GET",
        "/slow",
        &[JSON, ("x-echo-delay-ms", "2000")],
        b"",
    )
    .expect("slow");
    assert_kong_error(&r, 504, "The upstream server is timing out");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "read_timeout of 300 ms was not applied"
    );
}

#[test]
fn malformed_requests_get_400_and_close() {
    let (up, gw) = gw_with_echo();
    let shapes: [(&str, &[u8]); 7] = [
        ("garbage request line", b"NOT HTTP AT ALL\r\n\r\n"),
        ("CL and TE together", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("differing duplicate CL", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("non-numeric CL", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd"),
        ("obs-fold", b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"),
        ("space before colon", b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("no Host in HTTP/1.1", b"GET /echo HTTP/1.1\r\nUser-Agent: t\r\n\r\n"),
    ];
    for (what, raw) in shapes {
        let before = up.requests.load(std::sync::atomic::Ordering::Relaxed);
        let r = send_raw(gw.proxy, raw).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(
            up.requests.load(std::sync::atomic::Ordering::Relaxed),
            before,
            "{what} reached the upstream"
        );
    }
}

#[test]
fn invalid_chunk_size_is_rejected() {
    let (_up, gw) = gw_with_echo();
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let mut c = Conn::open(gw.proxy);
    c.write(raw).expect("write");
    match c.read(false) {
        Ok(r) => assert_eq!(r.status, 400, "{}", r.text()),
        Err(e) => panic!("expected a 400, got {e}"),
    }
}

#[test]
fn oversized_headers_get_494() {
    let (_up, gw) = gw_with_echo();
    let big = "a".repeat(64 * 1024);
    let raw = format!("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let r = send_raw(gw.proxy, raw.as_bytes()).expect("response");
    assert_eq!(r.status, 494, "{}", r.text());
}

/// nginx counts no headers, only their bytes. A request or an upstream response with
/// more than 100 short ones (many Set-Cookie lines) used to fail with 494 or 502.
#[test]
fn many_short_headers_pass_both_ways() {
    let (_up, gw) = gw_with_echo();
    let cookies: Vec<String> = (0..150).map(|i| format!("Set-Cookie: c{i}=v")).collect();
    let headers: Vec<(&str, &str)> = cookies
        .iter()
        .map(|c| ("x-echo-response-header", c.as_str()))
        .collect();
    let r = request(gw.proxy, "GET", "/echo", &headers, b"").expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers_named("set-cookie").len(), 150);
}

#[test]
fn body_over_client_max_body_size_gets_413() {
    let up = Upstream::start();
    let opts = Options::new(config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n",
    ))
    .env("GANGWAY_CLIENT_MAX_BODY_SIZE", "1k");
    let gw = Gangway::start_with(opts);
    let r = request(gw.proxy, "POST", "/echo", &[JSON], &[b'x'; 2048]).expect("big body");
    assert_eq!(r.status, 413, "{}", r.text());
    // More than the sockets' buffers hold, written whole before the answer is read: the 413
    // arrives only because the gateway reads and drops the rest before it closes (a close
    // with unread bytes resets the connection and the client's write fails).
    let r = request(gw.proxy, "POST", "/echo", &[JSON], &vec![b'x'; 32 << 20])
        .expect("a 32 MiB body is refused with an answer, not a reset");
    assert_eq!(r.status, 413, "{}", r.text());
    let r = request(gw.proxy, "POST", "/echo", &[JSON], &[b'x'; 512]).expect("small body");
    assert_eq!(r.status, 200);
}

#[test]
fn a_plugin_answer_before_a_large_body_arrives_instead_of_a_reset() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n        plugins:\n          - name: key-auth\n",
    ));
    // key-auth answers from the head; the body, more than the sockets' buffers hold, is
    // still coming. The 401 arrives only if the gateway drains it before it closes.
    let r = request(gw.proxy, "POST", "/echo", &[JSON], &vec![b'x'; 32 << 20])
        .expect("a plugin's 401 to a 32 MiB body is an answer, not a reset");
    assert_kong_error(&r, 401, "No API key found in request");
}

#[test]
fn a_connection_close_answer_frees_the_connection_without_waiting_for_the_client() {
    let (_up, gw) = gw_with_echo();
    let mut conn = Conn::open(gw.proxy);
    conn.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let r = conn.read(false).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(conn.is_closed(Duration::from_secs(2)), "the gateway's FIN");
    // The client keeps its side open. A complete request leaves nothing to drain, so the
    // gateway closes at once rather than lingering until the client's FIN (5 s).
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = request(gw.status, "GET", "/status", &[], b"")
            .expect("status")
            .json();
        if s["server"]["connections_active"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connection is still open 2 s after its answer: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conn);
}

#[test]
fn slow_clients_time_out_on_headers() {
    let up = Upstream::start();
    let opts = Options::new(config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n",
    ))
    .env("GANGWAY_CLIENT_HEADER_TIMEOUT_MS", "300");
    let gw = Gangway::start_with(opts);
    let mut c = Conn::open(gw.proxy);
    c.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .expect("partial head");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = c.stream().read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow client held the connection"
    );
    // The worker is not held: other clients are served meanwhile and after.
    assert_eq!(gw.get("/echo").status, 200);
    let _ = c.stream().write_all(b"\r\n");
}

#[test]
fn connection_limit_closes_connections_over_max_connections() {
    let up = Upstream::start();
    let opts = Options::new(config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n",
    ))
    .env("GANGWAY_MAX_CONNECTIONS", "2");
    let gw = Gangway::start_with(opts);
    // Two workers, two connections each: of eight idle connections at most four stay open.
    let mut conns: Vec<Conn> = (0..8).map(|_| Conn::open(gw.proxy)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = conns
        .iter_mut()
        .map(|c| c.is_closed(Duration::from_millis(200)))
        .filter(|&closed| closed)
        .count();
    assert!(closed >= 4, "only {closed} of 8 connections were refused");
    assert!(
        closed <= 6,
        "{closed} of 8 closed: the limit refused too many"
    );
    drop(conns);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        gw.get("/echo").status,
        200,
        "capacity comes back when clients leave"
    );
}

#[test]
fn slow_request_bodies_time_out_with_408() {
    let up = Upstream::start();
    let opts = Options::new(config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n",
    ))
    .env("GANGWAY_CLIENT_BODY_TIMEOUT_MS", "300");
    let gw = Gangway::start_with(opts);
    let mut c = Conn::open(gw.proxy);
    c.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        .expect("partial body");
    let started = Instant::now();
    let r = c.read(false).expect("a response before the close");
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Timeouts and intervals the schemas leave unbounded (http-log's timeout, a queue's
/// max_retry_time, rate-limiting's sync_rate, an active health check's timeout) used to
/// overflow a Duration and abort the process as the config compiled, so a stored value
/// crash-looped the node. They are capped now, and the node serves.
#[test]
fn huge_timeouts_in_a_config_do_not_abort_the_node() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        r#"_format_version: "3.0"
upstreams:
  - name: pool
    healthchecks:
      active:
        timeout: 1e20
        healthy: {{interval: 5}}
    targets:
      - target: "{up}"
services:
  - name: s
    host: pool
    routes:
      - paths: ["/"]
        plugins:
          - name: http-log
            config:
              http_endpoint: http://127.0.0.1:9/
              timeout: 1e23
              queue: {{max_retry_time: 1e20}}
          - name: rate-limiting
            config:
              minute: 100
              policy: redis
              redis: {{host: 127.0.0.1, port: 9}}
              sync_rate: 1e20
"#,
        up = up.addr
    ));
    let r = gw.get("/anything");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A body buffered for a plugin (here request-size-limiting measuring a chunked body) kept
/// its raw bytes until the end: 5,000 one-byte chunks, each with a 4,000-byte extension,
/// held 20 MB for 5 KB of payload, far past any limit, before authentication.
#[test]
fn chunk_extensions_are_not_held_while_a_body_is_buffered() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config_with_routes(
            up.addr,
            "      - paths: [\"/rsl\"]\n        plugins:\n          - name: request-size-limiting\n            config: {allowed_payload_size: 1}\n",
        ))
        .env("GANGWAY_WORKERS", "1"),
    );
    let mut c = Conn::open(gw.proxy);
    c.write(b"POST /rsl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("head");
    let before = gw.rss_kib();
    let chunk = format!("1;{}\r\nX\r\n", "a".repeat(4000));
    for _ in 0..50 {
        c.write(chunk.repeat(100).as_bytes()).expect("chunks");
    }
    c.write(b"0\r\n\r\n").expect("last chunk");
    let r = c.read(false).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    let grew = gw.rss_kib().saturating_sub(before);
    assert!(
        grew < 8 * 1024,
        "RSS grew by {grew} KiB for 5 KB of payload in 20 MB of framing"
    );
}

/// A HEAD whose upstream fails gets the error's head and no body. The method was read
/// through the input buffer after the exchange had drained it, so the check missed HEAD
/// and a body followed, which a client reads as the next response.
#[test]
fn a_head_request_that_fails_upstream_gets_no_body() {
    let dead = free_port();
    let gw = Gangway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: dead\n    url: http://127.0.0.1:{dead}\n    routes:\n      - paths: [\"/dead\"]\n"
    ));
    let mut c = Conn::open(gw.proxy);
    c.write(b"HEAD /dead HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let stream = c.stream();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    let head_end = text.find("\r\n\r\n").expect("a whole head") + 4;
    assert_eq!(&text[head_end..], "", "no body after the head: {text}");
}

#[test]
fn an_error_after_a_proxied_request_on_the_same_connection_still_drains_the_body() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n      - name: rsl\n        paths: [\"/rsl\"]\n        plugins:\n          - name: request-size-limiting\n",
    ));
    let mut conn = Conn::open(gw.proxy);
    assert_eq!(conn.get("/echo").expect("proxied").status, 200);
    // Then a chunked body that request-size-limiting buffers, broken after its first chunk
    // and followed by more than the sockets' buffers hold, written whole before the answer
    // is read: the 400 arrives only if the gateway drains the rest before it closes,
    // whoever answered the connection's request before.
    let mut raw =
        b"POST /rsl HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(b"4\r\nabcd\r\nzz\r\n");
    raw.extend_from_slice(&vec![b'x'; 16 << 20]);
    conn.write(&raw)
        .expect("the rest of a broken body is drained after the 400, not reset");
    let r = conn.read(false).expect("the 400");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn operators_error_templates_replace_kongs_bodies() {
    let up = Upstream::start();
    let dir = crate::harness::TempDir::new("error-templates");
    let write = |name: &str, text: &str| {
        let path = dir.path(name);
        std::fs::write(&path, text).expect("write template");
        path.display().to_string()
    };
    let json = write(
        "error.json",
        "{\"error\":\"%s\",\"trace\":\"%s\",\"docs\":\"https://docs\"}",
    );
    let html = write("error.html", "<p>Sorry: %s (100%% our fault)</p>\n");
    let yaml = config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n        plugins:\n          - name: key-auth\n",
    );
    let gw = Gangway::start_with(
        Options::new(yaml)
            .env("KONG_ERROR_TEMPLATE_JSON", json)
            .env("KONG_ERROR_TEMPLATE_HTML", html),
    );
    // The router's 404 (kong.response.error) and a plugin's answer, in each format.
    let r = request(gw.proxy, "GET", "/nowhere", &[JSON], b"").expect("req");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_eq!(
        body["error"], "no Route matched with those values",
        "{body}"
    );
    assert_eq!(body["trace"].as_str(), r.header("x-kong-request-id"));
    assert_eq!(body["docs"], "https://docs");
    let r = request(gw.proxy, "GET", "/nowhere", &[("Accept", "text/html")], b"").expect("req");
    assert_eq!(
        r.text(),
        "<p>Sorry: no Route matched with those values (100% our fault)</p>\n"
    );
    let r = request(gw.proxy, "GET", "/echo", &[("Accept", "text/html")], b"").expect("req");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        "<p>Sorry: No API key found in request (100% our fault)</p>\n"
    );
    // Formats without a template keep Kong's.
    let r = request(
        gw.proxy,
        "GET",
        "/nowhere",
        &[("Accept", "application/xml")],
        b"",
    )
    .expect("req");
    assert!(
        r.text()
            .contains("<message>no Route matched with those values</message>"),
        "{}",
        r.text()
    );
    drop(gw);

    // A template Kong would fail to render stops startup, naming the setting and the file.
    let bad = write("bad.txt", "%d failures: %s");
    let said = crate::harness::refused_start(&[("KONG_ERROR_TEMPLATE_PLAIN", &bad)]);
    let want = format!("invalid settings: error_template_plain: {bad} holds '%d'");
    assert!(said.contains(&want), "{said}");
    let missing = dir.path("missing.json").display().to_string();
    let said = crate::harness::refused_start(&[("KONG_ERROR_TEMPLATE_JSON", &missing)]);
    let want = format!("invalid settings: error_template_json: cannot read {missing}");
    assert!(said.contains(&want), "{said}");
}
