//! `/metrics` on the Status API: Kong's node metrics (names, labels, help texts) and
//! gangway's own.

use crate::harness::{Gangway, Upstream, config_with_routes, request};

fn scrape(gw: &Gangway) -> String {
    let r = request(gw.status, "GET", "/metrics", &[], b"").expect("scrape");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// The value of the sample named `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
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
