//! `policy: local`: one count per node, shared by every worker, with no lock on the path of a
//! request.
//!
//! Counts live in a lock-free map per window length. When a window of that length rolls over,
//! a new map replaces the old one in a single atomic swap, and the old one is dropped once
//! the last request that read it is done: expiry costs nothing per key, as Kong's shared
//! dictionary entries expire with their TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::{QuotaStore, Usage, Window};

/// Kong's window lengths, in seconds: second, minute, hour, day, month, year.
const LENGTHS: [u64; 6] = [1, 60, 3_600, 86_400, 2_592_000, 31_536_000];

/// The counts of every window that started at `start_ms`, for one window length.
struct Generation {
    start_ms: i64,
    counts: papaya::HashMap<String, AtomicU64>,
}

impl Generation {
    fn new(start_ms: i64) -> Arc<Generation> {
        Arc::new(Generation {
            start_ms,
            counts: papaya::HashMap::new(),
        })
    }
}

/// The node's counters (Kong's `kong_rate_limiting_counters` dictionary). Empty by default.
pub struct LocalCounters {
    generations: [ArcSwap<Generation>; LENGTHS.len()],
}

impl Default for LocalCounters {
    fn default() -> Self {
        LocalCounters {
            generations: std::array::from_fn(|_| ArcSwap::new(Generation::new(i64::MIN))),
        }
    }
}

impl LocalCounters {
    /// The generation that counts `window`: the current one, replaced first when the window
    /// is newer. A request that computed its window just before a rollover counts in the new
    /// generation under its old key, which nothing reads again.
    fn generation(&self, window: &Window) -> arc_swap::Guard<Arc<Generation>> {
        let slot = LENGTHS
            .iter()
            .position(|&l| l == window.seconds)
            .unwrap_or(LENGTHS.len() - 1);
        let cell = &self.generations[slot];
        loop {
            let current = cell.load();
            if current.start_ms >= window.start_ms {
                return current;
            }
            let previous = cell.compare_and_swap(&*current, Generation::new(window.start_ms));
            if Arc::ptr_eq(&previous, &current) {
                return cell.load();
            }
        }
    }

    /// The count of `window` so far.
    pub fn count(&self, window: &Window) -> u64 {
        let generation = self.generation(window);
        generation
            .counts
            .pin()
            .get(window.key.as_str())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Live counters, over every window length (for memory accounting and tests).
    pub fn len(&self) -> usize {
        self.generations.iter().map(|g| g.load().counts.len()).sum()
    }

    /// True when no counter is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl QuotaStore for LocalCounters {
    fn usage(&self, windows: &[Window]) -> Usage {
        Usage::Ready(Ok(windows.iter().map(|w| self.count(w)).collect()))
    }

    fn increment(&self, windows: &[Window]) {
        for window in windows {
            let generation = self.generation(window);
            let counts = generation.counts.pin();
            match counts.get(window.key.as_str()) {
                Some(count) => count.fetch_add(1, Ordering::Relaxed),
                None => counts
                    .get_or_insert_with(window.key.clone(), || AtomicU64::new(0))
                    .fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(key: &str, start_ms: i64) -> Window {
        Window {
            key: key.to_owned(),
            start_ms,
            seconds: 60,
        }
    }

    #[test]
    fn counts_are_shared_by_every_thread_and_exact() {
        let counters = Arc::new(LocalCounters::default());
        let window = minute("ratelimit:r:s:c:0:minute", 0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let counters = &counters;
                let window = &window;
                s.spawn(move || {
                    for _ in 0..10_000 {
                        counters.increment(std::slice::from_ref(window));
                    }
                });
            }
        });
        assert_eq!(counters.count(&window), 40_000);
    }

    #[test]
    fn a_new_window_drops_the_counts_of_the_old_one() {
        let counters = LocalCounters::default();
        counters.increment(&[minute("a:0", 0), minute("b:0", 0)]);
        assert_eq!(counters.len(), 2);
        let next = minute("a:60000", 60_000);
        assert_eq!(counters.count(&next), 0);
        counters.increment(std::slice::from_ref(&next));
        assert_eq!(counters.len(), 1, "the minute starting at 0 is gone");
        assert_eq!(counters.count(&next), 1);
    }

    #[test]
    fn windows_of_different_lengths_keep_their_own_generations() {
        let counters = LocalCounters::default();
        let hour = Window {
            key: "h".into(),
            start_ms: 0,
            seconds: 3_600,
        };
        counters.increment(std::slice::from_ref(&hour));
        counters.increment(&[minute("m:60000", 60_000)]);
        assert_eq!(counters.count(&hour), 1, "a minute rollover keeps the hour");
    }
}
