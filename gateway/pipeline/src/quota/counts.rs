//! A lock-free table of counters keyed by 64-bit hashes: the local policy's hot path.
//!
//! Keys and counts sit side by side in one flat array (open addressing, linear probing), so
//! a lookup costs one cache miss where a map of boxed entries costs several; with a million
//! clients that is most of the price of counting. Slots are claimed with a compare-and-swap
//! on the key and never freed: a table lives as long as its window (the caller drops the whole
//! table when the window rolls over).
//!
//! A table that passes three quarters full is not resized in place. A table of twice the
//! size is put in front of it and new keys go there, and a thread of its own then moves every
//! count of the older tables into the newest and drops them, so a lookup soon costs one
//! table again. (Without the move, a month window that grew from a thousand keys to a
//! million would probe a dozen tables per request for the rest of the month.)
//!
//! The move keeps counts exact. The mover first marks a slot [`MOVING`]: from then on nothing
//! takes from it, while increments still land in it. It copies the count into the newest
//! table, and seals the slot (its count flagged [`MOVED`]) with a compare-and-swap against the
//! count just copied; when increments landed meanwhile it copies the difference and tries
//! again. Counts only ever grow by a copy, so no count is taken back and none can wrap. While
//! a slot is being moved its count reads twice, which can refuse a request but never lets
//! one through. An increment that meets a moved slot retries in the newer table, and an empty
//! slot of an old table is sealed too, so nothing can claim it after the move passed it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// The key of an empty slot; a real key of 0 is stored as 1.
const EMPTY: u64 = 0;

/// The key of an empty slot in a table being emptied: nothing may claim it any more. A real
/// key of this value is stored one lower.
const SEALED: u64 = u64::MAX;

/// A count with this bit has moved to a newer table; the slot counts for nothing.
const MOVED: u64 = 1 << 63;

/// A count with this bit is being copied to a newer table: it may still grow, but nothing
/// takes from it until it has moved.
const MOVING: u64 = 1 << 62;

/// The bits of a count that count.
const COUNT: u64 = MOVING - 1;

/// The smallest table.
const MIN_SLOTS: usize = 1024;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    count: AtomicU64,
}

// SAFETY: two `AtomicU64`s of 0 are `EMPTY` with no count.
unsafe impl super::zeroed::ZeroIsEmpty for Slot {}

impl Slot {
    /// The slot's count, or 0 once it has moved.
    fn live_count(&self) -> u64 {
        live(self.count.load(Ordering::Acquire))
    }
}

struct Table {
    slots: Box<[Slot]>,
    mask: usize,
    used: AtomicUsize,
}

impl Table {
    fn new(slots: usize) -> Table {
        let slots = slots.next_power_of_two().max(MIN_SLOTS);
        Table {
            slots: super::zeroed::slots(slots),
            mask: slots - 1,
            used: AtomicUsize::new(0),
        }
    }

    fn full(&self) -> bool {
        self.used.load(Ordering::Relaxed) * 4 >= self.slots.len() * 3
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: u64) -> Option<&Slot> {
        let mut i = key as usize & self.mask;
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            match slot.key.load(Ordering::Acquire) {
                k if k == key => return Some(slot),
                EMPTY | SEALED => return None,
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// The slot holding `key`, claimed when absent; `None` when the table has no room or
    /// is being emptied.
    fn find_or_claim(&self, key: u64) -> Option<&Slot> {
        let mut i = key as usize & self.mask;
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            let mut seen = slot.key.load(Ordering::Acquire);
            if seen == EMPTY {
                match slot
                    .key
                    .compare_exchange(EMPTY, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        self.used.fetch_add(1, Ordering::Relaxed);
                        return Some(slot);
                    }
                    Err(now) => seen = now,
                }
            }
            match seen {
                k if k == key => return Some(slot),
                SEALED => return None,
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }
}

/// Counters by key, newest table first. Empty by default.
pub struct Counts {
    chain: Arc<Chain>,
}

struct Chain {
    tables: ArcSwap<Vec<Arc<Table>>>,
    /// Held by the thread that empties old tables, so that one move runs at a time and a
    /// count being moved never sits in a table that is itself being emptied.
    moving: Mutex<()>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts::with_capacity(0)
    }
}

impl Counts {
    /// A table with room for `keys` keys before it grows.
    pub fn with_capacity(keys: usize) -> Counts {
        Counts {
            chain: Arc::new(Chain {
                tables: ArcSwap::from_pointee(vec![Arc::new(Table::new(keys * 2))]),
                moving: Mutex::new(()),
            }),
        }
    }

