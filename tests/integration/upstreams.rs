//! Upstream entities (targets, balancing, passive health), https upstreams, https-only routes
//! and trusted proxies.

use crate::harness::{
    Gangway, Options, Upstream, config_with_routes, echo_header, free_port, request, send_raw,
};

#[test]
fn round_robin_over_targets_and_passive_health_checks() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let dead = free_port();
    let yaml = format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: pool.internal\n    healthchecks:\n      passive:\n        unhealthy:\n          tcp_failures: 1\n    targets:\n      - target: {}\n      - target: {}\n      - target: 127.0.0.1:{dead}\n\
         services:\n  - name: s\n    host: pool.internal\n    port: 80\n    retries: 3\n    routes:\n      - paths: [\"/lb\"]\n",
        a.addr, b.addr
    );
    let gw = Gangway::start(&yaml);
    for _ in 0..30 {
        let r = request(
            gw.proxy,
            "GET",
            "/lb",
            &[("Accept", "application/json")],
            b"",
        )
        .expect("request");
        assert_eq!(
            r.status,
            200,
            "a dead target is retried on another: {}",
            r.text()
        );
    }
    let (na, nb) = (
        a.requests.load(std::sync::atomic::Ordering::Relaxed),
        b.requests.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(na + nb, 30);
    assert!(
        na >= 10 && nb >= 10,
        "round robin spreads load: {na} vs {nb}"
    );
    // Host header is the target's address (no host_header set).
    let r = request(gw.proxy, "GET", "/lb", &[], b"").expect("request");
    let host = echo_header(&r.json(), "host").expect("host");
    assert!(
        host == a.addr.to_string() || host == b.addr.to_string(),
        "{host}"
    );
}

#[test]
fn active_health_checks_take_a_target_out_and_bring_it_back() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let a = Upstream::start();
    let b_port = free_port();
    // No retries: without active checks, every other request would hit the dead target.
    let yaml = format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: pool.internal\n    healthchecks:\n      active:\n        http_path: /health\n        timeout: 1\n        healthy:\n          interval: 1\n          successes: 1\n        unhealthy:\n          interval: 1\n          tcp_failures: 1\n    targets:\n      - target: {}\n      - target: 127.0.0.1:{b_port}\n\
         services:\n  - name: s\n    host: pool.internal\n    port: 80\n    retries: 0\n    routes:\n      - paths: [\"/lb\"]\n",
        a.addr
    );
    let gw = Gangway::start(&yaml);
    let target_b = format!("127.0.0.1:{b_port}");
    let wait_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gw
            .log()
            .lines()
            .any(|l| l.contains(needle) && l.contains(&target_b))
        {
            assert!(
                Instant::now() < deadline,
                "no '{needle}' for {target_b} in the log"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_log("active check: target address unhealthy");
    for _ in 0..10 {
        assert_eq!(gw.get("/lb").status, 200, "the dead target gets no traffic");
    }

    // The target comes up: the next probe puts it back in rotation.
    let b = Upstream::start_on(format!("127.0.0.1:{b_port}").parse().expect("addr"));
    wait_log("active check: target address healthy");
    let before = b.requests.load(Ordering::Relaxed);
    for _ in 0..10 {
        assert_eq!(gw.get("/lb").status, 200);
    }
    let served = b.requests.load(Ordering::Relaxed) - before;
    assert!(served >= 3, "round robin reaches it again: {served} of 10");
    assert!(a.requests.load(Ordering::Relaxed) >= 10);
}

#[test]
fn no_healthy_target_is_503() {
    let (d1, d2) = (free_port(), free_port());
    let yaml = format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: gone.internal\n    healthchecks:\n      passive:\n        unhealthy:\n          tcp_failures: 1\n    targets:\n      - target: 127.0.0.1:{d1}\n      - target: 127.0.0.1:{d2}\n\
         services:\n  - name: s\n    host: gone.internal\n    retries: 1\n    routes:\n      - paths: [\"/gone\"]\n"
    );
    let gw = Gangway::start(&yaml);
    let first = request(
        gw.proxy,
        "GET",
        "/gone",
        &[("Accept", "application/json")],
        b"",
    )
    .expect("request");
    assert!(
        first.status == 502 || first.status == 503,
        "{}",
        first.text()
    );
    let r = request(
        gw.proxy,
        "GET",
        "/gone",
        &[("Accept", "application/json")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "The upstream server is currently unavailable"
    );
}

#[test]
fn https_upstream_through_another_gangways_tls_listener() {
    let up = Upstream::start();
    let inner = Gangway::start_with(
        Options::new(config_with_routes(up.addr, "      - paths: [\"/\"]\n")).tls(),
    );
    let tls = inner.proxy_tls.expect("tls listener");
    let outer = Gangway::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: secure\n    url: https://localhost:{}/deep\n    routes:\n      - paths: [\"/s\"]\n",
        tls.port()
    ));
    let r = outer.get("/s/x");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["target"], "/deep/x");
    assert_eq!(
        echo_header(&echo, "x-forwarded-proto").as_deref(),
        Some("https"),
        "the inner gangway saw TLS"
    );
    // Keep-alive to the TLS upstream: the second request reuses the connection.
    let r2 = outer.get("/s/y");
    assert_eq!(r2.status, 200);
}

