//! rate-limiting end to end, with the harness's own redis-server processes: local counting per
//! node, Redis realtime counting in Kong's keys, restarts, Redis killed and paused, two nodes
//! on one Redis, a Redis Cluster resharded under load, and batched `sync_rate` counting.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gangway_test_support::redis::{Redis, RedisCluster};

use crate::harness::{Gangway, Options, Upstream, request};

const ROUTE_ID: &str = "7b1f3c2e-8d4a-4e6b-9f0a-1c2d3e4f5a6b";
const EMPTY: &str = "00000000-0000-0000-0000-000000000000";

/// A config with route `/limited` (fixed id, the plugin below on it) and `/plain` (none).
fn config(up: &Upstream, plugin_config: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://{}
    routes:
      - name: limited
        id: {ROUTE_ID}
        paths: ["/limited"]
        plugins:
          - name: rate-limiting
            config:
{plugin_config}
      - name: plain
        paths: ["/plain"]
"#,
        up.addr
    )
}

fn redis_config(redis: &Redis, limits: &str, extra: &str) -> String {
    format!(
        "              {limits}\n              policy: redis\n              redis:\n                host: 127.0.0.1\n                port: {}\n                timeout: 500\n{extra}",
        redis.port()
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits, if needed, until at least `room` is left in the current window of `seconds`, so a
/// test's requests all fall in one window.
fn away_from_window_end(seconds: i64, room: Duration) {
    let window_ms = seconds * 1000;
    let left = window_ms - now_ms().rem_euclid(window_ms);
    if left < room.as_millis() as i64 {
        std::thread::sleep(Duration::from_millis(left as u64 + 50));
    }
}

fn status_of(gw: &Gangway, path: &str) -> u16 {
    request(gw.proxy, "GET", path, &[], b"").map_or(0, |r| r.status)
}

/// The status of `/limited` for a request with `x-tenant: <tenant>`.
fn tenant_status(gw: &Gangway, tenant: &str) -> u16 {
    request(gw.proxy, "GET", "/limited", &[("x-tenant", tenant)], b"").map_or(0, |r| r.status)
}

/// `rate_limiting_local_max_keys` bounds the keys the local policy counts: a key past it
/// passes uncounted, and the keys already counted stay limited.
#[test]
fn the_local_policy_stops_taking_new_keys_at_its_bound() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config(
            &up,
            "              hour: 1\n              limit_by: header\n              header_name: x-tenant",
        ))
        .env("GANGWAY_RATE_LIMITING_LOCAL_MAX_KEYS", "2")
        .admin(),
    );
    away_from_window_end(3600, Duration::from_secs(30));
    let status = |tenant: &str| tenant_status(&gw, tenant);
    for tenant in ["a", "b"] {
        assert_eq!(status(tenant), 200);
        assert_eq!(status(tenant), 429, "{tenant} is counted");
    }
    for _ in 0..3 {
        assert_eq!(status("c"), 200, "past the bound, c passes uncounted");
    }
    assert_eq!(status("a"), 429, "a stays limited");
    assert_bound_reported(
        &gw,
        "local_uncounted",
        "gangway_ratelimit_local_uncounted_total",
        3,
    );
}

/// `/status` and `/metrics` both report `count` requests past `rate_limiting_local_max_keys`.
fn assert_bound_reported(gw: &Gangway, status_field: &str, metric: &str, count: u64) {
    let status = gw.admin("GET", "/status", &[], b"").json();
    assert_eq!(
        status["rate_limiting"][status_field].as_u64(),
        Some(count),
        "{status}"
    );
    let metrics = crate::metrics::scrape(gw);
    assert_eq!(
        crate::metrics::sample(&metrics, metric, &[]),
        Some(count as f64),
        "{metrics}"
    );
}

