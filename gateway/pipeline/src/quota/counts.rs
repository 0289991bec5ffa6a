//! A lock-free table of counters keyed by 64-bit hashes: the local policy's hot path.
//!
//! Keys and counts sit side by side in one flat array (open addressing, linear probing), so
//! a lookup costs one cache miss where a map of boxed entries costs several; with a million
//! clients that is most of the price of counting. Slots are claimed with a compare-and-swap
//! on the key and never freed: a table lives as long as its window (the caller drops the whole
//! table when the window rolls over).
//!
//! A table that passes three quarters full is not resized in place. A table of twice the
//! size is put in front of it, and new keys go there, while the older tables stay readable.
//! A key is counted where it was first inserted. Two threads that insert the same new key
//! while the tables change may put it in two tables, so a count is the sum over all tables.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

/// The key of an empty slot; a real key of 0 is stored as 1.
const EMPTY: u64 = 0;

/// The smallest table.
const MIN_SLOTS: usize = 1024;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    count: AtomicU64,
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
            slots: (0..slots).map(|_| Slot::default()).collect(),
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
                EMPTY => return None,
                _ => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// The slot holding `key`, claimed when absent; `None` when the table has no room.
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
            if seen == key {
                return Some(slot);
            }
            i = (i + 1) & self.mask;
        }
        None
    }
}

/// Counters by key, newest table first. Empty by default.
pub struct Counts {
    tables: ArcSwap<Vec<Arc<Table>>>,
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
            tables: ArcSwap::from_pointee(vec![Arc::new(Table::new(keys * 2))]),
        }
    }

    /// The count of `key`.
    pub fn get(&self, key: u64) -> u64 {
        let key = key.max(1);
        self.tables
            .load()
            .iter()
            .filter_map(|t| t.find(key))
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }

    /// Adds one to `key`'s count (`up`), or takes one away (never below zero); returns the
    /// count before.
    pub fn add(&self, key: u64, up: bool) -> u64 {
        let key = key.max(1);
        loop {
            let tables = self.tables.load();
            let mut found = tables.iter().filter_map(|t| t.find(key));
            if let Some(first) = found.next() {
                let others: u64 = found.map(|s| s.count.load(Ordering::Relaxed)).sum();
                return others + bump(&first.count, up);
            }
            if !up {
                return 0;
            }
            let newest = &tables[0];
            if !newest.full() {
                if let Some(slot) = newest.find_or_claim(key) {
                    return bump(&slot.count, up);
                }
            }
            self.grow(&tables);
        }
    }

    /// Puts a table twice the size of the newest in front, unless another thread did.
    fn grow(&self, seen: &Arc<Vec<Arc<Table>>>) {
        let mut next = Vec::with_capacity(seen.len() + 1);
        next.push(Arc::new(Table::new(seen[0].slots.len() * 2)));
        next.extend(seen.iter().cloned());
        self.tables.compare_and_swap(seen, Arc::new(next));
    }

    /// Keys counted, over all tables.
    pub fn len(&self) -> usize {
        self.tables
            .load()
            .iter()
            .map(|t| t.used.load(Ordering::Relaxed))
            .sum()
    }
}

/// Adds one, or takes one away without going below zero; returns the value before.
fn bump(count: &AtomicU64, up: bool) -> u64 {
    if up {
        count.fetch_add(1, Ordering::Relaxed)
    } else {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(1))
            })
            .unwrap_or(0)
    }
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
        assert_eq!(
            counts.len(),
            10_000,
            "key 0 is stored as 1, distinct from the rest"
        );
        assert!(counts.tables.load().len() > 1, "it grew");
        for key in 0..10_000u64 {
            assert_eq!(
                counts.get(key.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                key % 3 + 1
            );
        }
    }

    #[test]
    fn threads_inserting_while_it_grows_lose_nothing() {
        let counts = Counts::default();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let counts = &counts;
                s.spawn(move || {
                    for key in 0..20_000u64 {
                        counts.add(key * 7919 + 2 + (t % 2), true);
                    }
                });
            }
        });
        for key in 0..20_000u64 {
            assert_eq!(counts.get(key * 7919 + 2), 2, "key {key}");
            assert_eq!(counts.get(key * 7919 + 3), 2, "key {key}+1");
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