#[test]
fn https_only_routes_answer_426_or_redirect() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(
        up.addr,
        "      - name: only-https\n        protocols: [\"https\"]\n        paths: [\"/secure\"]\n\
         \x20     - name: redirect\n        protocols: [\"https\"]\n        paths: [\"/moved\"]\n        https_redirect_status_code: 301\n",
    ));
    let r = request(
        gw.proxy,
        "GET",
        "/secure",
        &[("Accept", "application/json")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 426);
    assert_eq!(r.json()["message"], "Please use HTTPS protocol");
    assert_eq!(r.header("upgrade"), Some("TLS/1.2, HTTP/1.1"));
    let r = request(
        gw.proxy,
        "GET",
        "/moved/a?b=1",
        &[("Host", "api.example.com")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://api.example.com/moved/a?b=1")
    );
    // Kong's `$host`: lower case, without the port; and the origin-form target after it,
    // even from an absolute-form request line (the raw target used to follow the host).
    let r = send_raw(
        gw.proxy,
        b"GET http://API.Example.com:8000/moved/a?b=1 HTTP/1.1\r\nHost: api.example.com:8000\r\n\r\n",
    )
    .expect("request");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://api.example.com/moved/a?b=1")
    );
}

/// Kong refuses or redirects plain http on an https-only route in access.before, as it
/// answers the 404: the global plugins filter and log the answer. gangway wrote it past
/// them (no correlation id, no log line).
#[test]
fn https_refusals_and_redirects_pass_through_the_global_plugins() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        "_format_version: \"3.0\"\nplugins:\n  - name: correlation-id\n    config: {{header_name: X-Corr, echo_downstream: true}}\nservices:\n  - name: s\n    url: http://{}\n    routes:\n      - protocols: [https]\n        paths: [\"/secure\"]\n      - protocols: [https]\n        paths: [\"/moved\"]\n        https_redirect_status_code: 308\n",
        up.addr
    ));
    for (path, status) in [("/secure", 426), ("/moved/x", 308)] {
        let r = request(gw.proxy, "GET", path, &[("Host", "a.example")], b"").expect("request");
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.header("x-corr").is_some(), "{path}: {:?}", r.headers);
    }
    let r = request(
        gw.proxy,
        "GET",
        "/moved/x?q=1",
        &[("Host", "a.example")],
        b"",
    )
    .expect("request");
    assert_eq!(r.header("location"), Some("https://a.example/moved/x?q=1"));
}