#[test]
fn the_local_policy_counts_once_per_node_across_its_workers() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config(&up, "              hour: 10")).env("KONG_NGINX_WORKER_PROCESSES", "2"),
    );
    away_from_window_end(3600, Duration::from_secs(30));
    let mut passed = 0;
    for i in 0..15 {
        // A new connection per request: SO_REUSEPORT spreads them over both workers.
        let r = gw.get("/limited");
        match r.status {
            200 => {
                passed += 1;
                assert_eq!(r.header("X-RateLimit-Limit-Hour"), Some("10"));
                let left = (10 - passed).to_string();
                assert_eq!(r.header("X-RateLimit-Remaining-Hour"), Some(left.as_str()));
                assert_eq!(r.header("RateLimit-Limit"), Some("10"));
            }
            429 => {
                assert!(i >= 10, "request {i} refused early");
                assert_eq!(r.json()["message"], "API rate limit exceeded");
                let retry: u64 = r
                    .header("Retry-After")
                    .expect("Retry-After")
                    .parse()
                    .expect("seconds");
                assert!((1..=3600).contains(&retry), "{retry}");
                assert_eq!(r.header("X-RateLimit-Remaining-Hour"), Some("0"));
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(passed, 10, "a limit of 10 per node, whatever the worker");
    assert_eq!(gw.get("/plain").status, 200, "other routes are not limited");
}

#[test]
fn redis_counts_in_kong_s_keys_and_survive_a_gangway_restart() {
    let up = Upstream::start();
    let redis = Redis::start();
    let yaml = config(
        &up,
        &redis_config(&redis, "hour: 5\n              day: 10", ""),
    );
    away_from_window_end(86_400, Duration::from_secs(30));
    let gw = Gangway::start_with(Options::new(yaml.clone()).admin());
    let round_trips = || {
        let status = gw.admin("GET", "/status", &[], b"").json();
        status["rate_limiting"]["redis_round_trips"]
            .as_u64()
            .expect("counted")
    };
    let mut before = 0;
    for left in ["4", "3", "2"] {
        let r = gw.get("/limited");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("X-RateLimit-Remaining-Hour"), Some(left));
        if left == "4" {
            // The first also asked the server's version (once per store).
            before = round_trips();
        }
    }
    assert_eq!(
        round_trips() - before,
        2,
        "one round trip per request for both periods"
    );
    let hour_ms = now_ms() / 3_600_000 * 3_600_000;
    let key = format!("ratelimit:{ROUTE_ID}:{EMPTY}:127.0.0.1:{hour_ms}:hour");
    assert_eq!(redis.cli(&["GET", &key]), "3", "Kong's key holds the count");
    let ttl: i64 = redis.cli(&["TTL", &key]).parse().expect("a ttl");
    assert!(
        (3500..=3600).contains(&ttl),
        "the window's length as TTL: {ttl}"
    );
    drop(gw);

    let gw = Gangway::start(&yaml);
    assert_eq!(gw.get("/limited").status, 200);
    assert_eq!(gw.get("/limited").status, 200);
    let r = gw.get("/limited");
    assert_eq!(r.status, 429, "the restart kept the count");
    assert_eq!(
        redis.cli(&["GET", &key]),
        "6",
        "realtime counts blocked requests too, as Kong"
    );
}

#[test]
fn redis_down_proxies_without_limits_when_fault_tolerant_and_counting_resumes() {
    let up = Upstream::start();
    let mut redis = Redis::start();
    let yaml = format!(
        "{}      - name: strict\n        paths: [\"/strict\"]\n        plugins:\n          - name: rate-limiting\n            config:\n{}              fault_tolerant: false\n",
        config(&up, &redis_config(&redis, "hour: 1000", "")),
        redis_config(&redis, "hour: 1000", "")
    );
    let gw = Gangway::start_with(Options::new(yaml).admin());
    assert!(
        gw.get("/limited")
            .header("X-RateLimit-Remaining-Hour")
            .is_some()
    );

    redis.kill();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        let r = gw.get("/limited");
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status, 200, "fault_tolerant proxies: {}", r.text());
        assert_eq!(
            r.header("X-RateLimit-Remaining-Hour"),
            None,
            "no headers without counts"
        );
    }
    assert!(
        // The bound is the 500 ms timeout; the margin is for a loaded CI machine, and still
        // far below what an unbounded wait on a dead server would cost.
        slowest < Duration::from_millis(1500),
        "a request waited {slowest:?} (timeout 500 ms)"
    );
    let strict = request(gw.proxy, "GET", "/strict", &[], b"").expect("strict");
    assert_eq!(strict.status, 500);
    assert_eq!(strict.json()["message"], "An unexpected error occurred");
    let status = gw.admin("GET", "/status", &[], b"").json();
    let failures = status["rate_limiting"]["redis_failures"]
        .as_u64()
        .expect("counted");
    assert!(failures >= 51, "every failed call is counted: {status}");
    let metrics = crate::metrics::scrape(&gw);
    let metric = |name: &str| crate::metrics::sample(&metrics, name, &[]).unwrap_or(-1.0);
    assert_eq!(
        metric("gangway_redis_failures_total"),
        failures as f64,
        "{metrics}"
    );
    assert!(metric("gangway_redis_calls_total") >= 1.0, "{metrics}");
    // The calls that reached a connection were timed, answered or failed.
    assert!(
        metric("gangway_redis_call_seconds_count") >= 1.0,
        "{metrics}"
    );
    assert!(
        crate::metrics::sample(
            &metrics,
            "gangway_redis_call_seconds_bucket",
            &["le=\"0.0005\""]
        )
        .is_some(),
        "a histogram with gangway's buckets: {metrics}"
    );
    let lines = gw.log().matches("rate-limiting: Redis").count();
    assert!(
        (1..=3).contains(&lines),
        "failures are logged, rate-limited: {lines} lines"
    );

    redis.restart();
    let started = Instant::now();
    loop {
        let r = gw.get("/limited");
        if r.header("X-RateLimit-Remaining-Hour").is_some() {
            assert_eq!(
                r.header("X-RateLimit-Remaining-Hour"),
                Some("999"),
                "a fresh Redis"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "counting did not resume"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_paused_redis_costs_at_most_the_timeout_and_stalls_nothing_else() {
    let up = Upstream::start();
    let redis = Redis::start();
    let gw = Gangway::start(&config(&up, &redis_config(&redis, "hour: 1000", "")));
    assert_eq!(gw.get("/limited").status, 200);
    redis.cli(&["CLIENT", "PAUSE", "3000", "ALL"]);
    let proxy = gw.proxy;
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let r = request(proxy, "GET", "/limited", &[], b"").expect("limited");
        (
            r.status,
            r.header("X-RateLimit-Remaining-Hour").map(str::to_owned),
            started.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(gw.get("/plain").status, 200);
    }
    let plain = started.elapsed();
    let (status, header, waited) = slow.join().expect("thread");
    assert_eq!(status, 200, "fault tolerant");
    assert_eq!(header, None);
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(2500),
        "bounded by the 500 ms timeout, not the 3 s pause: {waited:?}"
    );
    assert!(
        plain < Duration::from_millis(1500),
        "/plain stalled behind the paused Redis: {plain:?}"
    );
}

#[test]
fn two_nodes_on_one_redis_let_exactly_the_limit_through() {
    let up = Upstream::start();
    let redis = Redis::start();
    let yaml = config(&up, &redis_config(&redis, "minute: 100", ""));
    let a = Gangway::start(&yaml);
    // The second node shares one connection between its workers: both settings count alike.
    let b =
        Gangway::start_with(Options::new(yaml.clone()).env("GANGWAY_REDIS_CONNECTIONS", "shared"));
    away_from_window_end(60, Duration::from_secs(20));
    let passed: usize = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let proxy = if t % 2 == 0 { a.proxy } else { b.proxy };
                s.spawn(move || {
                    (0..125)
                        .filter(|_| {
                            request(proxy, "GET", "/limited", &[], b"").map_or(0, |r| r.status)
                                == 200
                        })
                        .count()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("thread")).sum()
    });
    assert_eq!(
        passed, 100,
        "1,000 requests over two nodes, a minute limit of 100"
    );
}

#[test]
fn a_redis_cluster_counts_exactly_through_a_resharding() {
    let up = Upstream::start();
    let cluster = RedisCluster::start(3);
    let seed = cluster.nodes[0].port();
    let plugin = format!(
        "              hour: 100000\n              policy: redis\n              redis:\n                timeout: 1000\n                cluster_nodes:\n                  - ip: 127.0.0.1\n                    port: {seed}\n"
    );
    let gw = Gangway::start(&config(&up, &plugin));
    away_from_window_end(3600, Duration::from_secs(60));
    let hour_ms = now_ms() / 3_600_000 * 3_600_000;
    let key = format!("ratelimit:{{{ROUTE_ID}:{EMPTY}:127.0.0.1}}:{hour_ms}:hour");
    let from = cluster.owner(&key);
    let to = (from + 1) % cluster.nodes.len();
    let slot: u16 = cluster.nodes[0]
        .cli(&["CLUSTER", "KEYSLOT", &key])
        .parse()
        .expect("slot");

    let proxy = gw.proxy;
    let load = std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut last = None;
        for _ in 0..400 {
            let r = request(proxy, "GET", "/limited", &[], b"").expect("request");
            assert_eq!(r.status, 200, "{}", r.text());
            sent += 1;
            last = r.header("X-RateLimit-Remaining-Hour").map(str::to_owned);
            assert!(
                last.is_some(),
                "request {sent} went uncounted during the resharding"
            );
        }
        (sent, last)
    });
    std::thread::sleep(Duration::from_millis(100));
    cluster.move_slot(slot, from, to);
    let (sent, last) = load.join().expect("load");
    assert_eq!(cluster.owner(&key), to, "the slot moved");
    let stored: u64 = cluster.nodes[to]
        .cli(&["GET", &key])
        .parse()
        .expect("count");
    assert_eq!(stored, sent, "every request counted once");
    assert_eq!(last.as_deref(), Some((100_000 - sent).to_string().as_str()));
}

