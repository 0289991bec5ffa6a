//! The Prometheus exposition on the Status API's `/metrics`. The `metrics` crate's recorder
//! is installed once per process; node-wide figures that already live in counters (Kong's
//! `kong_nginx_*`, memory, node info, the eBPF maps) are set at scrape time, as Kong's
//! exporter sets its `LOCAL_STORAGE` gauges, so nothing is recorded per request for them.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use gangway_config::node;
use gangway_proxy::Gateway;

/// gangway's call-latency histograms (seconds): Redis calls, from half a millisecond; Lambda
/// invocations, from five.
const CALL_HISTOGRAMS: [(&str, &[f64]); 2] = [
    (
        "gangway_redis_call_seconds",
        &[
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
        ],
    ),
    (
        "gangway_lambda_invoke_seconds",
        &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ],
    ),
];

/// The process's recorder; `None` when another recorder was installed first.
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in CALL_HISTOGRAMS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                    .expect("invariant: the bucket lists are not empty");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            spawn_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Folds the histograms' raw samples into their buckets every [`UPKEEP_INTERVAL`]. The
/// recorder keeps every sample until then: with nobody scraping `/metrics`, a busy node's
/// latency histograms grew by megabytes a second.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at scrape time only");
    }
}

/// Kong's help texts, so the exposition reads as Kong's does.
fn describe() {
    metrics::describe_gauge!(
        "kong_nginx_connections_total",
        "Number of connections by subsystem"
    );
    metrics::describe_gauge!("kong_nginx_requests_total", "Number of requests total");
    metrics::describe_gauge!(
        "kong_datastore_reachable",
        "Datastore reachable from Kong, 0 is unreachable"
    );
    metrics::describe_gauge!("kong_node_info", "Kong Node metadata information");
    metrics::describe_gauge!(
        "kong_memory_lua_shared_dict_bytes",
        "Allocated slabs in bytes in a shared_dict"
    );
    metrics::describe_gauge!(
        "kong_memory_lua_shared_dict_total_bytes",
        "Total capacity in bytes of a shared_dict"
    );
    metrics::describe_gauge!(
        "kong_memory_workers_lua_vms_bytes",
        "Allocated bytes in worker Lua VM"
    );
    metrics::describe_counter!(
        "kong_nginx_metric_errors_total",
        "Number of nginx-lua-prometheus errors"
    );
    metrics::describe_gauge!("kong_nginx_timers", "Number of nginx timers");
    metrics::describe_counter!(
        "kong_http_requests_total",
        "HTTP status codes per consumer/service/route in Kong"
    );
    metrics::describe_counter!(
        "kong_bandwidth_bytes",
        "Total bandwidth (ingress/egress) throughput in bytes"
    );
    metrics::describe_gauge!(
        "gangway_ebpf_up",
        "1 when the eBPF IP guard is loaded and attached, 0 when the policy runs at accept"
    );
    metrics::describe_counter!(
        "gangway_ebpf_drops_total",
        "Packets the XDP IP guard dropped, by reason"
    );
    metrics::describe_gauge!(
        "gangway_ebpf_live_connections",
        "Live connections the eBPF tracker counts, by listener port"
    );
    metrics::describe_counter!(
        "gangway_accept_refused_total",
        "Connections closed at accept by the connection policy, by reason"
    );
    metrics::describe_gauge!(
        "gangway_config_version",
        "Version of the loaded config (0 before the first load)"
    );
    metrics::describe_gauge!(
        "gangway_config_age_seconds",
        "Seconds since the current config was published"
    );
    metrics::describe_counter!(
        "gangway_config_reloads_total",
        "Config replacements (reloads, POST /config, database changes) by result"
    );
    metrics::describe_gauge!("gangway_consumers", "Consumers in the identity index");
    metrics::describe_gauge!(
        "gangway_worker_connections",
        "Open client connections per worker thread"
    );
    metrics::describe_gauge!("gangway_info", "gangway's version and I/O backend");
    metrics::describe_histogram!(
        "gangway_redis_call_seconds",
        "Redis calls of the rate-limiting plugin (one round trip each), answered or failed"
    );
    metrics::describe_counter!(
        "gangway_redis_calls_total",
        "Round trips to Redis (a pipeline counts once)"
    );
    metrics::describe_counter!(
        "gangway_redis_failures_total",
        "Redis calls that failed: connects, counts and syncs"
    );
    metrics::describe_counter!(
        "gangway_ratelimit_local_uncounted_total",
        "Requests the local policy passed uncounted: their window length held rate_limiting_local_max_keys keys"
    );
    metrics::describe_counter!(
        "gangway_redis_counted_past_max_keys_total",
        "sync_rate requests counted in Redis at once: their window length held rate_limiting_local_max_keys windows on the node"
    );
    metrics::describe_gauge!(
        "gangway_config_sync_lag_seconds",
        "Database mode: from the oldest change of the last batch applied being written to its being served here"
    );
    metrics::describe_histogram!(
        "gangway_lambda_invoke_seconds",
        "AWS Lambda Invoke calls of the aws-lambda plugin"
    );
    metrics::describe_counter!(
        "gangway_lambda_invocations_total",
        "AWS Lambda Invoke calls by result: ok, timeout or error"
    );
    metrics::describe_gauge!(
        "gangway_worker_busy_seconds",
        "CPU seconds the worker thread has spent since start (rises while it works; idle waiting in the kernel does not count)"
    );
    metrics::describe_counter!("gangway_access_log_lines_total", "Access-log lines written");
    metrics::describe_counter!(
        "gangway_access_log_dropped_total",
        "Access-log lines lost because the writer could not keep up"
    );
}

