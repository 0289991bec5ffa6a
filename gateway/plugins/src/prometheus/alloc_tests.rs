//! The prometheus plugin's log phase records into handles it registered on a series' first
//! request: after that, a request costs no allocation (and takes no lock: the handles are
//! atomics, the series map is papaya's). The lib test binary gets a counting global
//! allocator (`gangway_test_support::alloc`); it counts per thread, so other tests are
//! unaffected.

use gangway_pipeline::{LazyEntry, LogCtx, LogFacts, RequestState};
use gangway_test_support::alloc::{Counting, allocations as allocs};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONFIG: &str = r#"_format_version: "3.0"
services:
  - name: alloc-test-service
    url: http://127.0.0.1:9
    routes:
      - name: alloc-test-route
        paths: ["/"]
consumers:
  - username: alloc-test-consumer
"#;

#[test]
fn a_known_series_is_recorded_without_allocating() {
    // The exporter gangway's binary installs, here for this thread only.
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let config =
        gangway_config::declarative::load_str(CONFIG, &crate::catalog()).expect("valid config");
    let plugin = super::build(&json!({
        "per_consumer": true,
        "status_code_metrics": true,
        "latency_metrics": true,
        "bandwidth_metrics": true,
    }))
    .expect("valid plugin config");
    let facts = LogFacts {
        status: 200,
        from_service: true,
        request_ms: 12,
        upstream_ms: Some(10),
        kong_ms: 2,
        request_size: 120,
        response_size: 480,
        route: config.routes.first(),
        service: config.services.first(),
        consumer: config.consumers.first(),
        config_version: 1,
    };
    let make = || b"null".to_vec();
    let entry = LazyEntry::new(&make);
    let state = RequestState::default();
    let ctx = LogCtx {
        facts: &facts,
        entry: &entry,
        state: &state,
        step: 0,
    };
    let before = metrics::with_local_recorder(&recorder, || {
        plugin.log(&ctx);
        let before = allocs();
        for _ in 0..1000 {
            plugin.log(&ctx);
        }
        before
    });
    assert_eq!(allocs() - before, 0, "the log phase allocated");
    let text = handle.render();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("kong_http_requests_total{")
                && l.contains("route=\"alloc-test-route\"")
                && l.contains("consumer=\"alloc-test-consumer\"")
        })
        .unwrap_or_else(|| panic!("no series for the test route:\n{text}"));
    assert!(line.ends_with(" 1001"), "{line}");
}
