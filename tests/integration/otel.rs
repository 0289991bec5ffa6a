//! The opentelemetry plugin end to end: spans recorded per phase reach a real OTLP/HTTP
//! receiver (decoded with the opentelemetry-proto types) with Kong's names, parentage and
//! attributes; trace context is read from the client and sent upstream in Kong's formats; and
//! the trace id agrees with the request id and correlation-id in the log entry.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Gangway, Options, Upstream, request};
use gangway_test_support::TempDir;
use gangway_test_support::otlp::{AttrValue, OtlpReceiver, ReceivedSpan};

const WAIT: Duration = Duration::from_secs(10);

fn config(up: &Upstream, otlp: &OtlpReceiver, log: &std::path::Path, otel: &str) -> String {
    format!(
        r#"_format_version: "3.0"
plugins:
  - name: opentelemetry
    config:
{otel}
      traces_endpoint: {endpoint}
      headers:
        X-Token: abc
      resource_attributes:
        service.name: gw-test
      queue:
        max_coalescing_delay: 0.1
services:
  - name: echo
    url: http://{up}
    routes:
      - name: traced
        paths: ["/traced"]
        plugins:
          - name: correlation-id
            config:
              header_name: Kong-Request-ID
          - name: file-log
            config:
              path: {log}
"#,
        up = up.addr,
        endpoint = otlp.traces_url(),
        log = log.display(),
    )
}

struct Setup {
    gw: Gangway,
    otlp: OtlpReceiver,
    dir: TempDir,
    _up: Upstream,
}

fn start(otel: &str, env: &[(&str, &str)]) -> Setup {
    let up = Upstream::start();
    let otlp = OtlpReceiver::start();
    let dir = TempDir::new("otel");
    let mut opts = Options::new(config(&up, &otlp, &dir.path("route.log"), otel));
    for (k, v) in env {
        opts = opts.env(k, *v);
    }
    Setup {
        gw: Gangway::start_with(opts),
        otlp,
        dir,
        _up: up,
    }
}

const ALL_SAMPLED: [(&str, &str); 2] = [
    ("KONG_TRACING_INSTRUMENTATIONS", "all"),
    ("KONG_TRACING_SAMPLING_RATE", "1"),
];

/// The request headers the echo upstream received.
fn upstream_headers(body: &[u8]) -> HashMap<String, String> {
    let echo: Value = serde_json::from_slice(body).expect("echo body");
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                h[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn log_entries(setup: &Setup, n: usize) -> Vec<Value> {
    crate::harness::json_lines(&setup.dir.path("route.log"), n)
}

fn by_name<'s>(spans: &'s [ReceivedSpan], name: &str) -> &'s ReceivedSpan {
    spans
        .iter()
        .find(|s| s.span.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
            panic!("no span {name} among {names:?}")
        })
}

fn string(v: &str) -> Option<AttrValue> {
    Some(AttrValue::String(v.to_owned()))
}

