//! The rate-limiting plugin on a clock the tests move: Kong's schema rules, windows, keys,
//! headers and failure modes.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::*;
use gangway_config::ConfigErrors;
use gangway_http::{Limits, RequestHead, parse_request};
use gangway_pipeline::identity::Identities;
use gangway_pipeline::quota::{QuotaError, local::LocalCounters};
use gangway_pipeline::{RequestState, Response, ResponseBody};
use gangway_router::MatchScratch;

thread_local! {
    static NOW_MS: Cell<i64> = const { Cell::new(0) };
}

fn test_clock() -> i64 {
    NOW_MS.with(Cell::get)
}

fn set_now(ms: i64) {
    NOW_MS.with(|n| n.set(ms));
}

fn validate(config: Value) -> Result<Value, String> {
    let mut errors = ConfigErrors::default();
    let filled = schema().validate(Some(&config), "config", &mut errors);
    if errors.is_empty() {
        Ok(filled)
    } else {
        Err(errors.to_string())
    }
}

fn plugin_on(config: Value, quotas: &Quotas) -> Box<dyn Plugin> {
    let config = validate(config).expect("valid config");
    let build = Build {
        config: &config,
        route: Some(ROUTE),
        service: None,
        quotas,
        client_body_buffer_size: 8192,
    };
    match build_with_clock(&build, test_clock) {
        Ok(plugin) => plugin,
        Err(problems) => panic!("{problems:?}"),
    }
}

const ROUTE: uuid::Uuid = uuid::uuid!("5a0e4a6c-6d6c-4d4e-9c1e-2f3a4b5c6d7e");

/// What a request got: its answer (if the plugin made one) and the response headers set.
struct Outcome {
    answer: Option<Response>,
    headers: Vec<(String, String)>,
}

impl Outcome {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn status(&self) -> u16 {
        self.answer.as_ref().map_or(200, |r| r.status)
    }
}

fn request(plugin: &dyn Plugin, raw: &[u8]) -> Outcome {
    let mut head = RequestHead::default();
    parse_request(raw, &Limits::default(), &mut head).expect("request parses");
    let identities = Identities::default();
    let scratch = MatchScratch::default();
    let mut state = RequestState::default();
    state.reset(1);
    let id = [b'0'; 32];
    let mut ctx = AccessCtx {
        head: &head,
        buf: raw,
        captures: &scratch,
        client_ip: std::net::IpAddr::from([192, 0, 2, 7]),
        tls: false,
        identities: &identities,
        route: None,
        route_match: None,
        service: None,
        request_id: &id,
        state: &mut state,
        step: 0,
    };
    let flow = match plugin.access(&mut ctx) {
        Flow::Await(Pending(future)) => {
            let output = ready(future);
            plugin.resume(&mut ctx, output)
        }
        flow => flow,
    };
    let answer = match flow {
        Flow::Respond(r) => Some(r),
        Flow::Continue | Flow::Await(_) => None,
    };
    let headers = state
        .response_headers
        .added()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    Outcome { answer, headers }
}

fn get(plugin: &dyn Plugin) -> Outcome {
    request(plugin, b"GET /orders HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// The output of a future that must not wait (the test stores answer at once).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the test store waited"),
    }
}

/// 2026-12-03T10:15:30Z.
const NOW: i64 = 1_796_292_930_000;

#[test]
fn a_minute_limit_allows_that_many_requests_then_answers_kong_s_429() {
    set_now(NOW);
    let quotas = Quotas::default();
    let plugin = plugin_on(json!({"minute": 3}), &quotas);
    for left in ["2", "1", "0"] {
        let out = get(&*plugin);
        assert_eq!(out.status(), 200);
        assert_eq!(out.header("X-RateLimit-Limit-Minute"), Some("3"));
        assert_eq!(out.header("X-RateLimit-Remaining-Minute"), Some(left));
        assert_eq!(out.header("RateLimit-Limit"), Some("3"));
        assert_eq!(out.header("RateLimit-Remaining"), Some(left));
        assert_eq!(out.header("RateLimit-Reset"), Some("30"));
        assert_eq!(out.header("Retry-After"), None);
    }
    let out = get(&*plugin);
    assert_eq!(out.status(), 429);
    assert_eq!(out.header("Retry-After"), Some("30"));
    assert_eq!(out.header("X-RateLimit-Remaining-Minute"), Some("0"));
    let answer = out.answer.expect("an answer");
    assert!(
        matches!(&answer.body, ResponseBody::Error(m) if m == "API rate limit exceeded"),
        "{:?}",
        answer.body
    );
    // Kong's local policy does not count blocked requests.
    let window = Window {
        scope: format!("ratelimit:{ROUTE}:{EMPTY_UUID}:").into(),
        identifier: "192.0.2.7".into(),
        period: "minute",
        start_ms: Period::Minute.start_ms(NOW),
        seconds: 60,
    };
    assert_eq!(
        window.key(),
        format!(
            "ratelimit:{ROUTE}:{EMPTY_UUID}:192.0.2.7:{}:minute",
            Period::Minute.start_ms(NOW)
        ),
        "Kong's key"
    );
    assert_eq!(quotas.local.count(&window), 3, "three counted");
}