/// The I/O backend the workers run on, once chosen.
static IO_BACKEND: OnceLock<&'static str> = OnceLock::new();

/// Installs the recorder (before anything records). Idempotent.
pub fn install() {
    let _ = handle();
}

/// Records which I/O backend the workers run on (`gangway_info`).
pub fn set_io_backend(name: &'static str) {
    let _ = IO_BACKEND.set(name);
}

/// Sets the node-wide figures and renders every metric. `datastore_reachable` is whether
/// the database answers (true without one, as Kong's DB-less connector does).
pub fn scrape(
    gateway: &Gateway,
    kernel: &crate::kernel::Kernel,
    datastore_reachable: bool,
) -> Option<String> {
    let handle = handle()?;
    metrics::gauge!("kong_datastore_reachable").set(if datastore_reachable { 1.0 } else { 0.0 });
    let id = node::node_id().to_string();
    let counters = &gateway.counters;
    let states = counters.open_states();
    for (state, n) in [
        ("active", states.active),
        ("reading", states.reading),
        ("writing", states.writing),
        ("waiting", states.waiting),
        ("accepted", counters.accepted.load(Ordering::Relaxed)),
        ("handled", counters.handled.load(Ordering::Relaxed)),
        ("total", counters.total_requests.load(Ordering::Relaxed)),
    ] {
        metrics::gauge!("kong_nginx_connections_total", "node_id" => id.clone(), "subsystem" => "http", "state" => state)
            .set(n as f64);
    }
    metrics::gauge!("kong_nginx_requests_total", "node_id" => id.clone(), "subsystem" => "http")
        .set(counters.total_requests.load(Ordering::Relaxed) as f64);
    metrics::gauge!("kong_node_info", "node_id" => id.clone(), "version" => node::KONG_VERSION)
        .set(1.0);
    // One process holds every worker: its resident set is the nearest true figure to the
    // Lua VMs' allocations Kong reports per worker process.
    metrics::gauge!(
        "kong_memory_workers_lua_vms_bytes",
        "node_id" => id.clone(),
        "pid" => std::process::id().to_string(),
        "kong_subsystem" => "http"
    )
    .set(gangway_proxy::node_status::rss_bytes() as f64);
    for (dict, used, capacity) in gangway_plugins::shared_dicts() {
        let labels = [
            ("node_id", id.clone()),
            ("shared_dict", dict),
            ("kong_subsystem", "http".to_owned()),
        ];
        metrics::gauge!("kong_memory_lua_shared_dict_bytes", &labels).set(used as f64);
        metrics::gauge!("kong_memory_lua_shared_dict_total_bytes", &labels).set(capacity as f64);
    }
    // Kong counts its Lua timers here. gangway has none: health checks, log batches and DNS
    // refreshes run on threads and tasks of their own. The series stay, at 0, for the
    // queries and alerts that name them.
    for state in ["running", "pending"] {
        metrics::gauge!("kong_nginx_timers", "state" => state).set(0.0);
    }
    // gangway's recorder has no failure mode of its own to count.
    metrics::counter!("kong_nginx_metric_errors_total").absolute(0);
    let snapshot = gateway.snapshot();
    metrics::gauge!("gangway_config_version").set(snapshot.version as f64);
    metrics::gauge!("gangway_config_age_seconds").set(gateway.config_age().as_secs_f64());
    for (result, counter) in [
        ("ok", &counters.reloads),
        ("failed", &counters.reload_failures),
    ] {
        metrics::counter!("gangway_config_reloads_total", "result" => result)
            .absolute(counter.load(Ordering::Relaxed));
    }
    metrics::gauge!("gangway_consumers").set(snapshot.identities.consumer_count() as f64);
    if let Some(redis) = &gateway.shared.catalog.quotas().redis {
        let calls = redis.counters();
        metrics::counter!("gangway_redis_calls_total").absolute(calls.round_trips);
        metrics::counter!("gangway_redis_failures_total").absolute(calls.failures);
        metrics::counter!("gangway_redis_counted_past_max_keys_total")
            .absolute(calls.past_max_keys);
    }
    metrics::counter!("gangway_ratelimit_local_uncounted_total")
        .absolute(gateway.shared.catalog.quotas().local.uncounted());
    drop(snapshot);
    for (worker, open) in counters.worker_active.iter().enumerate() {
        metrics::gauge!("gangway_worker_connections", "worker" => worker.to_string())
            .set(open.load(Ordering::Relaxed) as f64);
    }
    for (worker, tid) in counters.worker_tid.iter().enumerate() {
        if let Some(busy) = thread_cpu_seconds(tid.load(Ordering::Relaxed)) {
            metrics::gauge!("gangway_worker_busy_seconds", "worker" => worker.to_string())
                .set(busy);
        }
    }
    if let Some(sink) = gateway.access_log.get() {
        metrics::counter!("gangway_access_log_lines_total").absolute(sink.written());
        metrics::counter!("gangway_access_log_dropped_total").absolute(sink.dropped());
    }
    if let Some(backend) = IO_BACKEND.get() {
        metrics::gauge!("gangway_info", "version" => crate::VERSION, "io_backend" => *backend)
            .set(1.0);
    }
    let refused = gateway.accept_check.refused();
    for (reason, n) in [
        ("denied", refused.denied),
        ("not_allowed", refused.not_allowed),
        ("connection_limit", refused.connection_limit),
    ] {
        metrics::counter!("gangway_accept_refused_total", "reason" => reason).absolute(n);
    }
    kernel.record_metrics();
    let mut text = handle.render();
    render_kong_histograms(&mut text);
    render_target_health(&mut text, gateway);
    Some(text)
}

