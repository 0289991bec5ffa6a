//! Routing and proxying: bodies, keep-alive, pipelining, upgrade, forwarding headers.

use std::io::{Read, Write};

use crate::harness::client::Conn;
use crate::harness::{
    Gangway, Options, Upstream, config_with_routes, echo_header, request, send_raw,
};

fn basic() -> (Upstream, Gangway) {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - name: r1\n        paths: [\"/echo\"]\n",
    ));
    (up, gw)
}

#[test]
fn proxies_a_route_end_to_end_with_kong_headers() {
    let (up, gw) = basic();
    let r = gw.get("/echo/hello?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(
        echo["target"], "/hello?x=1",
        "strip_path removes the matched prefix"
    );
    assert_eq!(
        echo_header(&echo, "host").as_deref(),
        Some(up.addr.to_string().as_str())
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        echo_header(&echo, "x-real-ip").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-host").as_deref(),
        Some("localhost")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-port").as_deref(),
        Some(gw.proxy.port().to_string().as_str())
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-path").as_deref(),
        Some("/echo/hello")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-prefix").as_deref(),
        Some("/echo")
    );
    assert!(
        echo_header(&echo, "x-kong-request-id")
            .as_deref()
            .is_some_and(|v| v.len() == 32)
    );
    assert!(
        r.header("via").is_some_and(|v| v.contains("gangway/")),
        "{:?}",
        r.headers
    );
    assert!(r.header("x-kong-upstream-latency").is_some());
    assert!(r.header("x-kong-proxy-latency").is_some());
    assert_eq!(r.header("x-upstream"), Some("echo"));
}

