//! Upstream names resolved through a real DNS exchange (a test nameserver on loopback):
//! record TTLs are honoured, a failing resolver falls back to the stale answer, and a name
//! that does not resolve is Kong's 503.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::dns::DnsServer;
use crate::harness::{Gangway, Options, Upstream};

const NAME: &str = "svc.gangway.test";

fn start(dns: &DnsServer, port: u16) -> Gangway {
    let config = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: named\n    url: http://{NAME}:{port}\n    routes:\n      - paths: [\"/named\"]\n  - name: nowhere\n    url: http://nowhere.gangway.test:{port}\n    routes:\n      - paths: [\"/nowhere\"]\n"
    );
    // One worker: each worker keeps its own cache, so query counts are per worker.
    Gangway::start_with(
        Options::new(config)
            .env("GANGWAY_WORKERS", "1")
            .env("KONG_DNS_RESOLVER", dns.addr.to_string()),
    )
}

#[test]
fn record_ttls_are_honoured_and_stale_answers_cover_resolver_failures() {
    let first = Upstream::start();
    let port = first.addr.port();
    let second = Upstream::start_on(SocketAddr::from(([127, 0, 0, 2], port)));
    let dns = DnsServer::start(NAME, Ipv4Addr::new(127, 0, 0, 1), 1);
    let gw = start(&dns, port);

    for _ in 0..3 {
        assert_eq!(gw.get("/named").status, 200);
    }
    assert_eq!(first.requests.load(Ordering::Relaxed), 3);
    assert_eq!(
        dns.queries.load(Ordering::Relaxed),
        1,
        "cached within the TTL"
    );

    // The record moves; once its 1 s TTL has passed, the next request still gets the old
    // answer while it is refreshed, and traffic then follows the record.
    dns.set_answer(Some((Ipv4Addr::new(127, 0, 0, 2), 1)));
    std::thread::sleep(Duration::from_millis(1300));
    follow(&gw, &second, 1);
    assert_eq!(dns.queries.load(Ordering::Relaxed), 2);
    assert!(
        first.requests.load(Ordering::Relaxed) >= 4,
        "the stale answer was served"
    );

    // The nameserver goes silent: the expired answer is served at once (dns_stale_ttl)
    // while a background refresh asks again.
    dns.set_answer(None);
    std::thread::sleep(Duration::from_millis(1300));
    let asked = Instant::now();
    assert_eq!(gw.get("/named").status, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "not held up by the silent nameserver"
    );
    assert!(second.requests.load(Ordering::Relaxed) >= 2);
    let deadline = Instant::now() + Duration::from_secs(3);
    while dns.queries.load(Ordering::Relaxed) < 3 {
        assert!(
            Instant::now() < deadline,
            "the stale answer is being refreshed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The nameserver is back with a new address: the refresh picks it up.
    dns.set_answer(Some((Ipv4Addr::new(127, 0, 0, 1), 1)));
    let before = first.requests.load(Ordering::Relaxed);
    follow(&gw, &first, before + 1);
}

/// Sends requests (for at most 8 s) until `upstream` has served `n`.
fn follow(gw: &Gangway, upstream: &Upstream, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(8);
    while upstream.requests.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "traffic follows the record");
        assert_eq!(gw.get("/named").status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_name_that_does_not_resolve_is_kongs_503() {
    let up = Upstream::start();
    let dns = DnsServer::start(NAME, Ipv4Addr::new(127, 0, 0, 1), 1);
    let gw = start(&dns, up.addr.port());
    let r = gw.get("/nowhere");
    assert_eq!(r.status, 503);
    assert!(
        r.text()
            .starts_with("The upstream server is currently unavailable"),
        "{}",
        r.text()
    );
    assert!(gw.log().contains("name resolution failed"), "logged");
}

/// One `kong_upstream_target_health` sample line, as gangway and Kong write it.
fn health_line(upstream: &str, target: &str, address: &str, state: &str, value: u8) -> String {
    format!(
        "kong_upstream_target_health{{upstream=\"{upstream}\",target=\"{target}\",address=\"{address}\",state=\"{state}\",subsystem=\"http\"}} {value}"
    )
}

#[test]
fn target_health_names_each_resolved_address_and_a_name_that_fails_is_a_dns_error() {
    let up = Upstream::start();
    let port = up.addr.port();
    let dns = DnsServer::start(NAME, Ipv4Addr::new(127, 0, 0, 1), 1);
    let config = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: named
    targets:
      - target: {NAME}:{port}
  - name: lost
    targets:
      - target: nowhere.gangway.test:{port}
services:
  - name: named
    host: named
    routes:
      - paths: ["/named"]
  - name: lost
    host: lost
    routes:
      - paths: ["/lost"]
plugins:
  - name: prometheus
    config:
      upstream_health_metrics: true
"#
    );
    let gw =
        Gangway::start_with(Options::new(config).env("KONG_DNS_RESOLVER", dns.addr.to_string()));
    let named = format!("{NAME}:{port}");
    let lost = format!("nowhere.gangway.test:{port}");
    // Before any lookup, the target stands for its addresses.
    let text = crate::metrics::scrape(&gw);
    let unresolved = health_line("named", &named, &named, "healthchecks_off", 1);
    assert!(text.contains(&unresolved), "{unresolved}:\n{text}");

    assert_eq!(gw.get("/named").status, 200);
    assert!(gw.get("/lost").status >= 500);
    let resolved = health_line(
        "named",
        &named,
        &format!("127.0.0.1:{port}"),
        "healthchecks_off",
        1,
    );
    let dns_error = health_line("lost", &lost, "", "dns_error", 1);
    let text =
        crate::metrics::scrape_until(&gw, |t| t.contains(&resolved) && t.contains(&dns_error));
    assert!(text.contains(&resolved), "{resolved}:\n{text}");
    assert!(text.contains(&dns_error), "{dns_error}:\n{text}");
    assert!(!text.contains(&unresolved), "{text}");
    assert!(
        text.contains(&health_line("lost", &lost, "", "healthy", 0)),
        "every state has its series: {text}"
    );

    // The record moves: once a lookup has the new answer, only the new address is reported.
    dns.set_answer(Some((Ipv4Addr::new(127, 0, 0, 2), 1)));
    let moved = health_line(
        "named",
        &named,
        &format!("127.0.0.2:{port}"),
        "healthchecks_off",
        1,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while !text.contains(&moved) && Instant::now() < deadline {
        let _ = gw.get("/named");
        std::thread::sleep(Duration::from_millis(200));
        text = crate::metrics::scrape(&gw);
    }
    assert!(text.contains(&moved), "{moved}:\n{text}");
    assert!(!text.contains(&resolved), "no stale series: {text}");
}

/// An upstream on 127.0.0.1, and a nameserver that answers [`NAME`] with it and with
/// 127.0.0.`dead`, where nothing listens on its port (connections are refused).
fn live_and_dead_addresses(dead: u8) -> (Upstream, DnsServer) {
    let live = Upstream::start();
    let dns = DnsServer::start(NAME, Ipv4Addr::new(127, 0, 0, 1), 60);
    dns.set_answers(
        &[Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, dead)],
        60,
    );
    (live, dns)
}

#[test]
fn each_address_of_a_name_has_its_own_health_and_the_admin_api_shows_and_sets_it() {
    let (live, dns) = live_and_dead_addresses(3);
    let port = live.addr.port();
    let config = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: pool
    healthchecks:
      passive:
        unhealthy:
          tcp_failures: 1
    targets:
      - target: {NAME}:{port}
  - name: quiet
    targets:
      - target: 127.0.0.1:{port}
services:
  - name: pool
    host: pool
    routes:
      - paths: ["/pool"]
plugins:
  - name: prometheus
    config:
      upstream_health_metrics: true
"#
    );
    let gw = Gangway::start_with(
        Options::new(config)
            .admin()
            .env("KONG_DNS_RESOLVER", dns.addr.to_string()),
    );
    let target = format!("{NAME}:{port}");
    let (good, bad) = (format!("127.0.0.1:{port}"), format!("127.0.0.3:{port}"));

    // The refused address is marked down on its first failure and the request is retried
    // on the other; no request fails, and every one reaches the live address.
    for _ in 0..10 {
        assert_eq!(gw.get("/pool").status, 200);
    }
    assert_eq!(live.requests.load(Ordering::Relaxed), 10);
    assert!(
        gw.log().contains("target address marked unhealthy"),
        "logged"
    );

    let health = |gw: &Gangway| gw.admin("GET", "/upstreams/pool/health", &[], b"").json();
    let shown = health(&gw);
    let entry = &shown["data"][0];
    assert_eq!(
        entry["health"], "HEALTHY",
        "one address still serves: {shown}"
    );
    assert_eq!(entry["target"], target.as_str());
    let addresses = &entry["data"]["addresses"];
    assert_eq!(addresses[0]["ip"], "127.0.0.1", "{shown}");
    assert_eq!(addresses[0]["health"], "HEALTHY", "{shown}");
    assert_eq!(addresses[1]["ip"], "127.0.0.3", "{shown}");
    assert_eq!(addresses[1]["health"], "UNHEALTHY", "{shown}");
    assert_eq!(addresses[1]["port"], port);
    assert_eq!(entry["data"]["weight"]["total"], 200, "{shown}");
    assert_eq!(entry["data"]["weight"]["unavailable"], 100, "{shown}");
    assert_eq!(entry["data"]["dns"], "A");

    let text = crate::metrics::scrape(&gw);
    for line in [
        health_line("pool", &target, &good, "healthy", 1),
        health_line("pool", &target, &bad, "unhealthy", 1),
        health_line("pool", &target, &bad, "healthy", 0),
    ] {
        assert!(text.contains(&line), "{line}:\n{text}");
    }

    // An operator brings the address back, and takes the whole target down and up.
    let put = |path: String| gw.admin("PUT", &path, &[], b"");
    let r = put(format!("/upstreams/pool/targets/{target}/{bad}/healthy"));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        health(&gw)["data"][0]["data"]["addresses"][1]["health"],
        "HEALTHY"
    );
    let r = put(format!(
        "/upstreams/pool/targets/{target}/127.0.0.9:{port}/healthy"
    ));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "target not found");
    let r = put(format!(
        "/upstreams/pool/targets/{target}/127.0.0.3:http/healthy"
    ));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "invalid address '127.0.0.3:http'");

    let r = put(format!("/upstreams/pool/targets/{target}/unhealthy"));
    assert_eq!(r.status, 204, "{}", r.text());
    let shown = health(&gw);
    assert_eq!(shown["data"][0]["health"], "UNHEALTHY", "{shown}");
    assert_eq!(gw.get("/pool").status, 503, "no healthy address is left");
    let balancer = gw
        .admin("GET", "/upstreams/pool/health?balancer_health=1", &[], b"")
        .json();
    assert_eq!(balancer["data"]["health"], "UNHEALTHY", "{balancer}");
    assert_eq!(balancer["data"]["details"]["healthy"], false, "{balancer}");
    assert_eq!(
        balancer["data"]["details"]["hosts"][0]["addresses"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{balancer}"
    );

    let id = shown["data"][0]["id"]
        .as_str()
        .expect("target id")
        .to_owned();
    let r = put(format!("/upstreams/pool/targets/{id}/healthy"));
    assert_eq!(r.status, 204, "addressed by id: {}", r.text());
    assert_eq!(gw.get("/pool").status, 200);
    let balancer = gw
        .admin("GET", "/upstreams/pool/health?balancer_health=1", &[], b"")
        .json();
    assert_eq!(balancer["data"]["health"], "HEALTHY", "{balancer}");

    // Kong's answers for an upstream without health checks, and for unknown targets.
    let r = put(format!(
        "/upstreams/quiet/targets/127.0.0.1:{port}/unhealthy"
    ));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "no healthchecker found for quiet");
    assert_eq!(
        put("/upstreams/pool/targets/nope:1/healthy".into()).status,
        404
    );
    assert_eq!(
        put("/upstreams/nope/targets/nope:1/healthy".into()).status,
        404
    );
    assert_eq!(
        gw.admin(
            "GET",
            &format!("/upstreams/pool/targets/{target}/healthy"),
            &[],
            b""
        )
        .status,
        405
    );
}