#[test]
fn trusted_proxies_keep_forwarded_headers() {
    let up = Upstream::start();
    let opts = Options::new(config_with_routes(
        up.addr,
        "      - name: https-only\n        protocols: [\"https\"]\n        paths: [\"/echo\"]\n",
    ))
    .env("GANGWAY_TRUSTED_IPS", "127.0.0.1/32");
    let gw = Gangway::start_with(opts);
    let r = request(
        gw.proxy,
        "GET",
        "/echo",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "public.example"),
            ("X-Forwarded-Port", "443"),
        ],
        b"",
    )
    .expect("request");
    assert_eq!(
        r.status, 200,
        "a trusted X-Forwarded-Proto: https satisfies an https-only route"
    );
    let echo = r.json();
    assert_eq!(
        echo_header(&echo, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-host").as_deref(),
        Some("public.example")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-port").as_deref(),
        Some("443")
    );
}

/// Two services reach one TLS upstream, one without verification and one with: the second
/// must not be handed the first one's pooled connection, which nothing verified (the pool
/// was keyed by address and server name only).
#[test]
fn a_pooled_unverified_tls_connection_never_serves_a_service_that_verifies() {
    let up = Upstream::start();
    let inner = Gangway::start_with(
        Options::new(config_with_routes(up.addr, "      - paths: [\"/\"]\n")).tls(),
    );
    let port = inner.proxy_tls.expect("tls listener").port();
    let outer = Gangway::start_with(
        Options::new(format!(
            "_format_version: \"3.0\"\nservices:\n  - name: lax\n    url: https://localhost:{port}/\n    tls_verify: false\n    routes:\n      - paths: [\"/lax\"]\n  - name: strict\n    url: https://localhost:{port}/\n    tls_verify: true\n    routes:\n      - paths: [\"/strict\"]\n"
        ))
        .env("GANGWAY_WORKERS", "1"),
    );
    let mut c = crate::harness::client::Conn::open(outer.proxy);
    let lax = c.get("/lax/a").expect("lax");
    assert_eq!(lax.status, 200, "{}", lax.text());
    let strict = c.get("/strict/b").expect("strict");
    assert_eq!(
        strict.status,
        502,
        "the upstream's self-signed certificate fails verification: {}",
        strict.text()
    );
    // The 502 closed the client connection; the lax service still has its pool.
    assert_eq!(outer.get("/lax/c").status, 200);
}

/// `hash_on: consumer` keeps each authenticated consumer on one target, as Kong hashes the
/// consumer's id: it used to hash nothing and round-robin.
#[test]
fn hash_on_consumer_keeps_each_consumer_on_one_target() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let gw = Gangway::start(&format!(
        r#"_format_version: "3.0"
upstreams:
  - name: pool
    algorithm: consistent-hashing
    hash_on: consumer
    targets:
      - target: "{a}"
      - target: "{b}"
consumers:
  - username: alice
    keyauth_credentials: [{{key: alice-key}}]
  - username: bob
    keyauth_credentials: [{{key: bob-key}}]
services:
  - name: s
    host: pool
    routes:
      - paths: ["/"]
        plugins:
          - name: key-auth
"#,
        a = a.addr,
        b = b.addr
    ));
    use std::sync::atomic::Ordering::Relaxed;
    for key in ["alice-key", "bob-key"] {
        let before = (a.requests.load(Relaxed), b.requests.load(Relaxed));
        for _ in 0..10 {
            let r = request(gw.proxy, "GET", "/x", &[("apikey", key)], b"").expect("request");
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let served = (
            a.requests.load(Relaxed) - before.0,
            b.requests.load(Relaxed) - before.1,
        );
        assert!(
            served == (10, 0) || served == (0, 10),
            "{key}: one target serves every request, not {served:?}"
        );
    }
}

