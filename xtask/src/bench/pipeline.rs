//! `cargo xtask bench pipeline`: the plugin pipeline's cost. The pirate-weather setup
//! (request-transformer ordered before key-auth, then acl) at 1,000 and at `--consumers`
//! (default 1,000,000) consumers, against gangway's plain proxy and nginx's, under the same
//! wrk load: every request carries a random consumer's key in its URL.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{
    Contender, Load, Paired, Params, build_release, compare, free_port, gangway_with_env,
    plain_config, random_key_load, rss_mb, scratch_dir, upstream, wait_port_for,
};

/// The example config with `consumers` consumers, keys `k00000001`.., all in group `weather`.
fn pipeline_config(upstream: u16, consumers: usize) -> String {
    let mut out = String::with_capacity(consumers * 96 + 1024);
    let _ = write!(
        out,
        r#"_format_version: "3.0"
services:
  - name: forecast
    url: http://127.0.0.1:{upstream}
    routes:
      - name: forecast
        paths: ["~/forecast/(?<apikey>[^/]+)/(?<location>[^/]+)$"]
        strip_path: false
        plugins:
          - name: request-transformer
            ordering:
              before:
                access: [key-auth]
            config:
              add:
                headers: ["apikey:$(uri_captures['apikey'])"]
              replace:
                uri: "/forecast/$(uri_captures['location'])"
          - name: key-auth
            config:
              key_names: [apikey]
              key_in_query: false
              hide_credentials: true
          - name: acl
            config:
              allow: [weather]
consumers:
"#
    );
    for i in 1..=consumers {
        let _ = writeln!(
            out,
            "  - {{username: u{i}, keyauth_credentials: [{{key: k{i:08}}}], acls: [{{group: weather}}]}}"
        );
    }
    out
}

/// [`pipeline_config`] plus a global prometheus instance with every metric on (what a
/// Grafana dashboard needs), for its cost against the same pipeline without it.
fn with_prometheus(config: &str) -> String {
    let plugins = "plugins:\n  - name: prometheus\n    config:\n      per_consumer: false\n      status_code_metrics: true\n      latency_metrics: true\n      bandwidth_metrics: true\n      upstream_health_metrics: true\n";
    config.replacen("consumers:\n", &format!("{plugins}consumers:\n"), 1)
}

/// [`pipeline_config`] plus a global opentelemetry instance exporting to `collector` (the
/// upstream nginx answers the posts), for the cost of tracing at 1% sampling (the
/// contender runs with every instrumentation on and `tracing_sampling_rate` 0.01).
fn with_tracing(config: &str, collector: u16) -> String {
    let plugins = format!(
        "plugins:\n  - name: opentelemetry\n    config:\n      traces_endpoint: http://127.0.0.1:{collector}/v1/traces\n"
    );
    config.replacen("consumers:\n", &format!("{plugins}consumers:\n"), 1)
}

/// [`pipeline_config`] plus a global file-log instance writing every entry to /dev/null: the
/// cost of building Kong's log entry and handing it to the writer thread, without a disk.
fn with_file_log(config: &str) -> String {
    let plugins = "plugins:\n  - name: file-log\n    config:\n      path: /dev/null\n";
    config.replacen("consumers:\n", &format!("{plugins}consumers:\n"), 1)
}

/// The settings of the tracing contender.
const TRACING_ENV: [(&str, &str); 2] = [
    ("GANGWAY_TRACING_INSTRUMENTATIONS", "all"),
    ("GANGWAY_TRACING_SAMPLING_RATE", "0.01"),
];

/// Every request is GET /forecast/<a random consumer's key>/52.37,4.89.
fn load(consumers: usize) -> Load {
    random_key_load(
        consumers,
        42,
        "wrk.format(\"GET\", \"/forecast/\" .. key .. \"/52.37,4.89\")",
    )
}