#[test]
fn via_names_each_hop_both_ways() {
    let (_up, gw) = basic();
    let version = env!("CARGO_PKG_VERSION");
    let r = request(
        gw.proxy,
        "GET",
        "/echo",
        &[
            ("Via", "1.0 fred"),
            ("x-echo-response-header", "Via: 1.1 origin-cache"),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(
        echo_header(&r.json(), "via"),
        Some(format!("1.0 fred, 1.1 gangway/{version}"))
    );
    assert_eq!(
        r.headers_named("via"),
        [format!("1.1 origin-cache, 1.1 gangway/{version}")]
    );

    let r = request(gw.proxy, "GET", "/echo", &[], b"").expect("request");
    assert_eq!(
        echo_header(&r.json(), "via"),
        Some(format!("1.1 gangway/{version}"))
    );
}

#[test]
fn appends_to_client_x_forwarded_for_and_drops_untrusted_forwarded_proto() {
    let (_up, gw) = basic();
    let r = request(
        gw.proxy,
        "GET",
        "/echo",
        &[
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-Proto", "https"),
        ],
        b"",
    )
    .expect("request");
    let echo = r.json();
    assert_eq!(
        echo_header(&echo, "x-forwarded-for").as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-proto").as_deref(),
        Some("http")
    );
}

#[test]
fn removes_hop_by_hop_headers_both_ways() {
    let (_up, gw) = basic();
    let r = request(
        gw.proxy,
        "GET",
        "/echo",
        &[
            ("Keep-Alive", "timeout=5"),
            ("X-Secret-Hop", "1"),
            ("Connection", "X-Secret-Hop"),
            ("TE", "trailers"),
        ],
        b"",
    )
    .expect("request");
    let echo = r.json();
    for h in ["keep-alive", "x-secret-hop", "te"] {
        assert!(
            echo_header(&echo, h).is_none(),
            "{h} must not reach the upstream: {echo}"
        );
    }
    assert_eq!(
        echo_header(&echo, "connection").as_deref(),
        Some("keep-alive")
    );
}

#[test]
fn content_length_and_chunked_request_bodies_stream_to_the_upstream() {
    let (_up, gw) = basic();
    let body = vec![b'a'; 300_000];
    let r = request(gw.proxy, "POST", "/echo", &[], &body).expect("post");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 300_000);

    let mut raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for piece in ["hello", " ", "chunked", " world"] {
        raw.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = send_raw(gw.proxy, &raw).expect("chunked post");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["body"], "hello chunked world");
    assert_eq!(
        echo_header(&echo, "transfer-encoding").as_deref(),
        Some("chunked")
    );
}

#[test]
fn chunked_and_large_responses_stream_back() {
    let (_up, gw) = basic();
    let r = request(gw.proxy, "GET", "/echo", &[("x-echo-chunked", "1")], b"").expect("chunked");
    assert!(r.chunked, "chunked framing is kept");
    assert_eq!(r.json()["method"], "GET");
    let r = request(
        gw.proxy,
        "GET",
        "/echo",
        &[("x-echo-body-size", "5000000")],
        b"",
    )
    .expect("big");
    assert_eq!(r.body.len(), 5_000_000);
    let r = request(gw.proxy, "GET", "/echo", &[("x-echo-close", "1")], b"").expect("until close");
    assert_eq!(r.json()["method"], "GET");
}

#[test]
fn head_responses_have_no_body() {
    let (_up, gw) = basic();
    let mut c = Conn::open(gw.proxy);
    c.write(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let r = c.read(true).expect("head response");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    // The connection is still in sync: the next response parses.
    let r = c.get("/echo/after").expect("after head");
    assert_eq!(r.json()["target"], "/after");
    // So it is after gangway's own error page: it used to send its body to a HEAD.
    c.write(b"HEAD /no-route-here HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let r = c.read(true).expect("head of the error");
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    let r = c.get("/echo/after-error").expect("after the error's head");
    assert_eq!(r.json()["target"], "/after-error");
}

#[test]
fn keep_alive_reuses_client_and_upstream_connections() {
    let (up, gw) = basic();
    let mut c = Conn::open(gw.proxy);
    let mut conn_ids = Vec::new();
    for i in 0..20 {
        let r = c.get(&format!("/echo/{i}")).expect("keep-alive request");
        assert_eq!(r.status, 200);
        conn_ids.push(r.json()["conn_id"].as_u64().expect("conn id"));
    }
    // Two workers may each open one, but 20 sequential requests must not open 20.
    assert!(
        up.connections.load(std::sync::atomic::Ordering::Relaxed) <= 2,
        "{conn_ids:?}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_up, gw) = basic();
    let mut c = Conn::open(gw.proxy);
    let mut raw = Vec::new();
    for i in 0..5 {
        raw.extend_from_slice(format!("GET /echo/p{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    raw.extend_from_slice(b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    raw.extend_from_slice(b"GET /echo/last HTTP/1.1\r\nHost: x\r\n\r\n");
    c.write(&raw).expect("write pipeline");
    for i in 0..5 {
        assert_eq!(
            c.read(false).expect("response").json()["target"],
            format!("/p{i}")
        );
    }
    let r = c.read(false).expect("post response").json();
    assert_eq!(
        (r["target"].as_str(), r["body"].as_str()),
        (Some("/body"), Some("abc"))
    );
    assert_eq!(c.read(false).expect("last").json()["target"], "/last");
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let (_up, gw) = basic();
    let mut c = Conn::open(gw.proxy);
    c.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .expect("write");
    let mut first = [0u8; 25];
    c.stream().read_exact(&mut first).expect("100 continue");
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write(b"data").expect("body");
    let r = c.read(false).expect("final");
    assert_eq!(r.json()["body"], "data");
    assert!(
        r.json()["headers"]
            .to_string()
            .to_lowercase()
            .find("expect")
            .is_none()
    );
}

#[test]
fn websocket_upgrade_is_tunnelled() {
    let (_up, gw) = basic();
    let mut c = Conn::open(gw.proxy);
    c.write(
        b"GET /echo/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .expect("write");
    let r = c.read(false).expect("101");
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    let s = c.stream();
    s.write_all(b"ping over the tunnel").expect("tunnel write");
    let mut back = [0u8; 20];
    s.read_exact(&mut back).expect("tunnel read");
    assert_eq!(&back, b"ping over the tunnel");
}

/// Kong passes an upgrade on only for `Upgrade: websocket`: `h2c` reached the upstream, and
/// a 101 from it opened a raw tunnel past routing and every plugin. Kong also replaces a
/// client's X-Kong-Request-Id; the client's went up beside gangway's.
#[test]
fn only_websocket_upgrades_pass_and_the_request_id_is_gangways() {
    let (_up, gw) = basic();
    let mut c = Conn::open(gw.proxy);
    c.write(
        b"GET /echo/h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Kong-Request-Id: spoofed\r\n\r\n",
    )
    .expect("write");
    let r = c.read(false).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo_header(&echo, "upgrade"), None, "{echo}");
    assert_eq!(
        echo_header(&echo, "connection").as_deref(),
        Some("keep-alive")
    );
    let ids: Vec<&str> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("x-kong-request-id"))
        })
        .filter_map(|pair| pair[1].as_str())
        .collect();
    assert!(ids.len() == 1 && ids[0] != "spoofed", "{ids:?}");
    assert_eq!(r.header("x-kong-request-id"), Some(ids[0]));
}

/// An upgraded connection with nothing passing either way for the service's read_timeout
/// is closed, as nginx bounds one; traffic inside that keeps it open. It used to stay open
/// for good.
#[test]
fn an_idle_upgraded_connection_closes_after_read_timeout() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: ws\n    url: http://{}\n    read_timeout: 400\n    routes:\n      - paths: [\"/ws\"]\n",
        up.addr
    ));
    let mut c = Conn::open(gw.proxy);
    c.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .expect("write");
    assert_eq!(c.read(false).expect("101").status, 101);
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let s = c.stream();
        s.write_all(b"ping").expect("tunnel write");
        let mut back = [0u8; 4];
        s.read_exact(&mut back).expect("open while traffic passes");
    }
    let started = std::time::Instant::now();
    assert!(
        c.is_closed(std::time::Duration::from_secs(3)),
        "closed when idle"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

/// A client that stops reading a response is dropped after send_timeout (nginx's), instead
/// of holding its connection and an upstream one for good.
#[test]
fn a_client_that_stops_reading_is_dropped_after_send_timeout() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config_with_routes(up.addr, "      - paths: [\"/big\"]\n"))
            .env("GANGWAY_SEND_TIMEOUT_MS", "300"),
    );
    const BODY: usize = 64 << 20;
    let mut s = std::net::TcpStream::connect(gw.proxy).expect("connect");
    s.write_all(
        format!("GET /big HTTP/1.1\r\nHost: x\r\nx-echo-body-size: {BODY}\r\n\r\n").as_bytes(),
    )
    .expect("write");
    std::thread::sleep(std::time::Duration::from_millis(2000));
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got < BODY,
        "the gateway gave up: {got} of {BODY} bytes came"
    );
}