#[test]
fn sync_rate_counts_on_the_node_and_flushes_in_batches() {
    let up = Upstream::start();
    let redis = Redis::start();
    let yaml = config(
        &up,
        &redis_config(&redis, "hour: 20", "              sync_rate: 0.2\n"),
    );
    away_from_window_end(3600, Duration::from_secs(30));
    let gw = Gangway::start(&yaml);
    let passed = (0..30)
        .filter(|_| status_of(&gw, "/limited") == 200)
        .count();
    assert_eq!(passed, 20, "one node alone is exact");
    let hour_ms = now_ms() / 3_600_000 * 3_600_000;
    let key = format!("ratelimit:{ROUTE_ID}:{EMPTY}:127.0.0.1:{hour_ms}:hour");
    let started = Instant::now();
    while redis.cli(&["GET", &key]) != "20" {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not flushed: {}",
            redis.cli(&["GET", &key])
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Two nodes, flushing every second: each sees the other only at its flushes, so the
    // documented bound is the limit plus what one node admits in between.
    let second = config(
        &up,
        &redis_config(&redis, "day: 50", "              sync_rate: 1\n"),
    );
    away_from_window_end(86_400, Duration::from_secs(30));
    let a = Gangway::start(&second);
    let b = Gangway::start(&second);
    let passed = (0..40).filter(|_| status_of(&a, "/limited") == 200).count()
        + (0..40).filter(|_| status_of(&b, "/limited") == 200).count();
    assert!(
        (50..=90).contains(&passed),
        "{passed} passed; the bound is 50 + 40"
    );
}

/// `rate_limiting_local_max_keys` bounds the windows a `sync_rate` store keeps: a key past it
/// is counted in Redis on every request (exact, and no memory on the node), while the keys
/// kept go on counting on the node until a flush.
#[test]
fn sync_rate_counts_keys_past_its_bound_in_redis_at_once() {
    let up = Upstream::start();
    let redis = Redis::start();
    let limits = "hour: 1\n              limit_by: header\n              header_name: x-tenant";
    let yaml = config(
        &up,
        &redis_config(&redis, limits, "              sync_rate: 60\n"),
    );
    away_from_window_end(3600, Duration::from_secs(30));
    let gw = Gangway::start_with(
        Options::new(yaml)
            .env("GANGWAY_RATE_LIMITING_LOCAL_MAX_KEYS", "2")
            .admin(),
    );
    let status = |tenant: &str| tenant_status(&gw, tenant);
    let hour_ms = now_ms() / 3_600_000 * 3_600_000;
    let key = |tenant: &str| format!("ratelimit:{ROUTE_ID}:{EMPTY}:{tenant}:{hour_ms}:hour");
    for tenant in ["a", "b"] {
        assert_eq!(status(tenant), 200);
        assert_eq!(status(tenant), 429, "{tenant} is counted on the node");
        assert_eq!(
            redis.cli(&["GET", &key(tenant)]),
            "",
            "{tenant}: not flushed yet"
        );
    }
    assert_eq!(status("c"), 200);
    assert_eq!(
        redis.cli(&["GET", &key("c")]),
        "1",
        "past the bound, counted in Redis"
    );
    assert_eq!(status("c"), 429, "and limited exactly");
    assert_eq!(status("a"), 429, "a stays limited");
    assert_bound_reported(
        &gw,
        "redis_counted_past_max_keys",
        "gangway_redis_counted_past_max_keys_total",
        2,
    );
}

#[test]
fn per_consumer_plans_apply_to_their_consumer_on_every_route() {
    let up = Upstream::start();
    // Two consumers on the same plan (one shared config), one on another, one without a
    // plan; a route-and-consumer instance beats the plan on /b for gold.
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://{}
    plugins:
      - name: key-auth
    routes:
      - name: a
        paths: ["/a"]
      - name: b
        paths: ["/b"]
        plugins:
          - name: rate-limiting
            consumer: gold
            config:
              hour: 1
consumers:
  - username: basic1
    keyauth_credentials: [{{key: k1}}]
    plugins:
      - name: rate-limiting
        config: {{hour: 2}}
  - username: basic2
    keyauth_credentials: [{{key: k2}}]
    plugins:
      - name: rate-limiting
        config: {{hour: 2}}
  - username: gold
    keyauth_credentials: [{{key: k3}}]
    plugins:
      - name: rate-limiting
        config: {{hour: 5}}
  - username: free
    keyauth_credentials: [{{key: k4}}]
"#,
        up.addr
    );
    let gw = Gangway::start(&yaml);
    away_from_window_end(3600, Duration::from_secs(30));
    let call = |path: &str, key: &str| {
        request(gw.proxy, "GET", path, &[("apikey", key)], b"").expect("request")
    };
    for key in ["k1", "k2"] {
        let r = call("/a", key);
        assert_eq!(
            r.header("X-RateLimit-Limit-Hour"),
            Some("2"),
            "{key}: the basic plan"
        );
        assert_eq!(call("/b", key).status, 200);
        assert_eq!(
            call("/a", key).status,
            429,
            "{key}: counted per consumer, over routes"
        );
    }
    assert_eq!(
        call("/a", "k3").header("X-RateLimit-Limit-Hour"),
        Some("5"),
        "gold plan"
    );
    let b = call("/b", "k3");
    assert_eq!(
        b.header("X-RateLimit-Limit-Hour"),
        Some("1"),
        "route+consumer beats the plan"
    );
    assert_eq!(call("/b", "k3").status, 429);
    assert_eq!(
        call("/a", "k3").status,
        200,
        "the plan's own count is separate"
    );
    let free = call("/a", "k4");
    assert_eq!(free.status, 200);
    assert_eq!(
        free.header("X-RateLimit-Limit-Hour"),
        None,
        "no plan, no limit"
    );
}

