//! The memory strategy: one bounded store per `memory.dictionary_name`, shared by every worker
//! thread and kept across config reloads, as Kong's nginx shared dicts are.
//!
//! Entries leave after their storage TTL (checked when read, like an expired shared-dict
//! entry) or, when the store is full, by the cache's own eviction (quick_cache's CLOCK-Pro,
//! weighted by bytes), much as a full shared dict drops its least recently used entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};

/// Kong's default `mem_cache_size` (128 MiB), the size of its `kong_db_cache` shared dict,
/// proxy-cache's default store.
pub const DICTIONARY_BYTES: u64 = gangway_config::settings::DEFAULT_MEM_CACHE_SIZE;

/// Kong's own shared dicts other than the two `mem_cache_size` sizes, with the sizes its
/// nginx template gives them.
const KONG_DICTS: [(&str, u64); 8] = [
    ("kong", 5 << 20),
    ("kong_locks", 8 << 20),
    ("kong_healthchecks", 5 << 20),
    ("kong_cluster_events", 5 << 20),
    ("kong_rate_limiting_counters", 12 << 20),
    ("kong_core_db_cache_miss", 12 << 20),
    ("kong_db_cache_miss", 12 << 20),
    ("kong_secrets", 5 << 20),
];

/// The largest response body a dictionary keeps (16 MiB). A response declaring a bigger
/// one is not buffered for the cache: it streams through uncached.
pub const MAX_ENTRY_BYTES: u64 = 16 * 1024 * 1024;

/// What is remembered of a response (Kong's cached `res` object).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The status sent.
    pub status: u16,
    /// The `Content-Type`, sent again as such.
    pub content_type: Option<String>,
    /// Every other header worth sending again, in order, repeated names kept.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body as the client got it.
    pub body: Vec<u8>,
    /// When it was stored, in whole epoch seconds (`ngx.time()`).
    pub timestamp: i64,
    /// The resource's TTL in seconds (`cache_ttl`, or from `Cache-Control`).
    pub ttl: f64,
    /// When the store forgets it, in epoch seconds; `None` keeps it until evicted.
    pub expires_at: Option<f64>,
}

impl Entry {
    /// Bytes the entry occupies, roughly, for the store's bound.
    fn weight(&self, key: &str) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 48)
            .sum();
        let fixed = 160 + key.len() + self.content_type.as_ref().map_or(0, String::len);
        (fixed + headers + self.body.len()) as u64
    }
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Arc<Entry>> for ByBytes {
    fn weight(&self, key: &String, entry: &Arc<Entry>) -> u64 {
        entry.weight(key)
    }
}

/// One dictionary: a byte-bounded map from cache key to entry.
pub struct Store {
    /// The bytes it may hold.
    capacity: u64,
    cache: Cache<String, Arc<Entry>, ByBytes>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

impl Store {
    /// An empty store holding at most `bytes`, and entries up to [`MAX_ENTRY_BYTES`] (up to
    /// `bytes / 2` for a smaller store).
    pub fn new(bytes: u64) -> Store {
        // quick_cache sizes its table from this guess; 16 KiB is a typical API response.
        let items = (bytes / (16 * 1024)).clamp(64, 1 << 16) as usize;
        // Each shard holds its share of the bytes, and no entry larger than about that
        // share. quick_cache's default (four shards a core) left 1.9 MiB an entry on 16
        // cores; this many leaves room for the largest entry kept.
        let shards = (bytes / (2 * MAX_ENTRY_BYTES)).clamp(1, 8) as usize;
        let options = OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(bytes)
            .shards(shards)
            .build()
            .expect("invariant: every option is set");
        Store {
            capacity: bytes,
            cache: Cache::with_options(
                options,
                ByBytes,
                DefaultHashBuilder::default(),
                DefaultLifecycle::default(),
            ),
        }
    }

    /// The entry under `key` unless it expired by `now` (epoch seconds); an expired one is
    /// dropped.
    pub fn fetch(&self, key: &str, now: f64) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key)?;
        if entry.expires_at.is_some_and(|at| at <= now) {
            self.cache.remove_if(key, |e| Arc::ptr_eq(e, &entry));
            return None;
        }
        Some(entry)
    }

    /// Stores `entry` under `key`, replacing any older one.
    pub fn store(&self, key: String, entry: Entry) {
        self.cache.insert(key, Arc::new(entry));
    }

    /// Forgets `key` (the Admin API's `DELETE /proxy-cache/{key}`).
    pub fn purge(&self, key: &str) {
        self.cache.remove(key);
    }

    /// Forgets every entry (the Admin API's `DELETE /proxy-cache`).
    pub fn flush(&self) {
        self.cache.clear();
    }

    /// Bytes held, by the store's own measure.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }
}

/// The process's dictionaries by name. A global on purpose: Kong's shared dicts outlive
/// config changes, so a reload must find the entries its predecessor stored.
static DICTIONARIES: OnceLock<Mutex<HashMap<String, Arc<Store>>>> = OnceLock::new();

/// The dictionaries that may be used, with their sizes ([`declare`]).
static DECLARED: OnceLock<HashMap<String, u64>> = OnceLock::new();

/// Declares the dictionaries the process has, as Kong's nginx template and its injected
/// `lua_shared_dict` directives do: Kong's own (`kong_db_cache` and `kong_core_db_cache`
/// of `mem_cache_size`) and `extra`. The first call wins; without one, Kong's own with
/// their default sizes. Only declared names are accepted, so the memory they take is
/// bounded by the settings, not by how many names plugin configs make up.
pub fn declare(mem_cache_size: u64, extra: &[(String, u64)]) {
    let _ = DECLARED.set(declared(mem_cache_size, extra));
}

fn declared(mem_cache_size: u64, extra: &[(String, u64)]) -> HashMap<String, u64> {
    let own = [
        ("kong_db_cache", mem_cache_size),
        ("kong_core_db_cache", mem_cache_size),
    ];
    own.into_iter()
        .chain(KONG_DICTS)
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .chain(extra.iter().cloned())
        .collect()
}

fn declared_size(name: &str) -> Option<u64> {
    DECLARED
        .get_or_init(|| declared(DICTIONARY_BYTES, &[]))
        .get(name)
        .copied()
}

/// Kong's schema check: `memory.dictionary_name` must name a declared dictionary.
pub fn check_declared(name: &str) -> Result<(), String> {
    match declared_size(name) {
        Some(_) => Ok(()),
        None => Err(format!("missing shared dict '{name}'")),
    }
}

/// Every dictionary in use, with bytes held and capacity, by name (what Kong reports per
/// shared dict), `kong_db_cache` (the default `memory.dictionary_name`) always among them.
pub fn usage() -> Vec<(String, u64, u64)> {
    let _ = dictionary("kong_db_cache");
    let map = DICTIONARIES.get_or_init(Default::default);
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<(String, u64, u64)> = map
        .iter()
        .map(|(name, store)| (name.clone(), store.cache.weight(), store.capacity))
        .collect();
    out.sort();
    out
}

/// The store of dictionary `name`, created at its declared size on first use; `None` for a
/// name not declared.
pub fn dictionary(name: &str) -> Option<Arc<Store>> {
    let bytes = declared_size(name)?;
    let map = DICTIONARIES.get_or_init(Default::default);
    let mut map = match map.lock() {
        Ok(m) => m,
        // A panic elsewhere while holding the lock leaves the map itself intact.
        Err(poisoned) => poisoned.into_inner(),
    };
    Some(
        map.entry(name.to_owned())
            .or_insert_with(|| Arc::new(Store::new(bytes)))
            .clone(),
    )
}