#[test]
fn routes_by_host_method_and_header() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - name: by-host\n        hosts: [\"api.example.com\"]\n        paths: [\"/h\"]\n\
         \x20     - name: by-wildcard\n        hosts: [\"*.wild.com\"]\n        paths: [\"/w\"]\n\
         \x20     - name: by-method\n        methods: [\"POST\"]\n        paths: [\"/m\"]\n\
         \x20     - name: by-header\n        headers: {x-version: [\"v2\"]}\n        paths: [\"/v\"]\n",
    ));
    let ok = |host: &str, method: &str, path: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("Host", host)];
        h.extend_from_slice(extra);
        request(gw.proxy, method, path, &h, b"")
            .expect("request")
            .status
    };
    assert_eq!(ok("api.example.com", "GET", "/h", &[]), 200);
    assert_eq!(ok("other.example.com", "GET", "/h", &[]), 404);
    assert_eq!(ok("a.wild.com", "GET", "/w", &[]), 200);
    assert_eq!(ok("wild.com", "GET", "/w", &[]), 404);
    assert_eq!(ok("x", "POST", "/m", &[]), 200);
    assert_eq!(ok("x", "GET", "/m", &[]), 404);
    assert_eq!(ok("x", "GET", "/v", &[("X-Version", "V2")]), 200);
    assert_eq!(ok("x", "GET", "/v", &[("X-Version", "v1")]), 404);
    // Kong's get_headers() finds a header under either spelling of `-` and `_`.
    assert_eq!(ok("x", "GET", "/v", &[("X_Version", "v2")]), 200);
    // A Host that is not UTF-8 matches no route, not every route without hosts.
    let r = send_raw(
        gw.proxy,
        b"POST /m HTTP/1.1\r\nHost: caf\xe9.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .expect("response");
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn regex_routes_and_preserve_host() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - name: rx\n        paths: [\"~/forecast/(?<key>[^/]+)/(?<loc>[^/]+)$\"]\n        strip_path: false\n        preserve_host: true\n",
    ));
    let r = request(
        gw.proxy,
        "GET",
        "/forecast/abc/1,2",
        &[("Host", "weather.example")],
        b"",
    )
    .expect("req");
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["target"], "/forecast/abc/1,2");
    assert_eq!(
        echo_header(&echo, "host").as_deref(),
        Some("weather.example")
    );
    assert_eq!(gw.get("/forecast/abc").status, 404);
}