    /// Starts loading the slot where `key` lives (or would go) in the newest table. A
    /// request counts in several windows, each a cache miss once the table outgrows the
    /// caches (measured: most of the local policy's cost); prefetching them all before
    /// counting in any lets the misses overlap, where each count's atomic add would otherwise
    /// wait for the miss before it.
    pub fn prefetch(&self, key: u64) {
        let tables = self.chain.tables.load();
        let newest = &tables[0];
        prefetch_read(&newest.slots[stored(key) as usize & newest.mask]);
    }

    /// The count of `key`.
    pub fn get(&self, key: u64) -> u64 {
        self.total(stored(key))
    }

    fn total(&self, key: u64) -> u64 {
        loop {
            let tables = self.chain.tables.load();
            let mut total = 0;
            let mut saw_moved = false;
            // Oldest first: a count on its way to a newer table is then read twice, never
            // missed.
            for slot in tables.iter().rev().filter_map(|t| t.find(key)) {
                let count = slot.count.load(Ordering::Acquire);
                saw_moved |= count & MOVED != 0;
                total += live(count);
            }
            if !saw_moved || self.chain.is_current(&tables) {
                return total;
            }
        }
    }

    /// Adds one to `key`'s count (`up`), or takes one away (never below zero); returns the
    /// count before.
    pub fn add(&self, key: u64, up: bool) -> u64 {
        match up {
            true => self.increment(stored(key), 0).unwrap_or(0),
            false => self.decrement(stored(key)),
        }
    }

    /// Adds one to `key`'s count and returns the count before; `None`, counting nothing,
    /// when `key` is new and `max_keys` keys (0: no bound) are counted already. Only a new
    /// key pays for the check.
    pub fn increment_within(&self, key: u64, max_keys: usize) -> Option<u64> {
        self.increment(stored(key), max_keys)
    }