/// `hash_on: cookie`: a client without the cookie gets one made up (Kong's attributes),
/// replacing an upstream cookie of that name, and sending it back keeps the client on one
/// target.
#[test]
fn hash_on_cookie_gives_a_client_without_it_a_cookie_that_sticks() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let gw = Gangway::start(&format!(
        r#"_format_version: "3.0"
upstreams:
  - name: pool
    algorithm: consistent-hashing
    hash_on: cookie
    hash_on_cookie: sticky
    hash_on_cookie_path: /app
    targets:
      - target: "{a}"
      - target: "{b}"
services:
  - name: s
    host: pool
    routes:
      - paths: ["/"]
"#,
        a = a.addr,
        b = b.addr
    ));
    use std::sync::atomic::Ordering::Relaxed;
    let upstream_cookies = [
        ("x-echo-response-header", "Set-Cookie: sticky=from-upstream"),
        ("x-echo-response-header", "Set-Cookie: other=kept"),
    ];
    let first = request(gw.proxy, "GET", "/x", &upstream_cookies, b"").expect("request");
    assert_eq!(first.status, 200, "{}", first.text());
    let cookies = first.headers_named("set-cookie");
    let made: Vec<&&str> = cookies
        .iter()
        .filter(|c| c.starts_with("sticky="))
        .collect();
    assert_eq!(
        made.len(),
        1,
        "one sticky cookie, the upstream's replaced: {cookies:?}"
    );
    let (pair, attributes) = made[0].split_once("; ").expect("attributes");
    assert_eq!(attributes, "Path=/app; Same-Site=Lax; HttpOnly");
    let value = pair.strip_prefix("sticky=").expect("name");
    let uuid_shape = value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    assert!(uuid_shape, "a UUID: {value}");
    assert!(cookies.contains(&"other=kept"), "{cookies:?}");

    let cookie = format!("sticky={value}");
    let before = (a.requests.load(Relaxed), b.requests.load(Relaxed));
    for _ in 0..10 {
        let r = request(gw.proxy, "GET", "/x", &[("cookie", &cookie)], b"").expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.headers_named("set-cookie").is_empty(),
            "no new cookie once sent"
        );
    }
    let served = (
        a.requests.load(Relaxed) - before.0,
        b.requests.load(Relaxed) - before.1,
    );
    assert!(
        served == (10, 0) || served == (0, 10),
        "one target, not {served:?}"
    );
    let fresh: std::collections::HashSet<String> = (0..4)
        .map(|_| {
            let r = request(gw.proxy, "GET", "/x", &[], b"").expect("request");
            r.header("set-cookie")
                .expect("a cookie for each new client")
                .to_string()
        })
        .collect();
    assert_eq!(fresh.len(), 4, "each new client gets its own cookie");
}

/// An upstream that closes before answering gets the request again only when it is
/// idempotent, judged by the method the upstream gets: a GET that request-transformer
/// turned into a POST used to be sent a second time. The GET goes again on a new connection
/// (the first was pooled, which nginx does not count as a try), then `retries` (5) times
/// more, as nginx's `proxy_next_upstream error` does.
#[test]
fn a_get_turned_post_by_a_plugin_is_not_replayed() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config_with_routes(
            up.addr,
            "      - name: plain\n        paths: [\"/plain\"]\n      - name: posted\n        paths: [\"/posted\"]\n        plugins:\n          - name: request-transformer\n            config:\n              http_method: POST\n",
        ))
        .env("GANGWAY_WORKERS", "1"),
    );
    use std::sync::atomic::Ordering::Relaxed;
    for (path, times) in [("/plain", 7), ("/posted", 1)] {
        assert_eq!(gw.get(path).status, 200, "{path}: pools a connection");
        let before = up.requests.load(Relaxed);
        let r = request(gw.proxy, "GET", path, &[("x-echo-drop", "1")], b"").expect("request");
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        let sent = up.requests.load(Relaxed) - before;
        assert_eq!(sent, times, "{path}: times the upstream got it");
    }
}

