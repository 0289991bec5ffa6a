//! The index built from a whole config: open-addressing tables of `u32` positions into the
//! entity vectors (a few bytes per entry), hashed with a per-process random SipHash key.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use subtle::ConstantTimeEq;

use super::{ConsumerRef, CredentialRef};
use gangway_config::model::{Acl, Consumer, Id, KeyauthCredential};

/// Consumers, credentials and ACLs of one config, indexed. Immutable once built.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) consumers: Vec<Consumer>,
    pub(super) credentials: Vec<KeyauthCredential>,
    pub(super) acls: Vec<Acl>,
    pub(super) hasher: RandomState,
    by_key: HashTable<u32>,
    /// Credentials by id: for Admin API writes (uniqueness, deletes), ~5 bytes per key.
    credential_by_id: HashTable<u32>,
    by_id: HashTable<u32>,
    by_username: HashTable<u32>,
    /// For each credential, its consumer (`u32::MAX` when the consumer is unknown).
    pub(super) credential_owner: Vec<ConsumerRef>,
    /// ACL positions sorted by consumer; consumer `c`'s are
    /// `acl_order[acl_start[c]..acl_start[c + 1]]` (one array read, no search: at a million
    /// consumers a binary search costs tens of cache misses per request).
    acl_order: Vec<u32>,
    acl_start: Vec<u32>,
    /// The log rows of these consumers (never changed: a replaced one lives in the delta).
    pub(super) log_rows: crate::row_cache::RowCache,
}

/// A constant-time comparison of a stored key with a presented one, so the response time
/// does not reveal how much of a guessed key was right.
pub(super) fn same_key(stored: &[u8], presented: &[u8]) -> bool {
    stored.len() == presented.len() && bool::from(stored.ct_eq(presented))
}

impl Index {
    /// Indexes the entities (references were checked by the loader).
    pub(super) fn build(
        consumers: Vec<Consumer>,
        credentials: Vec<KeyauthCredential>,
        acls: Vec<Acl>,
        hasher: RandomState,
    ) -> Index {
        let mut by_id = HashTable::with_capacity(consumers.len());
        let mut by_username = HashTable::with_capacity(consumers.len());
        for (i, c) in consumers.iter().enumerate() {
            let h = hasher.hash_one(c.id);
            by_id.insert_unique(h, i as u32, |&j| hasher.hash_one(consumers[j as usize].id));
            if let Some(name) = c.username.as_deref() {
                let h = hasher.hash_one(name.as_bytes());
                by_username.insert_unique(h, i as u32, |&j| {
                    hasher.hash_one(
                        consumers[j as usize]
                            .username
                            .as_deref()
                            .unwrap_or_default()
                            .as_bytes(),
                    )
                });
            }
        }
        let find_consumer = |id: Id| -> Option<u32> {
            by_id
                .find(hasher.hash_one(id), |&j| consumers[j as usize].id == id)
                .copied()
        };
        let mut by_key = HashTable::with_capacity(credentials.len());
        let mut credential_by_id = HashTable::with_capacity(credentials.len());
        let mut credential_owner = Vec::with_capacity(credentials.len());
        for (i, cred) in credentials.iter().enumerate() {
            let h = hasher.hash_one(cred.key.as_bytes());
            by_key.insert_unique(h, i as u32, |&j| {
                hasher.hash_one(credentials[j as usize].key.as_bytes())
            });
            credential_by_id.insert_unique(hasher.hash_one(cred.id), i as u32, |&j| {
                hasher.hash_one(credentials[j as usize].id)
            });
            credential_owner.push(find_consumer(cred.consumer.id).unwrap_or(u32::MAX));
        }
        let mut acl_order: Vec<u32> = (0..acls.len() as u32).collect();
        let owners: Vec<u32> = acls
            .iter()
            .map(|a| find_consumer(a.consumer.id).unwrap_or(u32::MAX))
            .collect();
        acl_order.sort_by_key(|&i| owners[i as usize]);
        let mut acl_start = vec![0u32; consumers.len() + 1];
        for &owner in &owners {
            if let Some(next) = acl_start.get_mut(owner as usize + 1) {
                *next += 1;
            }
        }
        for c in 1..acl_start.len() {
            acl_start[c] += acl_start[c - 1];
        }
        Index {
            consumers,
            credentials,
            acls,
            hasher,
            by_key,
            credential_by_id,
            by_id,
            by_username,
            credential_owner,
            acl_order,
            acl_start,
            log_rows: Default::default(),
        }
    }

    /// The hash the key tables use for `key`.
    pub(super) fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The credential holding `key` (whose hash is `h`), compared in constant time.
    pub(super) fn find_key(&self, h: u64, key: &[u8]) -> Option<CredentialRef> {
        self.by_key
            .find(h, |&j| {
                same_key(self.credentials[j as usize].key.as_bytes(), key)
            })
            .copied()
    }

    pub(super) fn credential_by_id(&self, id: Id) -> Option<CredentialRef> {
        self.credential_by_id
            .find(self.hasher.hash_one(id), |&j| {
                self.credentials[j as usize].id == id
            })
            .copied()
    }

    pub(super) fn consumer_by_id(&self, id: Id) -> Option<ConsumerRef> {
        self.by_id
            .find(self.hasher.hash_one(id), |&j| {
                self.consumers[j as usize].id == id
            })
            .copied()
    }

    pub(super) fn consumer_by_username(&self, name: &str) -> Option<ConsumerRef> {
        self.by_username
            .find(self.hasher.hash_one(name.as_bytes()), |&j| {
                self.consumers[j as usize].username.as_deref() == Some(name)
            })
            .copied()
    }

    /// The consumer's ACL positions, in config order.
    pub(super) fn acl_positions(&self, c: ConsumerRef) -> &[u32] {
        let c = c as usize;
        let start = self.acl_start.get(c).copied().unwrap_or(0) as usize;
        let end = self.acl_start.get(c + 1).copied().unwrap_or(0) as usize;
        &self.acl_order[start..end.max(start)]
    }
}
