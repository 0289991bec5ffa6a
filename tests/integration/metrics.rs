//! `/metrics` on the Status API: Kong's node metrics (names, labels, help texts) and
//! gangway's own.

use crate::harness::{Gangway, Options, Upstream, config_with_routes, request};

/// `GET /metrics` on the Status API.
pub(crate) fn scrape(gw: &Gangway) -> String {
    let r = request(gw.status, "GET", "/metrics", &[], b"").expect("scrape");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// Scrapes until `done` holds (up to 5 s): the log phase of the last request may still be
/// running when its response arrives.
pub(crate) fn scrape_until(gw: &Gangway, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = scrape(gw);
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The value of the sample named `name` whose labels include every one of `labels`.
pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (series, value) = rest.rsplit_once(' ')?;
        let series_ok = series.is_empty() || series.starts_with('{');
        (series_ok && labels.iter().all(|l| series.contains(l))).then(|| value.parse().ok())?
    })
}

#[test]
fn node_metrics_have_kongs_names_labels_and_help() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(up.addr, "      - paths: [\"/\"]\n"));
    for _ in 0..3 {
        assert_eq!(gw.get("/x").status, 200);
    }
    let text = scrape(&gw);
    for line in [
        "# HELP kong_nginx_connections_total Number of connections by subsystem",
        "# TYPE kong_nginx_connections_total gauge",
        "# TYPE kong_node_info gauge",
        "# TYPE kong_nginx_metric_errors_total counter",
        "# TYPE kong_nginx_timers gauge",
        "kong_nginx_timers{state=\"running\"} 0",
        "kong_nginx_timers{state=\"pending\"} 0",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let requests = sample(&text, "kong_nginx_requests_total", &["subsystem=\"http\""]);
    assert!(requests >= Some(3.0), "{text}");
    let accepted = sample(
        &text,
        "kong_nginx_connections_total",
        &["subsystem=\"http\"", "state=\"accepted\""],
    );
    assert!(accepted >= Some(3.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "kong_node_info",
            &["version=\"3.9.3\"", "node_id=\""]
        ),
        Some(1.0),
        "{text}"
    );
    let rss = sample(
        &text,
        "kong_memory_workers_lua_vms_bytes",
        &["kong_subsystem=\"http\""],
    );
    assert!(rss > Some(1_000_000.0), "{text}");
    assert_eq!(sample(&text, "gangway_ebpf_up", &[]), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "kong_datastore_reachable", &[]),
        Some(1.0),
        "DB-less: {text}"
    );
    assert_eq!(
        sample(&text, "gangway_config_version", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gangway_accept_refused_total",
            &["reason=\"denied\""]
        ),
        Some(0.0),
        "{text}"
    );
}

/// Kong's own names that promtool's lint flags (gauges named `_total`, a counter without
/// it, `_ms` units): kept, since Kong's dashboards query them. The first two are always
/// exported.
const KONG_LINT_FINDINGS: [&str; 6] = [
    "kong_nginx_connections_total non-counter metrics should not have \"_total\" suffix",
    "kong_nginx_requests_total non-counter metrics should not have \"_total\" suffix",
    "kong_bandwidth_bytes counter metrics should have \"_total\" suffix",
    "kong_kong_latency_ms metric names should not contain abbreviated units",
    "kong_upstream_latency_ms metric names should not contain abbreviated units",
    "kong_request_latency_ms metric names should not contain abbreviated units",
];

/// Runs `promtool check metrics` on `text` and checks that its only findings are Kong's own
/// names.
fn assert_promtool_accepts(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs: install the Debian package prometheus (bash .ci/run does)");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    for finding in &findings {
        assert!(
            KONG_LINT_FINDINGS.contains(finding),
            "promtool found more than Kong's own names: {finding:?}\n{text}"
        );
    }
    // A parse error would be a finding of its own and fail above; the lint is Kong's names.
    for always in &KONG_LINT_FINDINGS[..2] {
        assert!(findings.contains(always), "{said}");
    }
}

