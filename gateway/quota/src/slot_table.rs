//! An append-only map from 64-bit hashes to values that never move: the batched store's
//! windows of one generation.
//!
//! With a million clients nearly every window a node counts is new to it, so what a window
//! costs to add, to find and to free is most of what batched counting costs. A map of boxed
//! entries (papaya, each value an `Arc` holding a `String`) cost about 1 µs a window just to
//! free, in random order and through deferred reclamation, and several cache misses a
//! lookup. Here the values sit in insertion order in a [`boxcar::Vec`] (a few large blocks,
//! freed in order), and an open-addressing index of (hash, position) pairs finds them with
//! one probe sequence.
//!
//! The index is fresh zeroed memory on huge pages ([`zeroed::slots`]): sized for the last
//! window's million clients, it costs nothing until used, and a lookup misses the TLB less.
//!
//! Lookups take no lock. Inserts take one mutex (they follow a Redis read, so they are rare
//! next to lookups): the value is pushed, then its position is written into the index before
//! its hash, which a lookup reads first. A full index is copied into one of twice the size
//! and swapped in whole; a lookup still holding the old one may miss a value added since,
//! and the caller then takes the insert path, which finds it under the mutex.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use arc_swap::ArcSwap;
use gangway_pipeline::quota::zeroed::{self, ZeroIsEmpty};

/// The hash of an empty index slot; a real hash of 0 is stored as 1.
const EMPTY: u64 = 0;

/// The smallest index.
const MIN_SLOTS: usize = 1024;

#[derive(Default)]
struct IndexSlot {
    hash: AtomicU64,
    position: AtomicUsize,
}

// SAFETY: two atomics of 0: an empty slot.
unsafe impl ZeroIsEmpty for IndexSlot {}

/// Positions by hash, at most three quarters full (so every probe ends at an empty slot).
struct Index {
    slots: Box<[IndexSlot]>,
    mask: usize,
}

impl Index {
    /// An index with room for `values` before it must grow.
    fn with_room_for(values: usize) -> Index {
        let len = (values.saturating_mul(4) / 3 + 1)
            .next_power_of_two()
            .max(MIN_SLOTS);
        Index {
            slots: zeroed::slots(len),
            mask: len - 1,
        }
    }

    fn holds(&self, values: usize) -> bool {
        values * 4 <= self.slots.len() * 3
    }

    fn find(&self, hash: u64) -> Option<usize> {
        let mut i = hash as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            match slot.hash.load(Ordering::Acquire) {
                EMPTY => return None,
                seen if seen == hash => return Some(slot.position.load(Ordering::Relaxed)),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// Adds `hash` at `position`; only under the table's insert lock, with room checked.
    fn place(&self, hash: u64, position: usize) {
        let mut i = hash as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            if slot.hash.load(Ordering::Relaxed) == EMPTY {
                // The position first: a lookup that sees the hash then sees it too.
                slot.position.store(position, Ordering::Relaxed);
                slot.hash.store(hash, Ordering::Release);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Every (hash, position) pair held.
    fn entries(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.slots.iter().filter_map(|slot| {
            let hash = slot.hash.load(Ordering::Acquire);
            (hash != EMPTY).then(|| (hash, slot.position.load(Ordering::Relaxed)))
        })
    }
}

/// Values by 64-bit hash, each at a position that never changes.
pub(crate) struct SlotTable<T> {
    index: ArcSwap<Index>,
    values: boxcar::Vec<T>,
    /// Serializes inserts.
    inserting: Mutex<()>,
}

impl<T> SlotTable<T> {
    /// A table with room for `capacity` values before its index grows.
    pub(crate) fn with_capacity(capacity: usize) -> SlotTable<T> {
        SlotTable {
            index: ArcSwap::from_pointee(Index::with_room_for(capacity)),
            values: boxcar::Vec::with_capacity(capacity),
            inserting: Mutex::new(()),
        }
    }

    /// The position and value of `hash`, if held.
    pub(crate) fn get(&self, hash: u64) -> Option<(usize, &T)> {
        let position = self.index.load().find(stored(hash))?;
        Some((position, self.values.get(position)?))
    }

    /// The value at `position` (from [`SlotTable::get`]).
    pub(crate) fn at(&self, position: usize) -> Option<&T> {
        self.values.get(position)
    }

    /// The value of `hash`, made and added when absent.
    pub(crate) fn get_or_insert_with(&self, hash: u64, make: impl FnOnce() -> T) -> &T {
        let hash = stored(hash);
        let _only = self
            .inserting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let index = self.index.load();
        if let Some(held) = index.find(hash).and_then(|at| self.values.get(at)) {
            return held;
        }
        let position = self.values.push(make());
        if index.holds(self.values.count()) {
            index.place(hash, position);
        } else {
            let grown = Index::with_room_for(self.values.count() * 2);
            for (held, at) in index.entries() {
                grown.place(held, at);
            }
            grown.place(hash, position);
            self.index.store(grown.into());
        }
        &self.values[position]
    }

    /// How many values the table holds.
    pub(crate) fn len(&self) -> usize {
        self.values.count()
    }
}

fn stored(hash: u64) -> u64 {
    if hash == EMPTY { 1 } else { hash }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn spread(n: u64) -> u64 {
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn values_are_found_by_hash_and_keep_their_position_as_the_index_grows() {
        let table = SlotTable::with_capacity(0);
        let mut positions = Vec::new();
        for n in 0..10_000u64 {
            let value = table.get_or_insert_with(spread(n), || n);
            assert_eq!(*value, n);
            positions.push(table.get(spread(n)).expect("just added").0);
        }
        assert!(table.index.load().slots.len() > MIN_SLOTS, "the index grew");
        for n in 0..10_000u64 {
            let (position, value) = table.get(spread(n)).expect("held");
            assert_eq!((*value, position), (n, positions[n as usize]));
            assert_eq!(table.at(position), Some(&n));
        }
        assert_eq!(table.get(spread(10_000)), None);
        assert_eq!(
            *table.get_or_insert_with(spread(7), || 99),
            7,
            "not replaced"
        );
        assert_eq!(table.len(), 10_000);
        let zero = SlotTable::with_capacity(1);
        assert_eq!(zero.get(0), None);
        assert_eq!(
            *zero.get_or_insert_with(0, || 5),
            5,
            "a hash of 0 is a key too"
        );
        assert_eq!(zero.get(0).map(|(_, v)| *v), Some(5));
    }

    /// Two threads adding the same hashes while others look them up: each hash gets one
    /// value, and a lookup that finds one finds the one that stays.
    #[test]
    fn concurrent_inserts_of_one_hash_keep_one_value() {
        let table = Arc::new(SlotTable::<(u64, usize)>::with_capacity(0));
        let adders: Vec<_> = (0..2)
            .map(|thread| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for n in 0..50_000u64 {
                        let (held, _) = *table.get_or_insert_with(spread(n), || (n, thread));
                        assert_eq!(held, n);
                    }
                })
            })
            .collect();
        let reader = {
            let table = table.clone();
            std::thread::spawn(move || {
                let mut seen = vec![None; 50_000];
                for _ in 0..4 {
                    for (n, first) in seen.iter_mut().enumerate() {
                        if let Some((_, &(held, by))) = table.get(spread(n as u64)) {
                            assert_eq!(held, n as u64);
                            assert_eq!(*first.get_or_insert(by), by, "the value changed");
                        }
                    }
                }
            })
        };
        for thread in adders {
            thread.join().expect("adder");
        }
        reader.join().expect("reader");
        assert_eq!(table.len(), 50_000, "one value per hash");
    }
}
