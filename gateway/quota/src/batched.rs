//! `sync_rate > 0`: counting on the node, flushed to Redis in batches (Kong's batched mode,
//! per node rather than per worker).
//!
//! A window's first request on the node reads its count from Redis (one round trip); later
//! requests add to a local delta and read `remote + delta` without I/O. Every `sync_rate`
//! seconds a background thread sends the delta of every window counted since the last flush
//! in one pipeline (increment, and set the expiry of a new key to the window's end), and
//! reads back each total, which then includes the other nodes' requests. A failed flush
//! keeps its deltas for the next one.
//!
//! Overshoot: a node sees other nodes' requests only at its flushes, so with N nodes, a
//! window admits at most `limit + (N - 1) × (requests one node admits in sync_rate seconds)`
//! requests, and never more than `N × limit`. One node alone is exact.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gangway_pipeline::quota::{QuotaStore, Usage, UsageResult, Window};

use super::connect::Target;
use super::stats::Stats;

/// Kong's flush script, returning the new total.
const FLUSH: &str = r#"
local existed = redis.call("exists", KEYS[1])
local total = redis.call("incrby", KEYS[1], ARGV[1])
if existed == 0 then
  redis.call("expireat", KEYS[1], ARGV[2])
end
return total
"#;

/// One window's count on this node.
struct Entry {
    /// The Redis key.
    key: String,
    /// Redis's count at the last read or flush.
    remote: AtomicU64,
    /// Requests counted here and not yet flushed.
    delta: AtomicU64,
    /// When the window ends, epoch seconds (the key's EXPIREAT).
    ends_at: u64,
}

/// A batched store.
pub struct Batched {
    inner: Arc<Inner>,
}

struct Inner {
    target: Arc<Target>,
    /// By a 64-bit hash of the window's Kong key (see [`Inner::slot`]).
    entries: papaya::HashMap<u64, Arc<Entry>>,
    hasher: RandomState,
    /// The flush script (its SHA-1 computed once).
    flush_script: redis::Script,
    stats: Arc<Stats>,
}

impl Batched {
    /// A store on `target` that flushes every `sync_rate` seconds from a thread of its own.
    pub fn start(target: Arc<Target>, sync_rate: f64, stats: Arc<Stats>) -> Arc<Batched> {
        let inner = Arc::new(Inner {
            target,
            entries: papaya::HashMap::new(),
            hasher: RandomState::new(),
            flush_script: redis::Script::new(FLUSH),
            stats,
        });
        let weak = Arc::downgrade(&inner);
        let every = Duration::from_secs_f64(sync_rate.max(0.02));
        let spawned = std::thread::Builder::new()
            .name("gangway-ratelimit-sync".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "rate-limiting: no runtime for Redis sync");
                        return;
                    }
                };
                // A LocalSet: the flusher's connection drives itself as a local task.
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let Some(inner) = weak.upgrade() else { return };
                        inner.flush().await;
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "rate-limiting: cannot start the Redis sync thread");
        }
        Arc::new(Batched { inner })
    }
}