/// Kong's path-handling table (v0), checked through the real proxy for a few rows; the whole
/// table runs as a unit test of the router.
#[test]
fn path_handling_through_the_proxy() {
    let up = Upstream::start();
    let cases = [
        ("/s", "/fv", true, "/fv/req", "/s/req"),
        ("/s", "/fv", true, "/fvreq", "/s/req"),
        ("/s/", "/fv", true, "/fv", "/s"),
        ("/s", "/fv", true, "/fv/", "/s/"),
        ("/", "/fv", true, "/fv", "/"),
        ("/s", "/fv", false, "/fv/req", "/s/fv/req"),
        ("/s/", "/fv", false, "/fv/req", "/s/fv/req"),
    ];
    let mut yaml = String::from("_format_version: \"3.0\"\nservices:\n");
    for (i, (spath, rpath, strip, _, _)) in cases.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: s{i}\n    url: http://{}{spath}\n    routes:\n      - name: r{i}\n        hosts: [\"h{i}\"]\n        paths: [\"{rpath}\"]\n        strip_path: {strip}\n",
            up.addr
        ));
    }
    let gw = Gangway::start(&yaml);
    for (i, (spath, rpath, strip, req, want)) in cases.iter().enumerate() {
        let host = format!("h{i}");
        let r = request(gw.proxy, "GET", req, &[("Host", &host)], b"").expect("req");
        assert_eq!(
            r.json()["target"],
            *want,
            "service.path={spath} route={rpath} strip={strip} req={req}"
        );
    }
}

#[test]
fn http10_clients_get_chunked_responses_decoded() {
    let (_up, gw) = basic();
    let raw = b"GET /echo/old HTTP/1.0\r\nx-echo-chunked: 1\r\n\r\n";
    let r = send_raw(gw.proxy, raw).expect("http/1.0 response");
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none(), "{:?}", r.headers);
    assert!(!r.chunked);
    assert_eq!(
        r.json()["target"],
        "/old",
        "the body arrives decoded and whole"
    );
}

/// An HTTP/1.0 client that asked to keep the connection is told it stays open on gangway's
/// own answers too (an error, a plugin's), as nginx does; without the header the client
/// (`ab -k`) waited for a close that never came.
#[test]
fn http10_keep_alive_clients_are_told_on_gangways_own_answers() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - paths: [\"/echo\"]\n      - paths: [\"/stop\"]\n        plugins:\n          - name: request-termination\n            config: {status_code: 403, message: no}\n",
    ));
    let mut c = Conn::open(gw.proxy);
    for (path, status) in [("/nope", 404), ("/stop", 403), ("/echo/x", 200)] {
        let raw = format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        c.write(raw.as_bytes()).expect("write");
        let r = c.read(false).expect("an answer on the same connection");
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive"),
            "{path}: {:?}",
            r.headers
        );
    }
}

#[test]
fn debug_headers_need_allow_debug_header_and_kong_debug() {
    let up = Upstream::start();
    let yaml = config_with_routes(up.addr, "      - name: r1\n        paths: [\"/echo\"]\n");
    let gw = Gangway::start_with(
        crate::harness::Options::new(yaml.clone()).env("GANGWAY_ALLOW_DEBUG_HEADER", "on"),
    );
    let r = request(gw.proxy, "GET", "/echo", &[("kong-debug", "1")], b"").expect("request");
    assert_eq!(r.header("kong-route-name"), Some("r1"));
    assert_eq!(r.header("kong-service-name"), Some("echo"));
    assert_eq!(r.header("kong-route-id").map(str::len), Some(36));
    let r = request(gw.proxy, "GET", "/echo", &[], b"").expect("request");
    assert!(r.header("kong-route-id").is_none());
    let off = Gangway::start(&yaml);
    let r = request(off.proxy, "GET", "/echo", &[("kong-debug", "1")], b"").expect("request");
    assert!(r.header("kong-route-id").is_none(), "off by default");
}