#[test]
fn redis_over_tls_with_an_acl_user_and_a_database_index() {
    let pki = crate::harness::pki::issue_pki();
    let mut redis = Redis::start_tls(&pki.server_cert_pem, &pki.server_key_pem, &pki.ca_pem);
    redis.cli(&["ACL", "SETUSER", "gateway", "on", ">s3cret", "~*", "+@all"]);
    redis.cli(&["ACL", "SETUSER", "default", "off"]);
    redis.cli_as("gateway", "s3cret");
    let dir = crate::harness::TempDir::new("redis-tls-ca");
    let ca = dir.path("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write ca.pem");
    let other_ca = dir.path("other-ca.pem");
    std::fs::write(&other_ca, crate::harness::pki::issue_pki().ca_pem).expect("write other ca");

    let up = Upstream::start();
    let tls = |extra: &str| {
        format!(
            "              hour: 100\n              policy: redis\n              redis:\n                host: 127.0.0.1\n                port: {}\n                timeout: 1000\n                ssl: true\n                ssl_verify: true\n                username: gateway\n                password: s3cret\n                database: 3\n{extra}",
            redis.port()
        )
    };
    let yaml = format!(
        "{}      - name: by-name\n        paths: [\"/by-name\"]\n        plugins:\n          - name: rate-limiting\n            config:\n{}      - name: wrong-password\n        paths: [\"/wrong-password\"]\n        plugins:\n          - name: rate-limiting\n            config:\n{}",
        config(&up, &tls("")),
        tls("                server_name: redis.internal\n"),
        tls("").replace("s3cret", "wrong")
    );
    away_from_window_end(3600, Duration::from_secs(30));
    let gw = Gangway::start_with(Options::new(yaml.clone()).admin().env(
        "KONG_LUA_SSL_TRUSTED_CERTIFICATE",
        ca.to_str().expect("utf-8"),
    ));
    for path in ["/limited", "/limited", "/by-name"] {
        let r = gw.get(path);
        assert_eq!(r.status, 200);
        assert!(
            r.header("X-RateLimit-Remaining-Hour").is_some(),
            "{path} counted over TLS as the ACL user\n{}",
            gw.log()
        );
    }
    let hour_ms = now_ms() / 3_600_000 * 3_600_000;
    let key = format!("ratelimit:{ROUTE_ID}:{EMPTY}:127.0.0.1:{hour_ms}:hour");
    assert_eq!(
        redis.cli(&["-n", "3", "GET", &key]),
        "2",
        "database 3 holds the count"
    );
    assert_eq!(
        redis.cli(&["-n", "0", "DBSIZE"]),
        "0",
        "database 0 is untouched"
    );
    let refused = gw.get("/wrong-password");
    assert_eq!(refused.status, 200, "fault tolerant");
    assert_eq!(
        refused.header("X-RateLimit-Remaining-Hour"),
        None,
        "a bad password counts nothing"
    );
    drop(gw);

    let untrusting = Gangway::start_with(Options::new(yaml).admin().env(
        "KONG_LUA_SSL_TRUSTED_CERTIFICATE",
        other_ca.to_str().expect("utf-8"),
    ));
    let r = untrusting.get("/limited");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("X-RateLimit-Remaining-Hour"),
        None,
        "a server certificate from another CA is refused"
    );
    let status = untrusting.admin("GET", "/status", &[], b"").json();
    assert!(
        status["rate_limiting"]["redis_failures"].as_u64() >= Some(1),
        "{status}"
    );
}