impl Inner {
    /// Sends every delta in one pipeline (in a cluster, where a pipeline may not cross slots,
    /// one call per key) and
    /// takes back the totals; drops windows that have ended.
    async fn flush(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Only windows counted here since the last flush: their totals come back fresh.
        // A window without local traffic keeps its last total until it has traffic again;
        // it is then refreshed within one flush, which keeps the overshoot bound.
        let live: Vec<Arc<Entry>> = {
            let entries = self.entries.pin();
            entries.retain(|_, e| e.ends_at > now || e.delta.load(Ordering::Relaxed) > 0);
            entries
                .values()
                .filter(|e| e.delta.load(Ordering::Relaxed) > 0)
                .cloned()
                .collect()
        };
        if live.is_empty() {
            return;
        }
        let deltas: Vec<u64> = live
            .iter()
            .map(|e| e.delta.swap(0, Ordering::AcqRel))
            .collect();
        let script = &self.flush_script;
        let cluster = self.target.cluster;
        let totals = self
            .target
            .run(async |conn| {
                if cluster {
                    let mut totals = Vec::with_capacity(live.len());
                    for (entry, delta) in live.iter().zip(&deltas) {
                        let mut call = script.prepare_invoke();
                        call.key(&entry.key).arg(delta).arg(entry.ends_at);
                        totals.push(call.invoke_async::<u64>(&mut *conn).await?);
                        if totals.len() > 1 {
                            self.target.stats.round_trip();
                        }
                    }
                    return Ok(totals);
                }
                // A pipeline of EVALSHA after one SCRIPT LOAD, so a fresh server works too.
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(FLUSH)
                    .query_async::<String>(&mut *conn)
                    .await?;
                let mut pipe = redis::pipe();
                for (entry, delta) in live.iter().zip(&deltas) {
                    pipe.cmd("EVALSHA")
                        .arg(script.get_hash())
                        .arg(1)
                        .arg(&entry.key)
                        .arg(delta)
                        .arg(entry.ends_at);
                }
                pipe.query_async::<Vec<u64>>(&mut *conn).await
            })
            .await;
        match totals {
            Ok(totals) => {
                for (entry, total) in live.iter().zip(totals) {
                    entry.remote.store(total, Ordering::Release);
                }
            }
            Err(e) => {
                for (entry, delta) in live.iter().zip(&deltas) {
                    entry.delta.fetch_add(*delta, Ordering::AcqRel);
                }
                self.stats
                    .record(&format!("sync to {}", self.target.describe), &e);
            }
        }
    }

    /// The map key of `window`, without building its Kong key.
    fn slot(&self, window: &Window) -> u64 {
        let mut state = self.hasher.build_hasher();
        window.hash_key(&mut state);
        state.finish()
    }

    fn cached(&self, window: &Window) -> Option<u64> {
        let entries = self.entries.pin();
        let entry = entries.get(&self.slot(window))?;
        Some(entry.remote.load(Ordering::Acquire) + entry.delta.load(Ordering::Acquire))
    }

    /// Reads the windows this node has no count for yet, then answers every window.
    async fn read(self: Arc<Inner>, windows: Vec<Window>, missing: Vec<Window>) -> UsageResult {
        let keys: Vec<String> = missing.iter().map(|w| self.target.key(w)).collect();
        // The keys of one request share a slot in a cluster, so one MGET serves both modes.
        let read = self
            .target
            .run(async |conn| {
                redis::cmd("MGET")
                    .arg(&keys)
                    .query_async::<Vec<Option<u64>>>(&mut *conn)
                    .await
            })
            .await;
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                self.stats
                    .record(&format!("reading from {}", self.target.describe), &e);
                return Err(e);
            }
        };
        let entries = self.entries.pin();
        for ((window, key), remote) in missing.iter().zip(keys).zip(read) {
            entries.get_or_insert_with(self.slot(window), || {
                Arc::new(Entry {
                    key,
                    remote: AtomicU64::new(remote.unwrap_or_default()),
                    delta: AtomicU64::new(0),
                    ends_at: ends_at(window),
                })
            });
        }
        drop(entries);
        Ok(windows
            .iter()
            .map(|w| self.cached(w).unwrap_or_default())
            .collect())
    }
}

fn ends_at(window: &Window) -> u64 {
    (window.start_ms / 1000).max(0) as u64 + window.seconds
}

impl QuotaStore for Batched {
    fn usage(&self, windows: &[Window]) -> Usage {
        let cached: Vec<Option<u64>> = windows.iter().map(|w| self.inner.cached(w)).collect();
        if cached.iter().all(Option::is_some) {
            return Usage::Ready(Ok(cached.into_iter().flatten().collect()));
        }
        let missing: Vec<Window> = windows
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .map(|(w, _)| w.clone())
            .collect();
        Usage::Pending(Box::pin(self.inner.clone().read(windows.to_vec(), missing)))
    }

    fn increment(&self, windows: &[Window]) {
        let inner = &self.inner;
        let entries = inner.entries.pin();
        for window in windows {
            let slot = inner.slot(window);
            match entries.get(&slot) {
                Some(entry) => {
                    entry.delta.fetch_add(1, Ordering::AcqRel);
                }
                None => {
                    entries.get_or_insert_with(slot, || {
                        Arc::new(Entry {
                            key: inner.target.key(window),
                            remote: AtomicU64::new(0),
                            delta: AtomicU64::new(1),
                            ends_at: ends_at(window),
                        })
                    });
                }
            }
        }
    }
}
