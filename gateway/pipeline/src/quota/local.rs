//! `policy: local`: one count per node, shared by every worker, with no lock on the path of a
//! request.
//!
//! Counts live in a lock-free table per window length ([`super::counts`]), keyed by a hash of
//! Kong's key (no string is stored or compared). A request counts itself as it reads (one lookup per
//! window), and a refused request is taken back, so refused requests are not counted, as in
//! Kong, and concurrent requests can never pass a limit together.
//!
//! When a window of a length rolls over, a new map replaces the old one in a single atomic
//! swap: expiry costs nothing per key, as Kong's shared dictionary entries expire with their
//! TTL. The old map is freed on a thread of its own, never on a worker.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{QuotaStore, Usage, Window};

/// Kong's window lengths, in seconds: second, minute, hour, day, month, year.
const LENGTHS: [u64; 6] = [1, 60, 3_600, 86_400, 2_592_000, 31_536_000];

/// How long a replaced map waits before it is freed: requests that loaded it are long done.
const REAP_AFTER: Duration = Duration::from_secs(2);

/// The counts of every window that started at `start_ms`, for one window length.
struct Generation {
    start_ms: i64,
    counts: super::counts::Counts,
}

impl Generation {
    /// Sized for `expected` keys: the windows of a length mostly count the same clients as
    /// the last ones, so a new map starts at the old one's size and rarely grows under load.
    fn new(start_ms: i64, expected: usize) -> Arc<Generation> {
        Arc::new(Generation {
            start_ms,
            counts: super::counts::Counts::with_capacity(expected),
        })
    }
}

/// The node's counters (Kong's `kong_rate_limiting_counters` dictionary). Empty by default.
pub struct LocalCounters {
    generations: [ArcSwap<Generation>; LENGTHS.len()],
    /// Hashes Kong's key into the map's.
    hasher: RandomState,
    /// Replaced maps go here, with when they were replaced, to be freed off the workers.
    reaper: Option<Sender<(Instant, Arc<Generation>)>>,
    /// The most keys a generation counts; 0 for no bound.
    max_keys: usize,
    /// Requests that passed uncounted because their generation was full.
    uncounted: AtomicU64,
}

impl Default for LocalCounters {
    fn default() -> Self {
        let (tx, rx) = channel::<(Instant, Arc<Generation>)>();
        let reaper = std::thread::Builder::new()
            .name("gangway-ratelimit-reaper".into())
            .spawn(move || {
                // Each waits from when it was replaced, not from when the one before it was
                // freed: second windows replace a map every second, faster than REAP_AFTER.
                for (replaced, old) in rx {
                    std::thread::sleep(
                        (replaced + REAP_AFTER).saturating_duration_since(Instant::now()),
                    );
                    drop(old);
                }
            })
            .ok()
            .map(|_| tx);
        LocalCounters {
            generations: std::array::from_fn(|_| ArcSwap::new(Generation::new(i64::MIN, 0))),
            hasher: RandomState::new(),
            reaper,
            max_keys: gangway_config::settings::DEFAULT_RATE_LIMITING_LOCAL_MAX_KEYS,
            uncounted: AtomicU64::new(0),
        }
    }
}

impl LocalCounters {
    /// Counters that count at most `max_keys` keys per window length at once (0: no
    /// bound).
    pub fn with_max_keys(max_keys: usize) -> LocalCounters {
        LocalCounters {
            max_keys,
            ..LocalCounters::default()
        }
    }

    /// Requests that passed uncounted because their window length held `max_keys` keys.
    pub fn uncounted(&self) -> u64 {
        self.uncounted.load(Ordering::Relaxed)
    }

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
            let next = Generation::new(window.start_ms, current.counts.len());
            let previous = cell.compare_and_swap(&*current, next);
            if Arc::ptr_eq(&previous, &current) {
                drop(current);
                if let Some(reaper) = &self.reaper {
                    let _ = reaper.send((Instant::now(), arc_swap::Guard::into_inner(previous)));
                }
                return cell.load();
            }
        }
    }

    /// A 64-bit hash of Kong's key of each of `windows`: with a million live keys, two
    /// collide with a probability of about 3 in 100 million.
    fn keys<'w>(&'w self, windows: &'w [Window]) -> impl Iterator<Item = (&'w Window, u64)> {
        super::window_keys(&self.hasher, windows)
    }

    /// The count of `window` so far.
    pub fn count(&self, window: &Window) -> u64 {
        let generation = self.generation(window);
        let mut state = self.hasher.build_hasher();
        window.hash_key(&mut state);
        generation.counts.get(state.finish())
    }

    /// Live counters, over every window length (for memory accounting and tests).
    pub fn len(&self) -> usize {
        self.generations.iter().map(|g| g.load().counts.len()).sum()
    }

    /// True when no counter is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds one to the count of `key` in `generation` and returns the count before. A key new
    /// to a full generation is not counted (its count stays 0): a flood of distinct keys
    /// cannot take memory without bound, and the keys already counted keep counting.
    fn count_in(&self, generation: &Generation, key: u64) -> u64 {
        if let Some(before) = generation.counts.increment_within(key, self.max_keys) {
            return before;
        }
        let n = self.uncounted.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                uncounted = n,
                max_keys = self.max_keys,
                "rate-limiting: local counters are full (rate_limiting_local_max_keys); \
                 requests with new keys pass uncounted until the window rolls over"
            );
        }
        0
    }
}