#[test]
fn the_cluster_policy_counts_in_postgres_for_every_node() {
    use crate::harness::postgres::{Postgres, PostgresExt};
    let pg = Postgres::start();
    pg.bootstrap();
    let up = Upstream::start();
    let a = Gangway::start_with(pg.node_options().admin());
    let b = Gangway::start_with(pg.node_options());
    let post = |path: &str, body: serde_json::Value| {
        let r = a.admin(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "POST {path}: {}", r.text());
        r.json()
    };
    post(
        "/services",
        serde_json::json!({"name": "api", "url": format!("http://{}", up.addr)}),
    );
    let route = post(
        "/services/api/routes",
        serde_json::json!({"name": "r", "paths": ["/api"]}),
    );
    post(
        "/routes/r/plugins",
        serde_json::json!({"name": "rate-limiting", "config": {"hour": 4, "policy": "cluster"}}),
    );
    away_from_window_end(3600, Duration::from_secs(30));
    for gw in [&a, &b] {
        let started = Instant::now();
        while request(gw.proxy, "GET", "/api", &[], b"")
            .map_or(true, |r| r.header("X-RateLimit-Limit-Hour").is_none())
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the plugin never arrived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Both nodes' first requests above counted; the increments land off the request path.
    let count = || {
        pg.psql("select coalesce(sum(value), 0) from ratelimiting_metrics where period = 'hour'")
    };
    let started = Instant::now();
    while count() != "2" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "counted {}",
            count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let route_id = route["id"].as_str().expect("route id");
    let stored = pg.psql(
        "select identifier, service_id, route_id from ratelimiting_metrics where period = 'hour'",
    );
    assert_eq!(
        stored,
        format!("127.0.0.1|{EMPTY}|{route_id}"),
        "Kong's columns: the plugin's scope is the route alone"
    );
    assert_eq!(status_of(&a, "/api"), 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(status_of(&b, "/api"), 200, "the fourth, on the other node");
    std::thread::sleep(Duration::from_millis(200));
    let r = request(a.proxy, "GET", "/api", &[], b"").expect("request");
    assert_eq!(r.status, 429, "node a sees node b's count");
    assert_eq!(count(), "4", "refused requests are not counted, as Kong");
}

#[test]
fn redis_sentinel_names_the_master_that_counts() {
    let master = Redis::start();
    let sentinel = Redis::start_sentinel("quota", master.port());
    let up = Upstream::start();
    let plugin = format!(
        "              hour: 100\n              policy: redis\n              redis:\n                timeout: 1000\n                sentinel_master: quota\n                sentinel_nodes:\n                  - host: 127.0.0.1\n                    port: {}\n",
        sentinel.port()
    );
    away_from_window_end(3600, Duration::from_secs(30));
    let gw = Gangway::start(&config(&up, &plugin));
    for left in ["99", "98"] {
        let r = gw.get("/limited");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("X-RateLimit-Remaining-Hour"),
            Some(left),
            "counted through the sentinel's master\n{}",
            gw.log()
        );
    }
    let hour_ms = now_ms() / 3_600_000 * 3_600_000;
    let key = format!("ratelimit:{ROUTE_ID}:{EMPTY}:127.0.0.1:{hour_ms}:hour");
    assert_eq!(master.cli(&["GET", &key]), "2");
}

#[test]
fn sync_rate_flushes_to_a_redis_cluster() {
    let up = Upstream::start();
    let cluster = RedisCluster::start(3);
    let seed = cluster.nodes[0].port();
    let plugin = format!(
        "              hour: 100000\n              policy: redis\n              sync_rate: 0.2\n              redis:\n                cluster_nodes:\n                  - ip: 127.0.0.1\n                    port: {seed}\n"
    );
    let gw = Gangway::start(&config(&up, &plugin));
    away_from_window_end(3600, Duration::from_secs(30));
    let hour_ms = now_ms() / 3_600_000 * 3_600_000;
    let key = format!("ratelimit:{{{ROUTE_ID}:{EMPTY}:127.0.0.1}}:{hour_ms}:hour");
    for _ in 0..25 {
        let r = request(gw.proxy, "GET", "/limited", &[], b"").expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("X-RateLimit-Remaining-Hour").is_some(), "counted");
    }
    let owner = cluster.owner(&key);
    let started = Instant::now();
    while cluster.nodes[owner].cli(&["GET", &key]) != "25" {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not flushed to the slot's owner: {:?}",
            cluster.nodes[owner].cli(&["GET", &key])
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ttl: i64 = cluster.nodes[owner]
        .cli(&["TTL", &key])
        .parse()
        .expect("ttl");
    assert!((1..=3600).contains(&ttl), "expires with its window: {ttl}");
}