#[test]
fn second_59_999_and_60_000_fall_in_different_minute_windows() {
    let quotas = Quotas::default();
    let plugin = plugin_on(json!({"minute": 1}), &quotas);
    let minute_end = Period::Minute.start_ms(NOW) + 60_000;
    set_now(minute_end - 1);
    assert_eq!(get(&*plugin).status(), 200);
    let out = get(&*plugin);
    assert_eq!(out.status(), 429);
    assert_eq!(out.header("Retry-After"), Some("1"), "at least one second");
    set_now(minute_end);
    let out = get(&*plugin);
    assert_eq!(out.status(), 200, "a new minute");
    assert_eq!(out.header("RateLimit-Reset"), Some("60"));
}

#[test]
fn month_windows_roll_over_on_the_first_utc() {
    let quotas = Quotas::default();
    let plugin = plugin_on(json!({"month": 2}), &quotas);
    // 2026-11-30T23:59:59Z: November has 30 days.
    let last_second_of_november = 1_796_083_199_000;
    set_now(last_second_of_november);
    assert_eq!(get(&*plugin).status(), 200);
    let out = get(&*plugin);
    assert_eq!(out.status(), 200);
    assert_eq!(out.header("X-RateLimit-Remaining-Month"), Some("0"));
    assert_eq!(get(&*plugin).status(), 429);
    set_now(last_second_of_november + 1_000);
    let out = get(&*plugin);
    assert_eq!(out.status(), 200, "December 1st starts a new month");
    assert_eq!(out.header("X-RateLimit-Remaining-Month"), Some("1"));
    assert_eq!(
        out.header("RateLimit-Reset"),
        Some("2592000"),
        "Kong's 30-day month window"
    );
}

#[test]
fn rate_limit_headers_follow_the_least_remaining_with_ties_to_the_longer_window() {
    set_now(NOW);
    let quotas = Quotas::default();
    let plugin = plugin_on(json!({"second": 5, "hour": 5}), &quotas);
    let out = get(&*plugin);
    assert_eq!(out.header("X-RateLimit-Remaining-Second"), Some("4"));
    assert_eq!(out.header("X-RateLimit-Remaining-Hour"), Some("4"));
    // A tie: the hour wins, so the reset is the hour's 44 min 30 s.
    assert_eq!(out.header("RateLimit-Reset"), Some("2670"));
    set_now(NOW + 1_000);
    let out = get(&*plugin);
    assert_eq!(out.header("X-RateLimit-Remaining-Second"), Some("4"));
    assert_eq!(out.header("X-RateLimit-Remaining-Hour"), Some("3"));
    assert_eq!(out.header("RateLimit-Remaining"), Some("3"));
}

#[test]
fn hide_client_headers_and_custom_errors() {
    set_now(NOW);
    let quotas = Quotas::default();
    let plugin = plugin_on(
        json!({"second": 1, "hide_client_headers": true, "error_code": 503, "error_message": "slow down"}),
        &quotas,
    );
    assert!(get(&*plugin).headers.is_empty());
    let out = get(&*plugin);
    assert_eq!(out.status(), 503);
    assert!(out.headers.is_empty(), "{:?}", out.headers);
    assert!(matches!(out.answer.expect("answer").body, ResponseBody::Error(m) if m == "slow down"));
}

#[test]
fn limit_by_header_counts_per_value_and_falls_back_to_the_client_ip() {
    set_now(NOW);
    let quotas = Quotas::default();
    let plugin = plugin_on(
        json!({"minute": 1, "limit_by": "header", "header_name": "X-Tenant"}),
        &quotas,
    );
    let tenant = |t: &str| {
        request(
            &*plugin,
            format!("GET / HTTP/1.1\r\nHost: x\r\nx-tenant: {t}\r\n\r\n").as_bytes(),
        )
        .status()
    };
    assert_eq!(tenant("a"), 200);
    assert_eq!(tenant("a"), 429);
    assert_eq!(tenant("b"), 200);
    assert_eq!(get(&*plugin).status(), 200, "no header: the client IP");
    assert_eq!(get(&*plugin).status(), 429);
}

