//! Redis calls made and failed: counted (for `/status` and the benchmark's round trips per
//! request), and failures logged at most once every ten seconds per process with how many
//! failed since, so an outage under load does not flood the log.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The histogram of Redis call latencies (`/metrics`), in seconds; the binary sets its
/// buckets.
const CALL_SECONDS: &str = "gangway_redis_call_seconds";

/// How often a failure is logged, at most.
const LOG_EVERY_MS: i64 = 10_000;

/// Call and failure counts (all zero by default).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    round_trips: AtomicU64,
    total: AtomicU64,
    past_max_keys: AtomicU64,
    unlogged: AtomicU64,
    last_log_ms: AtomicI64,
    /// Taken on first use, after the binary installed its recorder.
    latency: OnceLock<metrics::Histogram>,
}

impl Stats {
    /// Every failed call so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Every round trip to Redis so far (a pipeline counts once).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Requests counted in Redis at once because their `sync_rate` window was past
    /// `rate_limiting_local_max_keys`.
    pub fn past_max_keys(&self) -> u64 {
        self.past_max_keys.load(Ordering::Relaxed)
    }

    /// Counts a request counted past the bound, and answers how many so far.
    pub fn count_past_max_keys(&self) -> u64 {
        self.past_max_keys.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one round trip.
    pub fn round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long a call took, answered or failed.
    pub fn observe(&self, took: Duration) {
        self.latency
            .get_or_init(|| metrics::histogram!(CALL_SECONDS))
            .record(took.as_secs_f64());
    }

    /// Counts a failure, and logs it when the last log line is old enough.
    pub fn record(&self, what: &str, error: &dyn std::fmt::Display) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if now - last < LOG_EVERY_MS
            || self
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.unlogged.fetch_sub(unlogged, Ordering::Relaxed);
        tracing::error!(
            failures = unlogged,
            total = self.total(),
            error = %error,
            "rate-limiting: Redis {what} failed (fault_tolerant instances proxy without limits meanwhile)"
        );
    }
}
