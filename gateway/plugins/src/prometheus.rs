//! prometheus (priority 13, log): Kong's per-request metrics, recorded through the
//! `metrics` facade and rendered by the binary's `/metrics` (kong-reference.md 4.x,
//! `kong/plugins/prometheus/exporter.lua`). Names, labels and buckets are Kong's:
//!
//! - `kong_http_requests_total{service,route,code,source,workspace,consumer}`
//!   (`status_code_metrics`);
//! - histograms `kong_kong_latency_ms`, `kong_upstream_latency_ms` and
//!   `kong_request_latency_ms` `{service,route,workspace}` (`latency_metrics`);
//! - `kong_bandwidth_bytes{service,route,direction,workspace,consumer}`
//!   (`bandwidth_metrics`).
//!
//! The `consumer` label is the username with `per_consumer`, else empty. A request that
//! matched no route is not counted, as in Kong. The plugin reads the typed log facts, never
//! the serialized entry, and keeps each series' handles per (config version, route,
//! consumer, status, source): after the first request of a series, recording allocates
//! nothing and takes no lock (papaya's map with foldhash, atomic counters).

pub mod histogram;

use metrics::{Counter, Histogram};
use serde::Deserialize;
use serde_json::{Value, json};

use gangway_config::model::Id;
use gangway_config::schema::{Field, Schema};
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::{LogCtx, LogFacts};

/// Kong's name.
pub const NAME: &str = "prometheus";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 13;

/// Kong's `KONG_LATENCY_BUCKETS` (milliseconds), for `kong_kong_latency_ms`.
pub const KONG_LATENCY_BUCKETS: [f64; 17] = [
    1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 750.0, 1000.0,
    3000.0, 6000.0,
];
/// Kong's `UPSTREAM_LATENCY_BUCKETS` (milliseconds), for the upstream and request latencies.
pub const UPSTREAM_LATENCY_BUCKETS: [f64; 13] = [
    25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0,
];
/// The histograms, the buckets Kong gives them, and Kong's help texts.
pub const HISTOGRAMS: [(&str, &[f64], &str); 3] = [
    (
        "kong_kong_latency_ms",
        &KONG_LATENCY_BUCKETS,
        "Latency added by Kong and enabled plugins for each service/route in Kong",
    ),
    (
        "kong_upstream_latency_ms",
        &UPSTREAM_LATENCY_BUCKETS,
        "Latency added by upstream response for each service/route in Kong",
    ),
    (
        "kong_request_latency_ms",
        &UPSTREAM_LATENCY_BUCKETS,
        "Total latency incurred during requests for each service/route in Kong",
    ),
];

/// Kong's workspace label: DB-less and gangway have the `default` workspace only.
const WORKSPACE: &str = "default";

/// Kong's config schema (`kong/plugins/prometheus/schema.lua`).
pub fn schema() -> Schema {
    let flag = |what: &'static str| Field::boolean().default(json!(false)).describe(what);
    Schema::new(
        NAME,
        Field::record(vec![
            (
                "per_consumer",
                flag(
                    "Fill the consumer label of kong_http_requests_total and kong_bandwidth_bytes.",
                ),
            ),
            (
                "status_code_metrics",
                flag("Export kong_http_requests_total."),
            ),
            (
                "ai_metrics",
                flag("AI metrics; gangway has no AI plugins, so only false is accepted."),
            ),
            (
                "latency_metrics",
                flag("Export the kong, upstream and request latency histograms."),
            ),
            ("bandwidth_metrics", flag("Export kong_bandwidth_bytes.")),
            (
                "upstream_health_metrics",
                flag("Export kong_upstream_target_health."),
            ),
        ]),
    )
}

#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    per_consumer: bool,
    #[serde(default)]
    status_code_metrics: bool,
    #[serde(default)]
    ai_metrics: bool,
    #[serde(default)]
    latency_metrics: bool,
    #[serde(default)]
    bandwidth_metrics: bool,
}

/// One series' key: what its labels are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    config_version: u64,
    route: Id,
    consumer: Option<Id>,
    status: u16,
    from_service: bool,
}

/// The handles of one series, registered on its first request.
struct Series {
    requests: Option<Counter>,
    latency: Option<[Histogram; 3]>,
    bandwidth: Option<[Counter; 2]>,
}