impl QuotaStore for LocalCounters {
    fn usage(&self, windows: &[Window]) -> Usage {
        let mut counts = Vec::with_capacity(windows.len());
        // Every key's line is asked for before any is counted, so that their cache misses
        // overlap; a request has at most one window per length, so one chunk.
        for chunk in windows.chunks(LENGTHS.len()) {
            let mut found: [Option<(arc_swap::Guard<Arc<Generation>>, u64)>; LENGTHS.len()] =
                Default::default();
            for (slot, (window, key)) in found.iter_mut().zip(self.keys(chunk)) {
                let generation = self.generation(window);
                generation.counts.prefetch(key);
                *slot = Some((generation, key));
            }
            counts.extend(
                found
                    .iter()
                    .flatten()
                    .map(|(generation, key)| self.count_in(generation, *key)),
            );
        }
        Usage::Ready(Ok(counts))
    }

    fn increment(&self, _windows: &[Window]) {}

    fn refund(&self, windows: &[Window]) {
        for (window, key) in self.keys(windows) {
            self.generation(window).counts.add(key, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(who: &str, start_ms: i64) -> Window {
        Window {
            scope: "ratelimit:r:s:".into(),
            identifier: who.into(),
            period: "minute",
            start_ms,
            seconds: 60,
        }
    }

    /// A request that passes: counted by `usage`.
    fn pass(counters: &LocalCounters, windows: &[Window]) {
        let _ = counters.usage(windows);
    }

    /// Second windows replace a map every second: each is freed REAP_AFTER after it was
    /// replaced, not one per REAP_AFTER (which let them pile up without end).
    #[test]
    fn replaced_maps_are_freed_as_fast_as_they_are_replaced() {
        let counters = LocalCounters::default();
        let mut replaced = Vec::new();
        for second in 0..10 {
            let window = Window {
                seconds: 1,
                period: "second",
                ..minute("c", second * 1000)
            };
            pass(&counters, std::slice::from_ref(&window));
            replaced.push(Arc::downgrade(&counters.generations[0].load_full()));
        }
        replaced.pop();
        let deadline = Instant::now() + REAP_AFTER + Duration::from_secs(2);
        while replaced.iter().any(|g| g.strong_count() > 0) {
            let held = replaced.iter().filter(|g| g.strong_count() > 0).count();
            assert!(
                Instant::now() < deadline,
                "{held} of 9 replaced maps still held {:?} after they were replaced",
                REAP_AFTER + Duration::from_secs(2)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A flood of distinct keys stops taking memory at `max_keys`: new keys pass
    /// uncounted (counted as 0), and keys already counted keep counting.
    #[test]
    fn a_full_generation_counts_no_new_keys() {
        let counters = LocalCounters::with_max_keys(3);
        let counts = |who: &str| match counters.usage(&[minute(who, 0)]) {
            Usage::Ready(Ok(before)) => before,
            _ => panic!("the local store answers at once"),
        };
        for who in ["a", "b", "c"] {
            pass(&counters, &[minute(who, 0)]);
        }
        for n in 0..5 {
            assert_eq!(counts(&format!("flood-{n}")), [0]);
        }
        assert_eq!(counters.len(), 3, "no key past the bound");
        assert_eq!(counters.uncounted(), 5);
        assert_eq!(counts("a"), [1], "a counted key keeps counting");
        assert_eq!(counters.count(&minute("a", 0)), 2);
        // The next window starts empty.
        pass(&counters, &[minute("d", 60_000)]);
        assert_eq!(counters.count(&minute("d", 60_000)), 1);
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
                        pass(counters, std::slice::from_ref(window));
                    }
                });
            }
        });
        assert_eq!(counters.count(&window), 40_000);
    }

    #[test]
    fn a_refund_takes_a_refused_request_back() {
        let counters = LocalCounters::default();
        let window = [minute("k", 0)];
        pass(&counters, &window);
        pass(&counters, &window);
        counters.refund(&window);
        assert_eq!(counters.count(&window[0]), 1);
    }

    #[test]
    fn a_new_window_drops_the_counts_of_the_old_one() {
        let counters = LocalCounters::default();
        pass(&counters, &[minute("a:0", 0), minute("b:0", 0)]);
        assert_eq!(counters.len(), 2);
        let next = minute("a:60000", 60_000);
        assert_eq!(counters.count(&next), 0);
        pass(&counters, std::slice::from_ref(&next));
        assert_eq!(counters.len(), 1, "the minute starting at 0 is gone");
        assert_eq!(counters.count(&next), 1);
    }

    #[test]
    fn windows_of_different_lengths_keep_their_own_generations() {
        let counters = LocalCounters::default();
        let hour = Window {
            scope: "ratelimit:r:s:".into(),
            identifier: "h".into(),
            period: "hour",
            start_ms: 0,
            seconds: 3_600,
        };
        pass(&counters, std::slice::from_ref(&hour));
        pass(&counters, &[minute("m:60000", 60_000)]);
        assert_eq!(counters.count(&hour), 1, "a minute rollover keeps the hour");
    }

    /// A request's windows share their owner's text and hash it once: each still counts
    /// under the key a lone window of the same owner and period gets.
    #[test]
    fn a_requests_windows_count_under_their_own_keys() {
        let counters = LocalCounters::default();
        let minute = minute("alice", 60_000);
        let hour = Window {
            period: "hour",
            start_ms: 0,
            seconds: 3_600,
            ..minute.clone()
        };
        assert!(minute.same_owner(&hour));
        pass(&counters, &[minute.clone(), hour.clone()]);
        pass(&counters, &[minute.clone(), hour.clone()]);
        let lone_minute = Window {
            scope: "ratelimit:r:s:".into(),
            identifier: "alice".into(),
            ..minute.clone()
        };
        assert!(!lone_minute.same_owner(&minute));
        assert_eq!(counters.count(&lone_minute), 2);
        assert_eq!(counters.count(&hour), 2);
        let bob = Window {
            identifier: "bob".into(),
            ..minute
        };
        assert_eq!(counters.count(&bob), 0);
    }
}