    fn increment(&self, key: u64, max_keys: usize) -> Option<u64> {
        let chain = &self.chain;
        loop {
            let tables = chain.tables.load();
            // The newest slot of the key takes the increment; the older ones, read first,
            // add to what it returns.
            let mut newest_slot = None;
            let mut older = 0;
            let mut saw_moved = false;
            for slot in tables.iter().rev().filter_map(|t| t.find(key)) {
                if let Some(previous) = newest_slot.replace(slot) {
                    let count = previous.count.load(Ordering::Acquire);
                    saw_moved |= count & MOVED != 0;
                    older += live(count);
                }
            }
            if saw_moved && !chain.is_current(&tables) {
                // The moved count sits in a table this snapshot does not have.
                continue;
            }
            if newest_slot.is_none() {
                let counted =
                    || -> usize { tables.iter().map(|t| t.used.load(Ordering::Relaxed)).sum() };
                if max_keys > 0 && counted() >= max_keys {
                    return None;
                }
                let newest = &tables[0];
                newest_slot = match newest.full() {
                    false => newest.find_or_claim(key),
                    true => None,
                };
                if newest_slot.is_some() && !chain.is_current(&tables) {
                    // Claimed in a table that is no longer the newest, where others may
                    // already count the key: look again with them in view.
                    continue;
                }
            }
            if let Some(slot) = newest_slot {
                let before = slot.count.fetch_add(1, Ordering::AcqRel);
                if before & (MOVED | MOVING) == 0 {
                    return Some(older + before);
                }
                if before & MOVED == 0 {
                    // The mover carries the increment along, into a table this snapshot may
                    // not have: count afresh, the increment included.
                    return Some(self.total(key).saturating_sub(1));
                }
                // Moved: the increment went nowhere; count in the newer table.
                continue;
            }
            if chain.grow(&tables) {
                let chain = chain.clone();
                let spawned = std::thread::Builder::new()
                    .name("gangway-ratelimit-grow".into())
                    .spawn(move || chain.empty_old_tables());
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "rate-limiting: old counter tables stay until their window ends");
                }
            }
        }
    }

    fn decrement(&self, key: u64) -> u64 {
        let chain = &self.chain;
        loop {
            let tables = chain.tables.load();
            let mut wait = false;
            let mut saw_moved = false;
            // Oldest first: a slot found moved has then already passed its count on to the
            // newer slot read after it.
            for slot in tables.iter().rev().filter_map(|t| t.find(key)) {
                let taken = slot
                    .count
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                        (c & (MOVED | MOVING) == 0 && c > 0).then(|| c - 1)
                    });
                match taken {
                    Ok(before) => {
                        let others: u64 = tables
                            .iter()
                            .filter_map(|t| t.find(key))
                            .filter(|s| !std::ptr::eq(*s, slot))
                            .map(Slot::live_count)
                            .sum();
                        return before + others;
                    }
                    Err(count) => {
                        wait |= count & MOVING != 0;
                        saw_moved |= count & MOVED != 0;
                    }
                }
            }
            if wait {
                // The mover copies the count and seals the slot in a few instructions.
                std::thread::yield_now();
            } else if !saw_moved || chain.is_current(&tables) {
                return 0;
            }
        }
    }

    /// Keys counted, over all tables (a key being moved counts twice).
    pub fn len(&self) -> usize {
        self.chain
            .tables
            .load()
            .iter()
            .map(|t| t.used.load(Ordering::Relaxed))
            .sum()
    }
}

impl Chain {
    /// Puts a table twice the size of the newest in front, unless another thread did;
    /// true when this call did.
    fn grow(&self, seen: &Arc<Vec<Arc<Table>>>) -> bool {
        let mut next = Vec::with_capacity(seen.len() + 1);
        next.push(Arc::new(Table::new(seen[0].slots.len() * 2)));
        next.extend(seen.iter().cloned());
        let previous = self.tables.compare_and_swap(seen, Arc::new(next));
        Arc::ptr_eq(&previous, seen)
    }