#[test]
fn the_exposition_passes_promtool_but_for_kongs_own_names() {
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(up.addr, "      - paths: [\"/\"]\n"));
    assert_eq!(gw.get("/x").status, 200);
    assert_promtool_accepts(&scrape(&gw));
}

#[test]
fn the_admin_api_serves_the_same_exposition_as_kong_does() {
    let up = Upstream::start();
    let gw = Gangway::start_with(
        Options::new(config_with_routes(up.addr, "      - paths: [\"/\"]\n")).admin(),
    );
    let r = gw.admin("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    assert_eq!(
        sample(&text, "kong_datastore_reachable", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE kong_node_info gauge"), "{text}");
    let endpoints = gw.admin("GET", "/endpoints", &[], b"").json();
    assert!(
        endpoints["data"]
            .as_array()
            .is_some_and(|list| list.contains(&serde_json::json!("/metrics"))),
        "{endpoints}"
    );
}

#[test]
fn the_prometheus_plugin_records_kongs_per_request_series() {
    let up = Upstream::start();
    let config = format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://{}
    routes:
      - name: weather
        paths: ["/weather"]
        plugins:
          - name: key-auth
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
plugins:
  - name: prometheus
    config:
      per_consumer: true
      status_code_metrics: true
      latency_metrics: true
      bandwidth_metrics: true
"#,
        up.addr
    );
    let gw = Gangway::start(&config);
    for _ in 0..2 {
        let r = request(gw.proxy, "GET", "/weather", &[("apikey", "alice-key")], b"").expect("get");
        assert_eq!(r.status, 200);
    }
    assert_eq!(gw.get("/weather").status, 401);
    assert_eq!(gw.get("/nowhere").status, 404);
    // The log phase runs after the response is sent: wait for the last one to be counted.
    let text = scrape_until(&gw, |text| {
        sample(
            text,
            "kong_request_latency_ms_count",
            &["route=\"weather\""],
        ) == Some(3.0)
    });
    let series = |rest: &str| format!("{{service=\"echo\",route=\"weather\",{rest}}}");
    assert_eq!(
        sample(
            &text,
            "kong_http_requests_total",
            &[&series(
                "code=\"200\",source=\"service\",workspace=\"default\",consumer=\"alice\""
            )]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "kong_http_requests_total",
            &[&series(
                "code=\"401\",source=\"kong\",workspace=\"default\",consumer=\"\""
            )]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("code=\"404\""),
        "a request without a route is not counted, as in Kong: {text}"
    );
    let latency = series("workspace=\"default\"");
    assert_eq!(
        sample(&text, "kong_kong_latency_ms_count", &[&latency]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kong_request_latency_ms_count", &[&latency]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kong_upstream_latency_ms_count", &[&latency]),
        Some(2.0),
        "only the proxied requests have an upstream latency: {text}"
    );
    // Kong's buckets: 1 .. 6000 for Kong's own latency, 25 .. 60000 for the others, each
    // written zero-padded to the widest bound's width as Kong writes them.
    for bound in ["0001.0", "0007.0", "6000.0", "+Inf"] {
        let le = format!("service=\"echo\",route=\"weather\",workspace=\"default\",le=\"{bound}\"");
        assert!(
            sample(&text, "kong_kong_latency_ms_bucket", &[&le]).is_some(),
            "le={bound}: {text}"
        );
    }
    let le = "service=\"echo\",route=\"weather\",workspace=\"default\",le=\"00025.0\"";
    assert!(
        sample(&text, "kong_upstream_latency_ms_bucket", &[le]).is_some(),
        "{text}"
    );
    for direction in ["ingress", "egress"] {
        let labels = series(&format!(
            "direction=\"{direction}\",workspace=\"default\",consumer=\"alice\""
        ));
        assert!(
            sample(&text, "kong_bandwidth_bytes", &[&labels]) > Some(50.0),
            "{direction}: {text}"
        );
    }
}

/// Every metric Kong's official Grafana dashboard (`kong/plugins/prometheus/grafana/
/// kong-official.json`, Kong 3.9) queries, with the labels its queries filter or group by
/// and its legends name (Prometheus adds `instance` itself).
const DASHBOARD: [(&str, &[&str]); 10] = [
    ("kong_http_requests_total", &["service", "route", "code"]),
    ("kong_kong_latency_ms_bucket", &["service", "route", "le"]),
    (
        "kong_request_latency_ms_bucket",
        &["service", "route", "le"],
    ),
    (
        "kong_upstream_latency_ms_bucket",
        &["service", "route", "le"],
    ),
    ("kong_bandwidth_bytes", &["direction", "service", "route"]),
    (
        "kong_memory_lua_shared_dict_bytes",
        &["shared_dict", "kong_subsystem"],
    ),
    (
        "kong_memory_lua_shared_dict_total_bytes",
        &["shared_dict", "kong_subsystem"],
    ),
    (
        "kong_memory_workers_lua_vms_bytes",
        &["pid", "kong_subsystem"],
    ),
    (
        "kong_upstream_target_health",
        &["state", "upstream", "target", "address"],
    ),
    ("kong_nginx_connections_total", &["state"]),
];

#[test]
fn every_metric_and_label_of_kongs_grafana_dashboard_is_exported() {
    let up = Upstream::start();
    let config = format!(
        r#"_format_version: "3.0"
upstreams:
  - name: backend
    targets:
      - target: {}
services:
  - name: echo
    host: backend
    routes:
      - name: all
        paths: ["/"]
plugins:
  - name: prometheus
    config:
      status_code_metrics: true
      latency_metrics: true
      bandwidth_metrics: true
      upstream_health_metrics: true
"#,
        up.addr
    );
    let gw = Gangway::start(&config);
    assert_eq!(gw.get("/x").status, 200);
    // The log phase registers the request's series one after another, after the response.
    let text = scrape_until(&gw, |text| {
        DASHBOARD
            .iter()
            .all(|(name, _)| text.contains(&format!("\n{name}{{")))
    });
    for (name, labels) in DASHBOARD {
        let series: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect();
        assert!(!series.is_empty(), "{name} is missing:\n{text}");
        for label in labels {
            let with = format!("{label}=\"");
            assert!(
                series.iter().any(|s| s.contains(&with)),
                "{name} has no {label} label: {series:?}"
            );
        }
    }
    for state in [
        "active", "reading", "writing", "waiting", "total", "handled", "accepted",
    ] {
        assert!(
            text.contains(&format!("state=\"{state}\"")),
            "kong_nginx_connections_total{{state={state}}}:\n{text}"
        );
    }
    let healthy = format!(
        "kong_upstream_target_health{{upstream=\"backend\",target=\"{0}\",address=\"{0}\",state=\"healthchecks_off\",subsystem=\"http\"}} 1",
        up.addr
    );
    assert!(text.contains(&healthy), "{healthy}:\n{text}");
    assert_promtool_accepts(&text);
}

#[test]
fn gangways_own_metrics_count_reloads_and_name_the_backend() {
    let up = Upstream::start();
    let config = config_with_routes(up.addr, "      - paths: [\"/\"]\n");
    let gw = Gangway::start(&config);
    let text = scrape(&gw);
    let backend = format!("io_backend=\"{}\"", crate::harness::io_backend());
    assert_eq!(
        sample(&text, "gangway_info", &[&backend]),
        Some(1.0),
        "{text}"
    );
    for worker in ["worker=\"0\"", "worker=\"1\""] {
        assert!(
            sample(&text, "gangway_worker_connections", &[worker]).is_some(),
            "{text}"
        );
    }
    // Busy time: each worker thread's CPU seconds, rising while it serves requests.
    let busy = |t: &str| -> f64 {
        ["worker=\"0\"", "worker=\"1\""]
            .iter()
            .map(|w| {
                sample(t, "gangway_worker_busy_seconds", &[w])
                    .unwrap_or_else(|| panic!("busy time of {w}:\n{t}"))
            })
            .sum()
    };
    let before = busy(&text);
    for _ in 0..300 {
        assert_eq!(gw.get("/").status, 200);
    }
    let after = busy(&scrape(&gw));
    assert!(after > before, "busy {before} s then {after} s");
    assert_eq!(sample(&text, "gangway_consumers", &[]), Some(0.0), "{text}");
    assert!(
        sample(&text, "gangway_config_age_seconds", &[]) >= Some(0.0),
        "{text}"
    );

    // A broken file is refused (counted as failed), a good one published. The file watcher
    // may see each write as well as SIGHUP does: count at least one of each.
    gw.write_config("_format_version: \"3.0\"\nservices: [{name: broken}]\n");
    gw.signal(libc::SIGHUP);
    let text = scrape_until(&gw, |t| {
        sample(t, "gangway_config_reloads_total", &["result=\"failed\""]) >= Some(1.0)
    });
    assert!(
        sample(
            &text,
            "gangway_config_reloads_total",
            &["result=\"failed\""]
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "gangway_config_version", &[]),
        Some(1.0),
        "{text}"
    );
    gw.write_config(&format!("{config}consumers:\n  - username: alice\n"));
    gw.signal(libc::SIGHUP);
    let text = scrape_until(&gw, |t| sample(t, "gangway_consumers", &[]) == Some(1.0));
    assert!(
        sample(&text, "gangway_config_reloads_total", &["result=\"ok\""]) >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "gangway_config_version", &[]) >= Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "gangway_consumers", &[]), Some(1.0), "{text}");
}

