//! Entities' log rows (their JSON text in Kong's log entry), kept per config: they are the
//! same for every request that logs them, and serializing one per request (the entity to a
//! JSON tree, its nulls dropped, then text) was a large share of what a log plugin cost.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Rows kept at most: beyond that, a row is built for its request and dropped.
pub const MAX_ROWS: usize = 10_000;

/// Rows by entity index, filled as requests log them.
#[derive(Default)]
pub struct RowCache {
    rows: RwLock<HashMap<u32, Arc<[u8]>>>,
}

impl RowCache {
    /// Entity `index`'s row, built by `make` the first time (and every time once the cache
    /// is full).
    pub fn get_or_make(&self, index: u32, make: impl FnOnce() -> Vec<u8>) -> Arc<[u8]> {
        if let Some(row) = self
            .rows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index)
        {
            return row.clone();
        }
        let row: Arc<[u8]> = make().into();
        let mut rows = self.rows.write().unwrap_or_else(PoisonError::into_inner);
        if rows.len() < MAX_ROWS {
            rows.insert(index, row.clone());
        }
        row
    }

    /// How many rows are kept.
    pub fn len(&self) -> usize {
        self.rows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no row is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCache")
            .field("rows", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_built_once_and_the_cache_is_bounded() {
        let cache = RowCache::default();
        let first = cache.get_or_make(3, || b"{\"id\":3}".to_vec());
        let again = cache.get_or_make(3, || b"other".to_vec());
        assert!(Arc::ptr_eq(&first, &again), "answered from the cache");
        for i in 0..MAX_ROWS as u32 + 10 {
            cache.get_or_make(i, || i.to_string().into_bytes());
        }
        assert_eq!(cache.len(), MAX_ROWS);
        let beyond = cache.get_or_make(u32::MAX, || b"built".to_vec());
        assert_eq!(&*beyond, b"built");
        assert_eq!(cache.len(), MAX_ROWS, "a full cache keeps no more");
    }
}