#[test]
fn active_checks_probe_every_address_a_name_resolves_to() {
    let (live, dns) = live_and_dead_addresses(4);
    let port = live.addr.port();
    // No retries and no passive checks: only the probes keep requests off the dead address.
    let config = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: pool
    healthchecks:
      active:
        http_path: /health
        timeout: 1
        healthy:
          interval: 1
          successes: 1
        unhealthy:
          interval: 1
          tcp_failures: 1
    targets:
      - target: {NAME}:{port}
services:
  - name: pool
    host: pool
    retries: 0
    routes:
      - paths: ["/pool"]
"#
    );
    let gw = Gangway::start_with(
        Options::new(config)
            .admin()
            .env("KONG_DNS_RESOLVER", dns.addr.to_string()),
    );
    let dead = "127.0.0.4";
    let wait_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gw
            .log()
            .lines()
            .any(|l| l.contains(needle) && l.contains(dead))
        {
            assert!(Instant::now() < deadline, "no '{needle}' for {dead}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_log("active check: target address unhealthy");
    // Without retries, a request sent to the dead address would be a 502.
    for _ in 0..10 {
        assert_eq!(
            gw.get("/pool").status,
            200,
            "the dead address gets no traffic"
        );
    }
    let shown = gw.admin("GET", "/upstreams/pool/health", &[], b"").json();
    assert_eq!(shown["data"][0]["health"], "HEALTHY", "{shown}");
    assert_eq!(
        shown["data"][0]["data"]["addresses"][1]["health"], "UNHEALTHY",
        "{shown}"
    );

    // The address comes up: the next probe puts it back in rotation.
    let revived = Upstream::start_on(SocketAddr::from(([127, 0, 0, 4], port)));
    wait_log("active check: target address healthy");
    for _ in 0..10 {
        assert_eq!(gw.get("/pool").status, 200);
    }
    let served = revived.requests.load(Ordering::Relaxed);
    assert!(served >= 3, "round robin reaches it again: {served} of 10");
}

#[test]
fn a_name_whose_addresses_all_failed_comes_back_when_it_resolves_elsewhere() {
    let live = Upstream::start();
    let port = live.addr.port();
    // At first the name points only at 127.0.0.5, where nothing listens.
    let dns = DnsServer::start(NAME, Ipv4Addr::new(127, 0, 0, 5), 1);
    let config = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: pool
    healthchecks:
      passive:
        unhealthy:
          tcp_failures: 1
    targets:
      - target: {NAME}:{port}
services:
  - name: pool
    host: pool
    retries: 0
    routes:
      - paths: ["/pool"]
"#
    );
    let gw =
        Gangway::start_with(Options::new(config).env("KONG_DNS_RESOLVER", dns.addr.to_string()));
    assert_eq!(gw.get("/pool").status, 502, "the only address refuses");
    assert_eq!(gw.get("/pool").status, 503, "and is marked down");

    // The record moves to a live address. No request picks a target with no healthy
    // address, so only gangway's own lookup can find it; passive checks alone never
    // bring an address back.
    dns.set_answer(Some((Ipv4Addr::new(127, 0, 0, 1), 1)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.get("/pool").status != 200 {
        assert!(Instant::now() < deadline, "the target never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(live.requests.load(Ordering::Relaxed) >= 1);
}