/// Appends the prometheus plugin's latency histograms (fixed bucket counters of their own,
/// `gangway_plugins::prometheus::histogram`) in the exposition format.
fn render_kong_histograms(out: &mut String) {
    use gangway_plugins::prometheus::histogram;
    use std::fmt::Write as _;
    let mut current = "";
    let mut bucket_labels = Vec::new();
    for ((name, labels), series) in histogram::series() {
        let (buckets, total, sum) = series.snapshot();
        if name != current {
            let help = gangway_plugins::prometheus::HISTOGRAMS
                .iter()
                .find(|(n, _, _)| *n == name)
                .map_or("", |(_, _, help)| help);
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
            let bounds: Vec<f64> = buckets.iter().map(|(bound, _)| *bound).collect();
            bucket_labels = histogram::kong_bucket_labels(&bounds);
            current = name;
        }
        let mut labelled = String::new();
        for (label, value) in &labels {
            let _ = write!(labelled, "{label}=\"{}\",", escape_label(value));
        }
        for ((_, count), le) in buckets.iter().zip(&bucket_labels) {
            let _ = writeln!(out, "{name}_bucket{{{labelled}le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labelled}le=\"+Inf\"}} {total}");
        let labelled = labelled.trim_end_matches(',');
        let _ = writeln!(out, "{name}_sum{{{labelled}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labelled}}} {total}");
    }
}

/// A label value as the exposition format quotes it.
fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        value.into()
    }
}