#[test]
fn spans_reach_the_collector_with_kongs_names_parents_and_attributes() {
    let setup = start("", &ALL_SAMPLED);
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let r = request(
        setup.gw.proxy,
        "GET",
        "/traced/x?y=1",
        &[("traceparent", &traceparent), ("host", "api.test:8000")],
        b"",
    )
    .expect("request");
    assert_eq!(r.status, 200);
    setup.otlp.wait_for_spans(8, WAIT);
    // Let a straggling batch arrive before counting.
    std::thread::sleep(Duration::from_millis(300));
    let spans: Vec<ReceivedSpan> = setup
        .otlp
        .spans()
        .into_iter()
        .filter(|s| s.trace_id_hex() == trace_id)
        .collect();
    assert_eq!(spans.len(), 8, "{spans:?}");
    let mut names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "kong",
            "kong.access.plugin.correlation-id",
            "kong.access.plugin.opentelemetry",
            "kong.balancer",
            "kong.log.plugin.file-log",
            "kong.router",
            "kong.upstream.connect",
            "kong.upstream.response",
        ]
    );

    let root = by_name(&spans, "kong");
    assert_eq!(root.parent_span_id_hex(), caller_span);
    assert_eq!(root.span.kind, 2, "server");
    let root_id = root.span_id_hex();
    for name in [
        "kong.router",
        "kong.access.plugin.correlation-id",
        "kong.access.plugin.opentelemetry",
        "kong.balancer",
        "kong.log.plugin.file-log",
    ] {
        assert_eq!(
            by_name(&spans, name).parent_span_id_hex(),
            root_id,
            "{name}"
        );
    }
    let balancer = by_name(&spans, "kong.balancer");
    assert_eq!(balancer.span.kind, 3, "client");
    for name in ["kong.upstream.connect", "kong.upstream.response"] {
        assert_eq!(
            by_name(&spans, name).parent_span_id_hex(),
            balancer.span_id_hex(),
            "{name}"
        );
    }
    for s in &spans {
        assert!(
            s.span.end_time_unix_nano >= s.span.start_time_unix_nano,
            "{s:?}"
        );
    }
    // Phases nest in time inside the request span.
    let within = |s: &ReceivedSpan| {
        s.span.start_time_unix_nano >= root.span.start_time_unix_nano
            && s.span.end_time_unix_nano <= root.span.end_time_unix_nano
    };
    assert!(within(by_name(&spans, "kong.router")));
    assert!(within(balancer));

    let request_id = r.header("x-kong-request-id").expect("request id");
    assert_eq!(root.attr("http.method"), string("GET"));
    assert_eq!(
        root.attr("http.url"),
        string("http://api.test/traced/x?y=1")
    );
    assert_eq!(root.attr("http.host"), string("api.test"));
    assert_eq!(root.attr("http.scheme"), string("http"));
    assert_eq!(root.attr("http.flavor"), string("1.1"));
    assert_eq!(root.attr("http.client_ip"), string("127.0.0.1"));
    assert_eq!(root.attr("net.peer.ip"), string("127.0.0.1"));
    assert_eq!(root.attr("kong.request.id"), string(request_id));
    assert_eq!(root.attr("http.status_code"), Some(AttrValue::Int(200)));
    assert_eq!(root.attr("http.route"), string("/traced"));
    assert_eq!(balancer.attr("try_count"), Some(AttrValue::Double(1.0)));
    assert_eq!(balancer.attr("net.peer.ip"), string("127.0.0.1"));
    assert_eq!(
        balancer.attr("net.peer.port"),
        Some(AttrValue::Double(f64::from(setup._up.addr.port())))
    );

    assert_eq!(root.resource_attr("service.name"), string("gw-test"));
    assert_eq!(root.resource_attr("service.version"), string("3.9.3"));
    assert!(matches!(
        root.resource_attr("service.instance.id"),
        Some(AttrValue::String(id)) if id.len() == 36
    ));
    assert_eq!(
        (root.scope_name.as_str(), root.scope_version.as_str()),
        ("kong-internal", "0.1.0")
    );
    let posts = setup.otlp.requests();
    assert!(posts.iter().all(|p| p.decode_error.is_none()), "{posts:?}");
    assert_eq!(posts[0].header("x-token"), Some("abc"));
    assert_eq!(
        posts[0].header("content-type"),
        Some("application/x-protobuf")
    );

    // The upstream continues the trace under the balancer span, sampled.
    let sent = upstream_headers(&r.body);
    assert_eq!(
        sent.get("traceparent").map(String::as_str),
        Some(format!("00-{trace_id}-{}-01", balancer.span_id_hex()).as_str())
    );
    // The log entry carries the same trace id, request id and correlation id.
    let entry = &log_entries(&setup, 1)[0];
    assert_eq!(entry["trace_id"]["w3c"], trace_id);
    assert_eq!(
        entry["request"]["headers"]["kong-request-id"].as_str(),
        sent.get("kong-request-id").map(String::as_str)
    );
    assert_eq!(entry["request"]["id"].as_str(), Some(request_id));
}

