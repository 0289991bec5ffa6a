//! The body of Kong's `GET /status` for this node, served by both the Status API and the
//! Admin API: memory, connection counters, and the config's state.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::gateway::Counters;
use gangway_pipeline::quota::Quotas;

/// Kong's `/status` body, with sizes in `unit` (`b`, `k`, `m` or `g`; `b` gives numbers, the
/// others strings). `config` is the last member: `("configuration_hash", <hash>)` without a
/// database, `("database", {"reachable": ..})` with one. A bad unit is Kong's message.
pub fn status_body(
    counters: &Counters,
    quotas: &Quotas,
    unit: &str,
    config: (&str, Value),
) -> Result<Value, String> {
    if !matches!(unit, "b" | "k" | "m" | "g") {
        return Err(format!("invalid unit \"{unit}\" (expected b, k, m or g)"));
    }
    let states = counters.open_states();
    let redis = quotas
        .redis
        .as_ref()
        .map(|r| r.counters())
        .unwrap_or_default();
    let mut body = json!({
        "memory": {
            "lua_shared_dicts": {},
            "workers_lua_vms": [{"http_allocated_gc": format_size(rss_bytes(), unit), "pid": std::process::id()}],
        },
        "server": {
            "connections_active": states.active,
            "connections_reading": states.reading,
            "connections_writing": states.writing,
            "connections_waiting": states.waiting,
            "connections_accepted": counters.accepted.load(Ordering::Relaxed),
            "connections_handled": counters.handled.load(Ordering::Relaxed),
            "total_requests": counters.total_requests.load(Ordering::Relaxed),
        },
        // gangway's own: the rate-limiting counters on this node, and Redis calls that
        // failed (each one a request proxied without limits, or a 500 when not
        // fault_tolerant).
        "rate_limiting": {
            "local_counters": quotas.local.len(),
            "local_uncounted": quotas.local.uncounted(),
            "redis_round_trips": redis.round_trips,
            "redis_failures": redis.failures,
            "redis_counted_past_max_keys": redis.past_max_keys,
        },
    });
    body[config.0] = config.1;
    Ok(body)
}

/// The process's resident memory, in bytes (0 when /proc cannot tell).
/// The process's resident set in bytes (0 when /proc cannot be read).
pub fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident ... in pages.
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

fn format_size(bytes: u64, unit: &str) -> Value {
    let (div, suffix) = match unit {
        "b" => return json!(bytes),
        "k" => (1024.0, "KiB"),
        "g" => (1024.0 * 1024.0 * 1024.0, "GiB"),
        _ => (1024.0 * 1024.0, "MiB"),
    };
    json!(format!("{:.2} {suffix}", bytes as f64 / div))
}
