//! `cargo xtask bench ratelimit`: what rate-limiting by consumer costs. At 1,000 and at
//! `--consumers` consumers, each with a key-auth key: key-auth alone (the base), then
//! key-auth + rate-limiting with the local policy, the redis policy in realtime, and the
//! redis policy with `sync_rate`; nginx with `limit_req` keyed by the API key is the peer for
//! local limiting, next to nginx without it. The limits are far above the load, so every
//! request is counted and none is refused: the table measures counting, not refusing.
//!
//! For the redis contenders it also reports Redis round trips per request (from gangway's
//! `/status`) and Redis commands per request (from Redis's `INFO commandstats`), measured
//! over one extra wrk run each.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gangway_test_support::redis::Redis;

use super::http_client::Http;
use super::{
    Contender, Load, Paired, Params, Proc, build_release, compare, free_port, gangway_with_env,
    nginx, random_key_load, rss_mb, scratch_dir, upstream, wait_port_for, wrk,
};

/// How a contender counts.
#[derive(Clone, Copy)]
enum Policy {
    None,
    Local,
    Redis,
    /// Redis realtime with one connection shared by the workers (`redis_connections =
    /// "shared"`), against the default of one per worker.
    RedisShared,
    RedisSync,
}

impl Policy {
    fn label(self) -> &'static str {
        match self {
            Policy::None => "key-auth",
            Policy::Local => "local",
            Policy::Redis => "redis",
            Policy::RedisShared => "redis-shared",
            Policy::RedisSync => "redis-sync_rate",
        }
    }

    /// The rate-limiting plugin's YAML (indented for a route's `plugins:`), if any.
    fn plugin(self, redis_port: u16) -> String {
        let head = "          - name: rate-limiting\n            config:\n              minute: 1000000000\n              hour: 1000000000\n              limit_by: consumer\n";
        // Each redis contender counts in a database of its own: a key another contender
        // created would spare it the key's creation (its TTL), which every new window costs.
        let database = match self {
            Policy::RedisSync => 1,
            Policy::RedisShared => 2,
            _ => 0,
        };
        let redis = format!(
            "              policy: redis\n              redis: {{host: 127.0.0.1, port: {redis_port}, timeout: 2000, database: {database}}}\n"
        );
        match self {
            Policy::None => String::new(),
            Policy::Local => head.to_string(),
            Policy::Redis | Policy::RedisShared => format!("{head}{redis}"),
            Policy::RedisSync => format!("{head}{redis}              sync_rate: 1\n"),
        }
    }
}

/// `consumers` consumers with keys `k00000001`.., behind key-auth and `policy`.
fn config(upstream: u16, consumers: usize, policy: Policy, redis_port: u16) -> String {
    let mut out = String::with_capacity(consumers * 64 + 1024);
    let _ = write!(
        out,
        "_format_version: \"3.0\"\nservices:\n  - name: api\n    url: http://127.0.0.1:{upstream}\n    routes:\n      - name: api\n        paths: [\"/\"]\n        plugins:\n          - name: key-auth\n{}consumers:\n",
        policy.plugin(redis_port)
    );
    for i in 1..=consumers {
        let _ = writeln!(
            out,
            "  - {{username: u{i}, keyauth_credentials: [{{key: k{i:08}}}]}}"
        );
    }
    out
}

/// Every request carries a random consumer's key in `apikey`.
fn load(consumers: usize) -> Load {
    random_key_load(consumers, 7, "wrk.format(\"GET\", \"/\", {apikey = key})")
}