/// A listener that reads each request and then either closes or keeps the connection
/// silent, never answering; counts the requests it got.
fn unanswering(
    hang: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = got.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            if stream.read(&mut buf).is_ok_and(|n| n > 0) {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if hang {
                held.push(stream);
            }
        }
    });
    (addr, got)
}

/// As nginx's `proxy_next_upstream error timeout` (which Kong keeps): a target that closes
/// without answering, or times out, sends an idempotent request on to the next target; a
/// POST that reached it is not sent again. Only connect failures used to be retried.
#[test]
fn a_target_that_fails_to_answer_an_idempotent_request_passes_it_to_the_next() {
    use std::sync::atomic::Ordering::Relaxed;
    let good = Upstream::start();
    for hang in [false, true] {
        let (bad, got) = unanswering(hang);
        let gw = Gangway::start(&format!(
            r#"_format_version: "3.0"
upstreams:
  - name: pool
    targets:
      - target: "{bad}"
      - target: "{good}"
services:
  - name: s
    host: pool
    read_timeout: 300
    routes:
      - paths: ["/"]
"#,
            good = good.addr
        ));
        for i in 0..4 {
            let started = std::time::Instant::now();
            let r = request(gw.proxy, "GET", "/x", &[], b"").expect("request");
            assert_eq!(r.status, 200, "hang {hang}, GET {i}: {}", r.text());
            assert!(started.elapsed() < std::time::Duration::from_secs(3));
        }
        assert!(
            got.load(Relaxed) >= 1,
            "hang {hang}: the bad target got a GET"
        );
        let before = got.load(Relaxed);
        let statuses: Vec<u16> = (0..4)
            .map(|_| {
                request(gw.proxy, "POST", "/x", &[], b"{}")
                    .expect("request")
                    .status
            })
            .collect();
        let failed = if hang { 504 } else { 502 };
        let refused = statuses.iter().filter(|&&s| s == failed).count();
        assert!(
            refused >= 1,
            "hang {hang}: a POST reached the bad target: {statuses:?}"
        );
        assert_eq!(
            got.load(Relaxed) - before,
            refused,
            "each once, never passed on"
        );
        assert!(
            statuses.iter().all(|&s| s == 200 || s == failed),
            "{statuses:?}"
        );
    }
}