/// Runs the benchmark with `consumers` consumers in the large config.
pub fn run(p: &Params, consumers: usize) -> Result<()> {
    let (root, bin) = build_release()?;
    let dir = scratch_dir()?;
    let (_upstream, up_port) = upstream(&dir)?;
    let ports = [
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
    ];
    let plain = plain_config(up_port);
    let small = pipeline_config(up_port, 1000);
    let small_prometheus = with_prometheus(&small);
    let small_tracing = with_tracing(&small, up_port);
    let small_file_log = with_file_log(&small);
    let large = pipeline_config(up_port, consumers);
    // At --consumers 1000 the large instance is a second copy of the small one: the noise
    // floor, named apart so that its rows and results can be told from the first's.
    let large_name = if consumers == 1000 {
        "gangway-pipeline-1000-again".to_string()
    } else {
        format!("gangway-pipeline-{consumers}")
    };
    let mut notes = String::new();
    let mut start = |name: &str,
                     port: u16,
                     config: &str,
                     load: Option<Load>,
                     env: &[(&str, &str)]|
     -> Result<Contender> {
        let began = Instant::now();
        let proc_ = gangway_with_env(&bin, &dir, name, "io_uring", port, config, p.workers, env)?;
        wait_port_for(port, name, Duration::from_secs(300))?;
        let _ = write!(
            notes,
            "{name}: ready in {:.1} s, RSS {:.0} MB; ",
            began.elapsed().as_secs_f64(),
            rss_mb(proc_.child.id())
        );
        Ok(Contender {
            name: name.into(),
            proc_,
            port,
            load,
        })
    };
    let contenders = vec![
        start("gangway-plain", ports[0], &plain, None, &[])?,
        // The pipeline between its two variants: each is measured right beside it.
        start(
            "gangway-pipeline-1000-prometheus",
            ports[4],
            &small_prometheus,
            Some(load(1000)),
            &[],
        )?,
        start(
            "gangway-pipeline-1000",
            ports[1],
            &small,
            Some(load(1000)),
            &[],
        )?,
        start(
            "gangway-pipeline-1000-tracing",
            ports[5],
            &small_tracing,
            Some(load(1000)),
            &TRACING_ENV,
        )?,
        start(
            "gangway-pipeline-1000-file-log",
            ports[6],
            &small_file_log,
            Some(load(1000)),
            &[],
        )?,
        start(&large_name, ports[2], &large, None, &[])?,
        Contender {
            name: "nginx".into(),
            proc_: super::proxy::nginx_proxy(
                &dir,
                ports[3],
                up_port,
                p.workers,
                None,
                super::NGINX_CONNECTIONS,
            )?,
            port: ports[3],
            load: None,
        },
    ];
    let setup = format!(
        "wrk -t1 -c{} -d{}s, {} interleaved rounds after {} s warm-up, {} worker(s) each, io_uring; \
         every request is GET /forecast/<random consumer key>/52.37,4.89; pipeline = request-transformer \
         (ordered before key-auth) + key-auth + acl (-prometheus: plus a global prometheus plugin with \
         every metric on; -tracing: plus a global opentelemetry plugin, every tracing instrumentation on, \
         1% of traces exported to the upstream nginx; -file-log: plus a global file-log plugin writing \
         every entry to /dev/null); upstream: nginx (1 worker) returning a 24-byte body; \
         medians shown; each round starts one contender later than the last. {notes}",
        p.connections, p.duration_s, p.repeat, p.warmup_s, p.workers
    );
    let (summary, rounds) = compare(
        &root,
        &dir,
        "pipeline",
        &setup,
        p,
        &contenders,
        &load(consumers),
        "gangway-plain",
    )?;
    // Contender order: plain, -prometheus, pipeline-1000, -tracing, -file-log, large, nginx.
    let mut line = String::new();
    let mut pairs = vec![
        ("prometheus plugin (all metrics on)", 1),
        (
            "tracing (all instrumentations, 1% exported by opentelemetry)",
            3,
        ),
        ("file-log (every entry written to /dev/null)", 4),
    ];
    if consumers == 1000 {
        pairs.push(("the same pipeline, a second instance (the noise floor)", 5));
    }
    for (what, i) in pairs {
        let (with, without) = (&summary[i], &summary[2]);
        let _ = writeln!(
            line,
            "\n{what} against the same pipeline without it: {:.3}x RPS by medians; RPS paired {}; \
             CPU per request {:+.1} us by medians, paired {}",
            with.rps / without.rps,
            Paired::of(&rounds[i], &rounds[2]),
            with.cpu_us_per_req - without.cpu_us_per_req,
            Paired::of_cpu(&rounds[i], &rounds[2]),
        );
    }
    println!("{line}");
    let latest = root.join("benches/results/pipeline-latest.md");
    let mut doc = std::fs::read_to_string(&latest)?;
    doc.push_str(&line);
    std::fs::write(&latest, doc)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