struct Prometheus {
    per_consumer: bool,
    status_code_metrics: bool,
    latency_metrics: bool,
    bandwidth_metrics: bool,
    series: papaya::HashMap<SeriesKey, Series, foldhash::fast::RandomState>,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    if conf.ai_metrics {
        return Err(vec![(
            "ai_metrics".into(),
            "gangway has no AI plugins: ai_metrics must be false".into(),
        )]);
    }
    Ok(Box::new(Prometheus {
        per_consumer: conf.per_consumer,
        status_code_metrics: conf.status_code_metrics,
        latency_metrics: conf.latency_metrics,
        bandwidth_metrics: conf.bandwidth_metrics,
        series: papaya::HashMap::default(),
    }))
}

impl Prometheus {
    fn key(&self, facts: &LogFacts<'_>, route: Id) -> SeriesKey {
        SeriesKey {
            config_version: facts.config_version,
            route,
            consumer: self
                .per_consumer
                .then(|| facts.consumer.map(|c| c.id))
                .flatten(),
            status: facts.status,
            from_service: facts.from_service,
        }
    }

    /// Registers the series' handles with the recorder (Kong's labels, built once).
    fn register(&self, facts: &LogFacts<'_>) -> Series {
        let route = facts
            .route
            .map(|r| r.name.clone().unwrap_or_else(|| r.id.to_string()))
            .unwrap_or_default();
        let service = facts
            .service
            .map(|s| s.name.clone().unwrap_or_else(|| s.host.clone()))
            .unwrap_or_default();
        let consumer = match (self.per_consumer, facts.consumer) {
            (true, Some(c)) => c.username.as_deref().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        let requests = self.status_code_metrics.then(|| {
            let source = if facts.from_service {
                "service"
            } else {
                "kong"
            };
            metrics::counter!(
                "kong_http_requests_total",
                "service" => service.clone(),
                "route" => route.clone(),
                "code" => facts.status.to_string(),
                "source" => source,
                "workspace" => WORKSPACE,
                "consumer" => consumer.clone()
            )
        });
        let latency = self.latency_metrics.then(|| {
            HISTOGRAMS.map(|(name, bounds, _)| {
                histogram::histogram(
                    name,
                    bounds,
                    vec![
                        ("service", service.clone()),
                        ("route", route.clone()),
                        ("workspace", WORKSPACE.to_owned()),
                    ],
                )
            })
        });
        let bandwidth = self.bandwidth_metrics.then(|| {
            ["ingress", "egress"].map(|direction| {
                metrics::counter!(
                    "kong_bandwidth_bytes",
                    "service" => service.clone(),
                    "route" => route.clone(),
                    "direction" => direction,
                    "workspace" => WORKSPACE,
                    "consumer" => consumer.clone()
                )
            })
        });
        Series {
            requests,
            latency,
            bandwidth,
        }
    }
}

impl Plugin for Prometheus {
    fn accesses(&self) -> bool {
        false
    }

    fn logs(&self) -> bool {
        true
    }

    fn log_reads_entry(&self) -> bool {
        false
    }

    fn log(&self, ctx: &LogCtx<'_>) {
        let facts = ctx.facts;
        let Some(route) = facts.route else {
            return;
        };
        let key = self.key(facts, route.id);
        let map = self.series.pin();
        let series = match map.get(&key) {
            Some(found) => found,
            None => {
                // A new config version names its entities afresh: drop the old handles.
                if map
                    .keys()
                    .next()
                    .is_some_and(|k| k.config_version != key.config_version)
                {
                    map.clear();
                }
                map.get_or_insert_with(key, || self.register(facts))
            }
        };
        if let Some(requests) = &series.requests {
            requests.increment(1);
        }
        if let Some([kong, upstream, request]) = &series.latency {
            kong.record(facts.kong_ms as f64);
            if let Some(ms) = facts.upstream_ms {
                upstream.record(ms as f64);
            }
            request.record(facts.request_ms as f64);
        }
        if let Some([ingress, egress]) = &series.bandwidth {
            if facts.request_size > 0 {
                ingress.increment(facts.request_size);
            }
            if facts.response_size > 0 {
                egress.increment(facts.response_size);
            }
        }
    }
}

#[cfg(test)]
mod alloc_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ai_metrics_are_refused_and_the_rest_accepted() {
        let refused = build(&json!({"ai_metrics": true})).err().expect("refused");
        assert_eq!(refused[0].0, "ai_metrics");
        assert!(build(&json!({"per_consumer": true, "latency_metrics": true})).is_ok());
    }

    #[test]
    fn kongs_buckets_are_sorted_and_end_where_kongs_do() {
        for (name, buckets, _) in HISTOGRAMS {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}");
        }
        assert_eq!(KONG_LATENCY_BUCKETS.last(), Some(&6000.0));
        assert_eq!(UPSTREAM_LATENCY_BUCKETS.last(), Some(&60000.0));
    }
}