/// Kong's target states, one series each (1 for the target's state, 0 for the others).
const TARGET_STATES: [&str; 4] = ["healthchecks_off", "healthy", "unhealthy", "dns_error"];

/// `kong_upstream_target_health`, when an enabled prometheus instance asks for it
/// (`upstream_health_metrics`): a series per state for each address a target's name
/// resolved to (the last answer any worker got; the target itself for a name not looked up
/// yet), or one `dns_error` series with an empty address when its last
/// lookup failed. Rendered afresh at each scrape, as Kong resets the metric: a removed
/// target or a changed answer leaves no stale series behind. Each address has its own
/// health, as in Kong.
fn render_target_health(out: &mut String, gateway: &Gateway) {
    use gangway_proxy::upstream::status::Resolution;
    use std::fmt::Write as _;
    let snapshot = gateway.snapshot();
    let config = &snapshot.config;
    let wanted = config.plugins.iter().any(|p| {
        p.name == "prometheus"
            && p.enabled
            && p.config.get("upstream_health_metrics") == Some(&serde_json::Value::Bool(true))
    });
    if !wanted {
        return;
    }
    out.push_str(
        "# HELP kong_upstream_target_health Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated.\n\
         # TYPE kong_upstream_target_health gauge\n",
    );
    for upstream in &config.upstreams {
        let off = upstream.healthchecks.all_off();
        for target in config
            .targets
            .iter()
            .filter(|t| t.upstream.id == upstream.id)
        {
            let status = gateway
                .shared
                .health
                .target_status(&upstream.name, &target.target);
            let state_of = |healthy: bool| match (off, healthy) {
                (true, _) => "healthchecks_off",
                (false, true) => "healthy",
                (false, false) => "unhealthy",
            };
            let series: Vec<(String, &str)> = match status.resolution {
                Resolution::Failed => vec![(String::new(), "dns_error")],
                // Not looked up yet: the target itself stands for its addresses.
                Resolution::Pending => vec![(target.target.clone(), state_of(true))],
                Resolution::Literal | Resolution::Answered => status
                    .addresses
                    .iter()
                    .map(|(ip, healthy)| {
                        (
                            std::net::SocketAddr::new(*ip, status.port).to_string(),
                            state_of(*healthy),
                        )
                    })
                    .collect(),
            };
            for (address, state) in &series {
                for each in TARGET_STATES {
                    let _ = writeln!(
                        out,
                        "kong_upstream_target_health{{upstream=\"{}\",target=\"{}\",address=\"{}\",state=\"{each}\",subsystem=\"http\"}} {}",
                        escape_label(&upstream.name),
                        escape_label(&target.target),
                        escape_label(address),
                        u8::from(each == *state)
                    );
                }
            }
        }
    }
}

/// The CPU time of thread `tid` of this process, in seconds, from its `schedstat` (the
/// first field is nanoseconds on a CPU). `None` before the thread started or where `/proc`
/// does not say.
fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    if tid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}