/// `least-connections` sends new requests away from a target busy with a slow one, and
/// `latency` to the target that answers faster; both used to act as round robin.
#[test]
fn least_connections_and_latency_balance_on_what_they_measure() {
    use std::sync::atomic::Ordering::Relaxed;
    let (a, b) = (Upstream::start(), Upstream::start());
    let pool = |algorithm: &str| {
        Gangway::start(&format!(
            "_format_version: \"3.0\"\nupstreams:\n  - name: pool\n    algorithm: {algorithm}\n    targets:\n      - target: \"{}\"\n      - target: \"{}\"\nservices:\n  - name: s\n    host: pool\n    routes:\n      - paths: [\"/\"]\n",
            a.addr, b.addr
        ))
    };
    let served = || (a.requests.load(Relaxed), b.requests.load(Relaxed));

    let gw = pool("least-connections");
    let proxy = gw.proxy;
    let before = served();
    let slow = std::thread::spawn(move || {
        request(proxy, "GET", "/slow", &[("x-echo-delay-ms", "1500")], b"").expect("slow")
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while served() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request arrives"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let busy_is_a = served().0 > before.0;
    let quick_before = served();
    for _ in 0..6 {
        assert_eq!(
            request(gw.proxy, "GET", "/quick", &[], b"")
                .expect("quick")
                .status,
            200
        );
        // A request counts until its exchange ends, a moment after the client has its
        // answer: the next one must not find the idle target still counting it (a tie).
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let quick = (served().0 - quick_before.0, served().1 - quick_before.1);
    let want = if busy_is_a { (0, 6) } else { (6, 0) };
    assert_eq!(quick, want, "every quick request avoids the busy target");
    assert_eq!(slow.join().expect("thread").status, 200);
    drop(gw);

    let gw = pool("latency");
    // Each target answers once; then the one that took 300 ms more is left alone.
    let warm = served();
    let first = request(gw.proxy, "GET", "/", &[("x-echo-delay-ms", "300")], b"").expect("first");
    assert_eq!(first.status, 200);
    let slow_is_a = served().0 > warm.0;
    assert_eq!(
        request(gw.proxy, "GET", "/", &[], b"")
            .expect("second")
            .status,
        200
    );
    let after_warm = served();
    assert_eq!(
        (after_warm.0 - warm.0, after_warm.1 - warm.1),
        (1, 1),
        "the unmeasured target is tried"
    );
    for _ in 0..10 {
        assert_eq!(
            request(gw.proxy, "GET", "/", &[], b"")
                .expect("fast")
                .status,
            200
        );
    }
    let fast = (served().0 - after_warm.0, served().1 - after_warm.1);
    let want = if slow_is_a { (0, 10) } else { (10, 0) };
    assert_eq!(fast, want, "every request goes to the faster target");
}

/// A keep-alive upstream that answers each request with its method as the body. With
/// `stray`, it also sends a second, unasked-for response 50 ms after each one; without, it
/// closes a connection once it has been idle for 200 ms (uvicorn's and Node's 5 s keep-alive
/// timeout, shortened). Counts the connections it accepted.
fn brief_keepalive(
    stray: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    use std::time::Duration;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::spawn(move || {
                let idle = if stray { 10_000 } else { 200 };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(idle)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match stream.read(&mut chunk) {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match stream.read(&mut chunk) {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let method = head.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    buf.drain(..head_end + length);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{method}",
                        method.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                    if stray {
                        std::thread::sleep(Duration::from_millis(50));
                        let poison = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned";
                        if stream.write_all(poison).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// nginx closes a cached upstream connection the moment the upstream sends anything or
/// closes it. gangway used to reuse it: a POST after an upstream's keep-alive timeout was
/// written to a closed connection and answered 502 (it cannot be sent twice), and bytes the
/// upstream sent unasked were read as the next request's response.
#[test]
fn an_idle_upstream_connection_the_upstream_closed_or_spoke_on_is_not_reused() {
    use std::sync::atomic::Ordering::Relaxed;
    for stray in [false, true] {
        let (addr, accepted) = brief_keepalive(stray);
        let gw = Gangway::start_with(
            Options::new(config_with_routes(addr, "      - paths: [\"/\"]\n"))
                .env("GANGWAY_WORKERS", "1"),
        );
        let first = request(gw.proxy, "GET", "/x", &[], b"").expect("request");
        assert_eq!((first.status, first.text()), (200, "GET".into()));
        std::thread::sleep(std::time::Duration::from_millis(500));
        let post = request(
            gw.proxy,
            "POST",
            "/x",
            &[("content-type", "text/plain")],
            b"hi",
        )
        .expect("request");
        assert_eq!(
            (post.status, post.text()),
            (200, "POST".into()),
            "stray bytes: {stray}"
        );
        assert_eq!(
            accepted.load(Relaxed),
            2,
            "a new connection (stray: {stray})"
        );
    }
}

/// Kong's `set_host_header`: an upstream's `host_header` gets the target's port, unless it
/// is the scheme's default, as a target's own name does. It went without the port.
#[test]
fn an_upstream_host_header_carries_the_target_port() {
    let up = Upstream::start();
    let gw = Gangway::start(&format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: pool\n    host_header: api.internal\n    targets:\n      - target: {}\nservices:\n  - name: s\n    host: pool\n    routes:\n      - paths: [\"/h\"]\n",
        up.addr
    ));
    let r = request(gw.proxy, "GET", "/h", &[], b"").expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        echo_header(&r.json(), "host"),
        Some(format!("api.internal:{}", up.addr.port()))
    );
}