#[test]
fn an_unsampled_caller_is_propagated_and_not_exported() {
    let setup = start("", &ALL_SAMPLED);
    let quiet = "11111111111111111111111111111111";
    let r = request(
        setup.gw.proxy,
        "GET",
        "/traced",
        &[("traceparent", &format!("00-{quiet}-2222222222222222-00"))],
        b"",
    )
    .expect("request");
    let sent = upstream_headers(&r.body);
    let tp = sent.get("traceparent").expect("traceparent sent upstream");
    assert!(
        tp.starts_with(&format!("00-{quiet}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    // A sampled request after it shows the exporter is working; the first never arrives.
    let loud = "33333333333333333333333333333333";
    request(
        setup.gw.proxy,
        "GET",
        "/traced",
        &[("traceparent", &format!("00-{loud}-4444444444444444-01"))],
        b"",
    )
    .expect("request");
    // Seven spans, or eight when this request's worker had no pooled upstream connection.
    setup.otlp.wait_for_spans(7, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let spans = setup.otlp.spans();
    assert!(spans.iter().all(|s| s.trace_id_hex() == loud), "{spans:?}");
    assert!(spans.iter().any(|s| s.span.name == "kong"), "{spans:?}");
}

#[test]
fn with_tracing_off_the_plugin_only_propagates() {
    // The default: tracing_instrumentations = off.
    let setup = start("", &[]);
    let r = setup.gw.get("/traced");
    let sent = upstream_headers(&r.body);
    let tp = sent.get("traceparent").expect("a new trace is propagated");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!((parts[0], parts[1].len(), parts[3]), ("00", 32, "00"));
    let entry = &log_entries(&setup, 1)[0];
    assert_eq!(entry["trace_id"]["w3c"], parts[1]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(setup.otlp.requests().is_empty(), "nothing is exported");
}

#[test]
fn formats_are_extracted_injected_and_the_trace_id_is_echoed() {
    let otel = r#"      http_response_header_for_traceid: X-Trace-Id
      propagation:
        extract: [b3]
        inject: [preserve, aws]
        default_format: w3c"#;
    let setup = start(otel, &ALL_SAMPLED);
    let trace_id = "463ac35c9f6413ad48485a3953bb6124";
    let r = request(
        setup.gw.proxy,
        "GET",
        "/traced",
        &[("b3", &format!("{trace_id}-a2fb4a1d1a96d312-1"))],
        b"",
    )
    .expect("request");
    assert_eq!(r.header("x-trace-id"), Some(trace_id));
    let sent = upstream_headers(&r.body);
    let b3 = sent.get("b3").expect("b3 preserved as a single header");
    let parts: Vec<&str> = b3.split('-').collect();
    assert_eq!((parts[0], parts[2]), (trace_id, "1"), "{b3}");
    let aws = sent.get("x-amzn-trace-id").expect("aws injected");
    assert!(
        aws.starts_with("Root=1-463ac35c-9f6413ad48485a3953bb6124;"),
        "{aws}"
    );
    let spans = setup.otlp.wait_for_spans(8, WAIT);
    let root = by_name(&spans, "kong");
    assert_eq!(root.trace_id_hex(), trace_id);
    assert_eq!(root.parent_span_id_hex(), "a2fb4a1d1a96d312");
    let entry = &log_entries(&setup, 1)[0];
    // Kong logs a b3-single injection under "b3".
    assert_eq!(entry["trace_id"]["b3"], trace_id);
    assert!(entry["trace_id"]["aws"].is_string(), "{entry}");
}

#[test]
fn a_failing_collector_is_retried_and_bad_configs_are_refused() {
    let up = Upstream::start();
    let otlp = OtlpReceiver::failing(1);
    let dir = TempDir::new("otel");
    let mut opts = Options::new(config(&up, &otlp, &dir.path("route.log"), "")).admin();
    for (k, v) in ALL_SAMPLED {
        opts = opts.env(k, v);
    }
    let gw = Gangway::start_with(opts);
    assert_eq!(gw.get("/traced").status, 200);
    otlp.wait_for_spans(8, WAIT);
    let statuses: Vec<u16> = otlp.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses[..2], [503, 200], "{statuses:?}");

    for (config, message) in [
        (
            r#"{"logs_endpoint": "http://127.0.0.1:1/v1/logs"}"#,
            "gangway does not export logs",
        ),
        (
            r#"{"traces_endpoint": "http://127.0.0.1:1/v1/traces", "sampling_rate": 2}"#,
            "value should be between 0 and 1",
        ),
        (
            r#"{"traces_endpoint": "ftp://collector/v1/traces"}"#,
            "unsupported scheme",
        ),
        (
            r#"{"traces_endpoint": "http://127.0.0.1:1/v1/traces", "propagation": {"extract": ["zipkin"]}}"#,
            "expected one of",
        ),
    ] {
        let body = format!(
            r#"{{"_format_version": "3.0", "plugins": [{{"name": "opentelemetry", "config": {config}}}]}}"#
        );
        let r = gw.admin(
            "POST",
            "/config",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 400, "{text}");
        assert!(text.contains(message), "{config}: {text}");
    }
    // The refused configs left the running one alone.
    assert_eq!(gw.get("/traced").status, 200);
}

#[test]
fn the_sampling_rate_decides_which_traces_are_exported_and_the_flag_tells_upstream() {
    let setup = start(
        "",
        &[
            ("KONG_TRACING_INSTRUMENTATIONS", "all"),
            ("KONG_TRACING_SAMPLING_RATE", "0.25"),
        ],
    );
    let mut sampled = Vec::new();
    let mut unsampled = Vec::new();
    for _ in 0..400 {
        let r = setup.gw.get("/traced");
        assert_eq!(r.status, 200);
        let sent = upstream_headers(&r.body);
        let tp = sent.get("traceparent").expect("traceparent").clone();
        let parts: Vec<&str> = tp.split('-').collect();
        match parts.get(3) {
            Some(&"01") => sampled.push(parts[1].to_owned()),
            Some(&"00") => unsampled.push(parts[1].to_owned()),
            _ => panic!("flags of {tp}"),
        }
    }
    assert!(
        (60..=140).contains(&sampled.len()),
        "{} of 400 sampled at 0.25",
        sampled.len()
    );
    // Every sampled trace is exported whole, and no other one.
    setup.otlp.wait_for_spans(7 * sampled.len(), WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let spans = setup.otlp.spans();
    let mut roots: Vec<String> = spans
        .iter()
        .filter(|s| s.span.name == "kong")
        .map(ReceivedSpan::trace_id_hex)
        .collect();
    roots.sort_unstable();
    roots.dedup();
    sampled.sort_unstable();
    assert_eq!(roots, sampled);
    assert!(spans.iter().all(|s| !unsampled.contains(&s.trace_id_hex())));
}

/// The distinct trace ids in each POST the receiver got, in arrival order.
fn traces_per_post(otlp: &OtlpReceiver) -> Vec<usize> {
    otlp.requests()
        .iter()
        .map(|r| {
            let body = r.body.as_ref().expect("a decoded export request");
            let ids: HashSet<&[u8]> = body
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|span| span.trace_id.as_slice())
                .collect();
            ids.len()
        })
        .collect()
}

/// Polls until the receiver has `n` requests or [`WAIT`] passes; returns how long it took.
fn await_posts(otlp: &OtlpReceiver, n: usize, since: Instant) -> Duration {
    while otlp.requests().len() < n && since.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    since.elapsed()
}

#[test]
fn batch_span_count_sends_a_full_batch_at_once_and_batch_flush_delay_holds_the_rest() {
    // Kong's deprecated batch fields win over `queue` (whose delay is 0.1 s here). A batch
    // entry is one request's spans.
    let setup = start(
        "      batch_span_count: 2\n      batch_flush_delay: 2\n",
        &ALL_SAMPLED,
    );
    let sent = Instant::now();
    for _ in 0..3 {
        assert_eq!(setup.gw.get("/traced").status, 200);
    }
    let first = await_posts(&setup.otlp, 1, sent);
    let second = await_posts(&setup.otlp, 2, sent);
    assert_eq!(traces_per_post(&setup.otlp), [2, 1]);
    assert!(
        first < Duration::from_millis(1500),
        "a full batch goes without waiting out the delay: {first:?}"
    );
    assert!(
        second >= Duration::from_millis(1800) && second < WAIT,
        "the third request's batch waited for batch_flush_delay: {second:?}"
    );
}

#[test]
fn a_collector_that_never_answers_is_given_up_on_after_read_timeout_and_retried() {
    // A collector that takes the connection and the request, and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let up = Upstream::start();
    let otlp = OtlpReceiver::start();
    let dir = TempDir::new("otel");
    let config = config(
        &up,
        &otlp,
        &dir.path("route.log"),
        "      read_timeout: 300\n",
    )
    .replace(
        &otlp.traces_url(),
        &format!("http://{silent_addr}/v1/traces"),
    );
    let mut opts = Options::new(config);
    for (k, v) in ALL_SAMPLED {
        opts = opts.env(k, v);
    }
    let gw = Gangway::start_with(opts);
    assert_eq!(gw.get("/traced").status, 200);
    let since = Instant::now();
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < 3 && since.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    let tries = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        tries >= 3 && since.elapsed() < Duration::from_secs(5),
        "with read_timeout 300 ms the sender gives up on each try and retries: {tries} tries in {:?}",
        since.elapsed()
    );
}

#[test]
fn log_spans_writes_each_request_span_as_a_tracing_span_closes() {
    let mut env = ALL_SAMPLED.to_vec();
    env.extend([
        ("GANGWAY_LOG_SPANS", "true"),
        ("GANGWAY_LOG_FORMAT", "json"),
    ]);
    let setup = start("", &env);
    let r = request(setup.gw.proxy, "GET", "/traced", &[], b"").expect("request");
    assert_eq!(r.status, 200);
    let exported = setup.otlp.wait_for_spans(8, WAIT);
    let closes = |log: &str| -> Vec<Value> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "close")
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    let mut closed = closes(&setup.gw.log());
    while closed.len() < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        closed = closes(&setup.gw.log());
    }
    // One line per span, with the `tracing` name and the exported span's id.
    let mut names: Vec<&str> = closed
        .iter()
        .filter_map(|c| c["span"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "kong",
            "kong.access.plugin",
            "kong.access.plugin",
            "kong.balancer",
            "kong.log.plugin",
            "kong.router",
            "kong.upstream.connect",
            "kong.upstream.response",
        ],
        "{closed:#?}"
    );
    let exported_id = |name: &str| by_name(&exported, name).span_id_hex();
    for c in &closed {
        let span = &c["span"];
        let kong_name = span["otel.name"]
            .as_str()
            .or(span["name"].as_str())
            .expect("a name");
        assert_eq!(
            span["span_id"].as_str(),
            Some(exported_id(kong_name).as_str()),
            "{c}"
        );
        // Each names the exported span's parent: the request span, or for the upstream's
        // phases the balancer span.
        let parent = by_name(&exported, kong_name).parent_span_id_hex();
        if kong_name == "kong" {
            assert!(span["parent_id"].is_null(), "no caller span: {c}");
        } else {
            assert_eq!(span["parent_id"].as_str(), Some(parent.as_str()), "{c}");
        }
        if kong_name.starts_with("kong.upstream.") {
            assert_eq!(parent, exported_id("kong.balancer"));
        }
    }
    let root = closed
        .iter()
        .find(|c| c["span"]["name"] == "kong")
        .expect("the request span");
    let request_id = r.header("x-kong-request-id").expect("request id");
    assert_eq!(root["span"]["kong.request.id"], request_id, "{root}");
    assert_eq!(
        root["span"]["trace_id"].as_str(),
        Some(by_name(&exported, "kong").trace_id_hex().as_str())
    );
    assert_eq!(root["span"]["http.status_code"], 200, "{root}");
    assert_eq!(root["span"]["http.route"], "/traced", "{root}");

    // Without log_spans, the spans stay below the log level and nothing is written.
    let quiet = start("", &ALL_SAMPLED);
    let r = request(quiet.gw.proxy, "GET", "/traced", &[], b"").expect("request");
    assert_eq!(r.status, 200);
    quiet.otlp.wait_for_spans(8, WAIT);
    assert!(!quiet.gw.log().contains("time.busy"), "{}", quiet.gw.log());
}