/// nginx as a proxy with or without `limit_req` keyed by the API key (a high rate, so
/// nothing is refused).
fn nginx_contender(
    dir: &std::path::Path,
    name: &str,
    port: u16,
    up_port: u16,
    workers: usize,
    limit: bool,
) -> Result<Proc> {
    let (zone, apply) = if limit {
        (
            "  limit_req_zone $http_apikey zone=per_key:256m rate=1000000r/s;\n",
            "limit_req zone=per_key burst=1000000 nodelay; ",
        )
    } else {
        ("", "")
    };
    nginx(
        dir,
        name,
        &format!(
            "{zone}  upstream backend {{ server 127.0.0.1:{up_port}; keepalive 512; keepalive_requests 100000; }}\n  \
             server {{ listen 127.0.0.1:{port} reuseport backlog=4096; location / {{ {apply}proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
        workers,
        super::NGINX_CONNECTIONS,
    )
}

/// Redis's `calls` over every command, from `INFO commandstats`.
fn redis_commands(redis: &Redis) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// gangway's `rate_limiting.redis_round_trips`.
fn round_trips(status_port: u16) -> Result<u64> {
    let reply = Http::new(status_port).call("GET", "/status", &[], None)?;
    reply.json()?["rate_limiting"]["redis_round_trips"]
        .as_u64()
        .context("/status has no rate_limiting.redis_round_trips")
}

/// One size: the table, then round trips and commands per request for the redis modes.
fn run_size(
    root: &std::path::Path,
    bin: &std::path::Path,
    p: &Params,
    consumers: usize,
    redis: &Redis,
) -> Result<()> {
    let dir = scratch_dir()?.join(format!("ratelimit-{consumers}"));
    std::fs::create_dir_all(&dir)?;
    let (_upstream, up_port) = upstream(&dir)?;
    let mut notes = String::new();
    let mut contenders = Vec::new();
    // key-auth between local and redis, and sync_rate next to redis: each goal's ratio is
    // taken against a contender measured close by in the same round.
    for policy in [
        Policy::Local,
        Policy::None,
        Policy::Redis,
        Policy::RedisSync,
        Policy::RedisShared,
    ] {
        let name = format!("gangway-{}", policy.label());
        let port = free_port()?;
        let began = Instant::now();
        let cfg = config(up_port, consumers, policy, redis.port());
        let sharing = match policy {
            Policy::RedisShared => "shared",
            _ => "per_worker",
        };
        let env = [("GANGWAY_REDIS_CONNECTIONS", sharing)];
        let proc_ = gangway_with_env(bin, &dir, &name, "io_uring", port, &cfg, p.workers, &env)?;
        wait_port_for(port, &name, Duration::from_secs(300))?;
        let _ = write!(
            notes,
            "{name}: ready in {:.1} s, RSS {:.0} MB; ",
            began.elapsed().as_secs_f64(),
            rss_mb(proc_.child.id())
        );
        contenders.push((
            policy,
            Contender {
                name,
                proc_,
                port,
                load: None,
            },
        ));
    }
    for (name, limit) in [("nginx", false), ("nginx-limit_req", true)] {
        let port = free_port()?;
        contenders.push((
            Policy::None,
            Contender {
                name: name.into(),
                proc_: nginx_contender(&dir, name, port, up_port, p.workers, limit)?,
                port,
                load: None,
            },
        ));
    }
    let wrk_load = load(consumers);
    // Round trips and commands per request, one extra run per redis contender.
    let mut per_request = String::new();
    for (policy, c) in &contenders {
        if !matches!(policy, Policy::Redis | Policy::RedisSync) {
            continue;
        }
        let status = c.proc_.status.context("gangway has a status port")?;
        let (trips, commands) = (round_trips(status)?, redis_commands(redis));
        let report = wrk(&dir, c.port, p.connections, p.duration_s.min(5), &wrk_load)?;
        // A batched store flushes every second: let the last flush land before counting.
        std::thread::sleep(Duration::from_millis(1500));
        let requests = report["requests"].as_f64().unwrap_or(0.0).max(1.0);
        let trips = (round_trips(status)? - trips) as f64 / requests;
        let commands = (redis_commands(redis) - commands) as f64 / requests;
        let _ = write!(
            per_request,
            "{}: {trips:.3} Redis round trips and {commands:.3} Redis commands per request; ",
            c.name
        );
    }
    let setup = format!(
        "{consumers} consumers, each request with a random consumer's key; wrk -t1 -c{} -d{}s, {} interleaved rounds after {} s warm-up, \
         {} worker(s) each, io_uring; rate-limiting by consumer with minute and hour limits far above the load (every request counted, none refused); \
         sync_rate 1; redis-server (Debian) on loopback, a database per redis contender; nginx-limit_req keys limit_req_zone by the apikey header; upstream: nginx (1 worker) \
         returning a 24-byte body; medians shown. {per_request}{notes}",
        p.connections, p.duration_s, p.repeat, p.warmup_s, p.workers
    );
    let policies: Vec<Policy> = contenders.iter().map(|(policy, _)| *policy).collect();
    let contenders: Vec<Contender> = contenders.into_iter().map(|(_, c)| c).collect();
    let bench = format!("ratelimit-{consumers}");
    let (_, rounds) = compare(
        root,
        &dir,
        &bench,
        &setup,
        p,
        &contenders,
        &wrk_load,
        "gangway-key-auth",
    )?;
    let base = policies
        .iter()
        .position(|policy| matches!(policy, Policy::None))
        .context("key-auth contender")?;
    let mut lines = String::new();
    for (i, policy) in policies.iter().enumerate() {
        if matches!(policy, Policy::Local | Policy::Redis | Policy::RedisSync) {
            let _ = write!(
                lines,
                "\n{} against gangway-key-auth: {}\n",
                contenders[i].name,
                Paired::of(&rounds[i], &rounds[base])
            );
        }
    }
    println!("{lines}");
    let latest = root.join(format!("benches/results/{bench}-latest.md"));
    let mut doc = std::fs::read_to_string(&latest)?;
    doc.push_str(&lines);
    std::fs::write(&latest, doc)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs the benchmark at 1,000 consumers and at `consumers`.
pub fn run(p: &Params, consumers: usize) -> Result<()> {
    let (root, bin) = build_release()?;
    let redis = Redis::start();
    for size in [1000, consumers] {
        redis.cli(&["FLUSHALL"]);
        run_size(&root, &bin, p, size, &redis)?;
    }
    Ok(())
}