#[test]
fn interim_responses_are_skipped_and_the_connection_stays_in_sync() {
    let (_up, gw) = basic();
    let mut c = Conn::open(gw.proxy);
    c.write(b"GET /echo/a HTTP/1.1\r\nHost: x\r\nx-echo-early-hints: 1\r\n\r\n")
        .expect("write");
    let r = c.read(false).expect("final response");
    assert_eq!((r.status, r.json()["target"].as_str()), (200, Some("/a")));
    // The pooled upstream connection holds nothing stale: the next answer is its own.
    for path in ["/b", "/c"] {
        let r = c.get(&format!("/echo{path}")).expect("next");
        assert_eq!(r.json()["target"], path);
    }
}

#[test]
fn the_access_log_has_a_line_per_request_in_kongs_format() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(up.addr, "      - paths: [\"/\"]\n"));
    let r = request(
        gw.proxy,
        "GET",
        "/logged?q=1",
        &[
            ("Referer", "http://ref.example/"),
            ("User-Agent", "access-test/1.0 \"quoted\""),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    let id = r
        .header("x-kong-request-id")
        .expect("request id")
        .to_owned();
    let body = r.body.len();
    let want = format!(
        "\"GET /logged?q=1 HTTP/1.1\" 200 {body} \"http://ref.example/\" \"access-test/1.0 \\x22quoted\\x22\" kong_request_id: \"{id}\""
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        let log = gw.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains(&id) && l.contains("kong_request_id"))
        {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line for {id}:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains(" +0000] "), "{line}");
    assert!(line.ends_with(&want), "{line}\nwant the end: {want}");
}

/// Waits (up to 5 s) until `file` holds `text`.
fn wait_for_line(file: &std::path::Path, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(file).is_ok_and(|t| t.contains(text)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}: {:?}",
            file.display(),
            std::fs::read_to_string(file)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_access_log_goes_to_a_file_under_the_prefix_or_nowhere() {
    let up = Upstream::start();
    let config = config_with_routes(up.addr, "      - paths: [\"/\"]\n");
    let gw = Gangway::start_with(
        Options::new(config.clone()).env("GANGWAY_PROXY_ACCESS_LOG", "logs/access.log"),
    );
    assert_eq!(gw.get("/to-file").status, 200);
    let file = gw.dir().join("prefix/logs/access.log");
    wait_for_line(&file, "\"GET /to-file HTTP/1.1\" 200");
    assert!(!gw.log().contains("/to-file HTTP/1.1"), "not on stdout too");
    // A head that does not parse is logged too, as nginx logs its 400s: the line as read.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(gw.proxy).expect("connect");
        s.write_all(b"GARBAGE /bad\x01line HTTP/1.1\r\n\r\n")
            .expect("write");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }
    wait_for_line(&file, "\"GARBAGE /bad\\x01line HTTP/1.1\" 400 ");

    let off = Gangway::start_with(Options::new(config).env("KONG_PROXY_ACCESS_LOG", "off"));
    assert_eq!(off.get("/nowhere-logged").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(
        !off.log().contains("/nowhere-logged HTTP/1.1"),
        "{}",
        off.log()
    );
}

#[test]
fn a_sink_that_cannot_keep_up_loses_access_lines_not_requests() {
    // A FIFO whose reader never reads: the writer blocks once the pipe is full.
    let dir = crate::harness::TempDir::new("access-fifo");
    let fifo = dir.path("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs (coreutils)");
    assert!(made.success());
    let reader_path = fifo.clone();
    let (opened, held) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&reader_path).expect("open the fifo for reading");
        let _ = opened.send(());
        // Hold it open, unread, until the test process ends.
        std::thread::sleep(std::time::Duration::from_secs(60));
        drop(file);
    });
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config_with_routes(up.addr, "      - paths: [\"/\"]\n"))
            .env("GANGWAY_PROXY_ACCESS_LOG", fifo.display().to_string()),
    );
    held.recv_timeout(std::time::Duration::from_secs(5))
        .expect("gangway opened the fifo");
    // About 1.5 MB of lines: more than the pipe and the writer's queue hold.
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = gw.proxy;
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                for i in 0..2500 {
                    let r = conn.get(&format!("/flood/{i}")).expect("answered");
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every request answered");
    }
    let elapsed = started.elapsed();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let dropped = loop {
        let text = request(gw.status, "GET", "/metrics", &[], b"")
            .expect("scrape")
            .text();
        let dropped = text
            .lines()
            .find_map(|l| l.strip_prefix("gangway_access_log_dropped_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if dropped > 0 || std::time::Instant::now() > deadline {
            break dropped;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(dropped > 0, "lines were dropped, not queued without bound");
    assert!(
        elapsed < std::time::Duration::from_secs(30),
        "requests were not held up by the blocked sink: {elapsed:?}"
    );
}

/// A client's chunked trailers are dropped, as nginx drops them: they went up as sent,
/// carrying headers past every plugin that strips or sets headers (here an
/// X-Consumer-Username a key-auth route would set itself).
#[test]
fn chunked_trailers_from_a_client_are_not_forwarded() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut raw = Vec::new();
            let mut chunk = [0u8; 4096];
            let complete = |raw: &[u8]| {
                let text = String::from_utf8_lossy(raw);
                text.find("\r\n\r\n").is_some_and(|h| {
                    text[h + 4..].contains("0\r\n")
                        && text.ends_with("\r\n\r\n")
                        && text.len() > h + 4
                })
            };
            while !complete(&raw) {
                match stream.read(&mut chunk) {
                    Ok(n) if n > 0 => raw.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            let _ = tx.send(raw);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let gw = Gangway::start(&config_with_routes(addr, "      - paths: [\"/up\"]\n"));
    // Whole in the first read, and streamed after the head went (the trailer read later).
    for streamed in [false, true] {
        let mut c = Conn::open(gw.proxy);
        let head =
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
        let end = b"0\r\nX-Consumer-Username: admin\r\n\r\n";
        if streamed {
            c.write(head).expect("head");
            std::thread::sleep(std::time::Duration::from_millis(200));
            c.write(end).expect("end");
        } else {
            c.write(&[&head[..], &end[..]].concat()).expect("write");
        }
        let r = c.read(false).expect("response");
        assert_eq!(r.status, 200, "{}", r.text());
        let raw = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the upstream got the request");
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            "{streamed}: {text}"
        );
        assert!(!text.contains("admin"), "{streamed}: {text}");
    }
}

/// Kong routes on the Host header (`get_header("host")`), not on an absolute-form target's
/// host, which gangway used to prefer (as nginx's `$host` does): a filter in front that
/// judged the request by its Host header could be walked past to another host's routes.
#[test]
fn routing_follows_the_host_header_over_an_absolute_form_target() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - hosts: [internal.example]\n        plugins:\n          - name: request-termination\n            config: {status_code: 403, message: internal}\n      - hosts: [public.example]\n        plugins:\n          - name: request-termination\n            config: {status_code: 200, message: public}\n",
    ));
    let r = send_raw(
        gw.proxy,
        b"GET http://internal.example/admin HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
    )
    .expect("response");
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (200, "public".into()),
        "{}",
        r.text()
    );
}

/// Kong's answers on a gRPC route to an HTTP/1.x request: 415 when it is not gRPC, 426
/// (use HTTP/2) when it is. gangway took a grpc-only route for an https-only one and
/// answered 426 'Please use HTTPS protocol' (or redirected).
#[test]
fn grpc_routes_refuse_http1_requests_as_kong_does() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: g\n    url: grpc://{}\n    routes:\n      - protocols: [grpc]\n        paths: [\"/g\"]\n",
        up.addr
    ));
    let json = ("Accept", "application/json");
    let r = request(gw.proxy, "GET", "/g", &[json], b"").expect("request");
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.json()["message"], "Non-gRPC request matched gRPC route");
    let r = request(
        gw.proxy,
        "POST",
        "/g",
        &[json, ("Content-Type", "application/grpc")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 426, "{}", r.text());
    assert_eq!(r.json()["message"], "Please use HTTP2 protocol");
    assert_eq!(r.header("upgrade"), Some("HTTP/2"));
}