#[test]
fn limit_by_path_counts_only_the_configured_path() {
    set_now(NOW);
    let quotas = Quotas::default();
    let plugin = plugin_on(
        json!({"minute": 1, "limit_by": "path", "path": "/orders"}),
        &quotas,
    );
    assert_eq!(get(&*plugin).status(), 200);
    assert_eq!(get(&*plugin).status(), 429);
    let other = request(&*plugin, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(other.status(), 200, "another path counts by IP");
}

/// A store that fails every usage, and counts the refunds it is asked for.
struct Down(Arc<AtomicUsize>);

impl QuotaStore for Down {
    fn usage(&self, _windows: &[Window]) -> Usage {
        Usage::Pending(Box::pin(async {
            Err(QuotaError::Store("connection refused".into()))
        }))
    }
    fn increment(&self, _windows: &[Window]) {}
    fn refund(&self, _windows: &[Window]) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct DownRedis(Arc<AtomicUsize>);

impl gangway_pipeline::quota::RedisQuotas for DownRedis {
    fn store(&self, _conf: &RedisConf, _mode: RedisMode) -> Result<Arc<dyn QuotaStore>, String> {
        Ok(Arc::new(Down(self.0.clone())))
    }

    fn counters(&self) -> gangway_pipeline::quota::RedisCounters {
        Default::default()
    }
}

#[test]
fn a_store_failure_proxies_without_headers_when_fault_tolerant_else_500() {
    set_now(NOW);
    let down = Arc::new(DownRedis::default());
    let refunds = down.0.clone();
    let quotas = Quotas {
        redis: Some(down),
        ..Quotas::default()
    };
    let redis = json!({"minute": 1, "policy": "redis", "redis": {"host": "127.0.0.1"}});
    let tolerant = plugin_on(redis.clone(), &quotas);
    for _ in 0..3 {
        let out = get(&*tolerant);
        assert_eq!(out.status(), 200);
        assert!(out.headers.is_empty());
    }
    assert_eq!(
        refunds.load(Ordering::Relaxed),
        0,
        "a request proxied counts, as in Kong"
    );
    let mut strict = redis;
    strict["fault_tolerant"] = json!(false);
    let strict = plugin_on(strict, &quotas);
    let out = get(&*strict);
    assert_eq!(out.status(), 500);
    assert!(
        matches!(out.answer.expect("answer").body, ResponseBody::Error(m) if m == "An unexpected error occurred")
    );
    assert_eq!(
        refunds.load(Ordering::Relaxed),
        1,
        "a request refused with 500 is taken back from the windows the store counted"
    );
}

#[test]
fn counts_survive_a_rebuild_of_the_instance() {
    set_now(NOW);
    let quotas = Quotas::default();
    let first = plugin_on(json!({"minute": 2}), &quotas);
    assert_eq!(get(&*first).status(), 200);
    let rebuilt = plugin_on(json!({"minute": 2, "hour": 10}), &quotas);
    assert_eq!(get(&*rebuilt).status(), 200);
    assert_eq!(
        get(&*rebuilt).status(),
        429,
        "the reload kept the minute's count"
    );
}

#[test]
fn kong_s_schema_rules() {
    let err = |config: Value| validate(config).expect_err("invalid");
    assert!(err(json!({"second": 10, "minute": 5})).contains(
        "config: The limit for minute(5.0) cannot be lower than the limit for second(10.0)"
    ));
    assert!(err(json!({})).contains(
        "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"
    ));
    assert!(
        err(json!({"minute": 5, "sync_rate": 1}))
            .contains("sync_rate can only be used with the redis policy")
    );
    assert!(
        err(json!({"minute": 5, "policy": "redis", "redis": {"host": "r"}, "sync_rate": 0.01}))
            .contains("sync_rate must be greater than 0.02, or -1 to disable")
    );
    assert!(
        err(json!({"minute": 5, "policy": "redis"}))
            .contains("config.redis.host: required field missing")
    );
    assert!(
        err(json!({"minute": 5, "limit_by": "header"}))
            .contains("config.header_name: required field missing")
    );
    assert!(err(json!({"minute": 0})).contains("config.minute: value must be greater than 0"));
    assert!(
        err(json!({"minute": 5, "policy": "memcached"}))
            .contains("expected one of: local, cluster, redis")
    );

    let filled = validate(json!({"minute": 5})).expect("valid");
    for (field, default) in [
        ("limit_by", json!("consumer")),
        ("policy", json!("local")),
        ("fault_tolerant", json!(true)),
        ("hide_client_headers", json!(false)),
        ("error_code", json!(429)),
        ("error_message", json!("API rate limit exceeded")),
        ("sync_rate", json!(-1)),
    ] {
        assert_eq!(filled[field], default, "{field}");
    }
    assert_eq!(filled["redis"]["port"], 6379);
    assert_eq!(filled["redis"]["timeout"], 2000);
    assert_eq!(filled["redis"]["database"], 0);
    assert_eq!(filled["redis"]["ssl"], false);
}

#[test]
fn deprecated_flat_redis_fields_move_into_the_redis_record() {
    let filled = validate(json!({
        "minute": 5, "policy": "redis", "redis_host": "cache.internal", "redis_port": 6380,
        "redis_database": 2, "redis_ssl": true, "redis_timeout": 500
    }))
    .expect("valid");
    assert_eq!(filled["redis"]["host"], "cache.internal");
    assert_eq!(filled["redis"]["port"], 6380);
    assert_eq!(filled["redis"]["database"], 2);
    assert_eq!(filled["redis"]["ssl"], true);
    assert_eq!(filled["redis"]["timeout"], 500);
    assert!(filled.get("redis_host").is_none());
    let same = validate(json!({"minute": 5, "redis_host": "a", "redis": {"host": "a"}}));
    assert!(same.is_ok(), "{same:?}");
    let clash = validate(json!({"minute": 5, "redis_host": "a", "redis": {"host": "b"}}))
        .expect_err("mismatch");
    assert!(
        clash.contains(
            "config.redis_host: both deprecated and new field are used but their values mismatch: redis_host = a vs redis.host = b"
        ),
        "{clash}"
    );
    let typed = validate(json!({"minute": 5, "redis_port": "x"})).expect_err("bad type");
    assert!(
        typed.contains("config.redis_port: expected an integer"),
        "{typed}"
    );
}

#[test]
fn the_cluster_policy_is_refused_without_a_database_as_kong_does() {
    let config = validate(json!({"minute": 5, "policy": "cluster"})).expect("schema allows it");
    let quotas = Quotas::default();
    let build = Build {
        config: &config,
        route: None,
        service: None,
        quotas: &quotas,
        client_body_buffer_size: 8192,
    };
    let problems = build_with_clock(&build, test_clock).err().expect("refused");
    assert_eq!(
        problems,
        vec![(
            "policy".to_string(),
            "expected one of: local, redis".to_string()
        )]
    );
}

#[test]
fn local_counters_are_shared_by_instances_on_every_thread() {
    set_now(NOW);
    let quotas = Quotas::default();
    let plugin: Arc<dyn Plugin> = plugin_on(json!({"minute": 100}), &quotas).into();
    let passed: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let plugin = plugin.clone();
                s.spawn(move || {
                    set_now(NOW);
                    (0..50).filter(|_| get(&*plugin).status() == 200).count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("thread")).sum()
    });
    assert_eq!(
        passed, 100,
        "one count per node, exact under concurrency: {passed} of 200 passed a limit of 100"
    );
    let _unused: &LocalCounters = &quotas.local;
}

#[test]
fn with_a_database_the_cluster_policy_loads_and_counts_on_the_node() {
    set_now(NOW);
    let quotas = Quotas {
        database: true,
        ..Quotas::default()
    };
    let plugin = plugin_on(json!({"minute": 1, "policy": "cluster"}), &quotas);
    assert_eq!(get(&*plugin).status(), 200);
    assert_eq!(get(&*plugin).status(), 429);
    assert_eq!(quotas.local.len(), 1, "counted in the node's counters");
}

/// An error_code Kong's schema takes but its response PDK refuses (1000, 42.5) answers 500,
/// as in Kong, instead of writing it into the status line.
#[test]
fn an_error_code_that_is_no_error_status_answers_500() {
    set_now(NOW);
    for (code, status) in [(1000.0, 500), (42.5, 500), (399.0, 500), (503.0, 503)] {
        let quotas = Quotas::default();
        let plugin = plugin_on(json!({"minute": 1, "error_code": code}), &quotas);
        assert_eq!(get(&*plugin).status(), 200);
        assert_eq!(get(&*plugin).status(), status, "error_code {code}");
    }
}