/// `/status`'s connection states, polled until they equal `want` (active, reading,
/// writing, waiting) or 5 s pass; returns the last ones read.
fn await_states(gw: &Gangway, want: [u64; 4]) -> [u64; 4] {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let s = request(gw.status, "GET", "/status", &[], b"")
            .expect("status")
            .json();
        let got = ["active", "reading", "writing", "waiting"].map(|state| {
            s["server"][format!("connections_{state}")]
                .as_u64()
                .unwrap_or(u64::MAX)
        });
        if got == want || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn connections_are_counted_reading_writing_and_waiting_as_nginx_does() {
    use std::io::Write as _;
    let up = Upstream::start();
    let gw = Gangway::start(&config_with_routes(up.addr, "      - paths: [\"/\"]\n"));
    // Waiting: connected, nothing sent yet.
    let idle = crate::harness::connect(gw.proxy);
    // Reading: half a request head.
    let mut partial = crate::harness::connect(gw.proxy);
    partial
        .write_all(b"GET /x HTTP/1.1\r\nHost: example.com\r\n")
        .expect("write");
    // Writing: a request the upstream answers two seconds late.
    let proxy = gw.proxy;
    let slow = std::thread::spawn(move || {
        request(proxy, "GET", "/x", &[("x-echo-delay-ms", "2000")], b"").expect("slow request")
    });
    assert_eq!(
        await_states(&gw, [3, 1, 1, 1]),
        [3, 1, 1, 1],
        "active, reading, writing, waiting"
    );
    let text = scrape(&gw);
    for (state, n) in [
        ("active", 3.0),
        ("reading", 1.0),
        ("writing", 1.0),
        ("waiting", 1.0),
    ] {
        let label = format!("state=\"{state}\"");
        assert_eq!(
            sample(&text, "kong_nginx_connections_total", &[&label]),
            Some(n),
            "{state}: {text}"
        );
    }
    assert_eq!(slow.join().expect("slow thread").status, 200);
    // The head completes and is served; its connection then waits for the next request.
    partial.write_all(b"\r\n").expect("write");
    assert_eq!(await_states(&gw, [2, 0, 0, 2]), [2, 0, 0, 2]);
    drop((idle, partial));
    assert_eq!(await_states(&gw, [0, 0, 0, 0]), [0, 0, 0, 0]);
}