    /// Moves every count of the tables behind the newest into the newest, then drops them.
    fn empty_old_tables(&self) {
        let _moving = self.moving.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let old: Vec<Arc<Table>> = self.tables.load().iter().skip(1).cloned().collect();
            if old.is_empty() {
                return;
            }
            self.empty(&old);
        }
    }

    /// Moves every count of `old` into the newest table and drops `old` from the chain.
    fn empty(&self, old: &[Arc<Table>]) {
        for table in old {
            for slot in table.slots.iter() {
                let key = match slot.key.compare_exchange(
                    EMPTY,
                    SEALED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => continue,
                    Err(key) => key,
                };
                if key != SEALED {
                    self.move_count(slot, key);
                }
            }
        }
        self.tables.rcu(|tables| {
            tables
                .iter()
                .filter(|t| !old.iter().any(|o| Arc::ptr_eq(o, t)))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Marks `slot` as moving, copies its count into the newest table, and seals it once the
    /// copy has caught up with the increments that landed meanwhile.
    fn move_count(&self, slot: &Slot, key: u64) {
        if slot.count.fetch_or(MOVING, Ordering::AcqRel) & MOVED != 0 {
            return;
        }
        loop {
            let tables = self.tables.load();
            let newest = &tables[0];
            let target = match newest.full() {
                false => newest.find_or_claim(key),
                true => None,
            };
            let Some(target) = target else {
                // The newest filled up: a table goes in front of it, and the next pass of
                // `empty_old_tables` empties this one too.
                self.grow(&tables);
                continue;
            };
            let mut copied = 0;
            loop {
                let count = slot.count.load(Ordering::Acquire) & COUNT;
                target.count.fetch_add(count - copied, Ordering::AcqRel);
                copied = count;
                if slot
                    .count
                    .compare_exchange(count | MOVING, MOVED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return;
                }
            }
        }
    }

    /// True when `seen` is still the chain: a count found moved in it has its new slot there.
    fn is_current(&self, seen: &Arc<Vec<Arc<Table>>>) -> bool {
        Arc::ptr_eq(seen, &self.tables.load())
    }
}

/// A hint that `slot` will be read soon. Unlike a load, a prefetch does not hold up the
/// fences and atomic operations that follow it.
#[inline(always)]
fn prefetch_read(slot: &Slot) {
    let at: *const Slot = slot;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault; SSE is part of every x86-64 CPU.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM reads nothing and cannot fault.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{at}]", at = in(reg) at, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = at;
}

/// What a slot holding `count` counts: nothing once it has moved.
fn live(count: u64) -> u64 {
    if count & MOVED != 0 { 0 } else { count & COUNT }
}

/// The value `key` is stored under: the two reserved keys move one step inward.
fn stored(key: u64) -> u64 {
    key.clamp(EMPTY + 1, SEALED - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_past_the_first_table_and_stay_exact() {
        let counts = Counts::default();
        for key in 0..10_000u64 {
            for _ in 0..=(key % 3) {
                counts.add(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), true);
            }
        }
        counts.wait_for_one_table();
        assert_eq!(
            counts.len(),
            10_000,
            "key 0 is stored as 1, distinct from the rest"
        );
        assert!(
            counts.chain.tables.load()[0].slots.len() > MIN_SLOTS,
            "it grew"
        );
        for key in 0..10_000u64 {
            assert_eq!(
                counts.get(key.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                key % 3 + 1
            );
        }
    }

    impl Counts {
        /// Waits until the old tables have been emptied and dropped.
        fn wait_for_one_table(&self) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while self.chain.tables.load().len() > 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "old tables still in the chain after 10 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn threads_counting_while_it_grows_and_moves_lose_nothing() {
        let counts = Counts::default();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let counts = &counts;
                s.spawn(move || {
                    // Three passes: the later ones count keys that sit in tables being moved.
                    for _ in 0..3 {
                        for key in 0..40_000u64 {
                            counts.add(key * 7919 + 2 + (t % 2), true);
                        }
                    }
                    for key in (0..40_000u64).step_by(2) {
                        counts.add(key * 7919 + 2 + (t % 2), false);
                    }
                });
            }
        });
        counts.wait_for_one_table();
        for key in 0..40_000u64 {
            let expected = if key % 2 == 0 { 4 } else { 6 };
            assert_eq!(counts.get(key * 7919 + 2), expected, "key {key}");
            assert_eq!(counts.get(key * 7919 + 3), expected, "key {key}+1");
        }
        assert_eq!(
            counts.len(),
            80_000,
            "every key once, in the one table left"
        );
    }

    /// Refunds land while keys are being moved: a refund that met a copy not yet made, or
    /// an old slot already sealed, used to be lost.
    #[test]
    fn refunds_while_it_grows_and_moves_lose_nothing() {
        for round in 0..5 {
            let counts = Counts::default();
            std::thread::scope(|s| {
                for _ in 0..4 {
                    let counts = &counts;
                    s.spawn(move || {
                        for _ in 0..3 {
                            for key in 0..30_000u64 {
                                counts.add(key * 7919 + 2, true);
                                counts.add(key * 7919 + 2, true);
                                counts.add(key * 7919 + 2, false);
                            }
                        }
                    });
                }
            });
            counts.wait_for_one_table();
            for key in 0..30_000u64 {
                assert_eq!(counts.get(key * 7919 + 2), 12, "round {round}, key {key}");
            }
        }
    }

    #[test]
    fn taking_away_stops_at_zero_and_an_absent_key_stays_absent() {
        let counts = Counts::default();
        assert_eq!(counts.add(5, false), 0);
        assert_eq!(counts.len(), 0);
        counts.add(5, true);
        assert_eq!(counts.add(5, false), 1);
        assert_eq!(counts.add(5, false), 0);
        assert_eq!(counts.get(5), 0);
    }
}
