//! Consumers, their key-auth credentials and ACL groups, indexed for the data plane.
//!
//! Built once per config and shared behind an `Arc`, separate from the compiled routes and
//! plugin chains: a change to consumers or keys replaces this index and nothing else. The
//! indexes are open-addressing tables of `u32` positions into the entity vectors (a few bytes
//! per entry), hashed with a per-process random SipHash key, so lookup cost stays flat from a
//! thousand keys to millions and crafted keys cannot force collisions.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use subtle::ConstantTimeEq;

use crate::config::model::{Acl, Consumer, Id, KeyauthCredential};

/// A consumer, as its position in [`Identities::consumers`].
pub type ConsumerRef = u32;
/// A credential, as its position in [`Identities::credentials`].
pub type CredentialRef = u32;

/// The consumer index of a config.
#[derive(Debug, Default)]
pub struct Identities {
    /// Every consumer.
    pub consumers: Vec<Consumer>,
    /// Every key-auth credential.
    pub credentials: Vec<KeyauthCredential>,
    /// Every ACL membership.
    pub acls: Vec<Acl>,
    hasher: RandomState,
    by_key: HashTable<u32>,
    by_id: HashTable<u32>,
    by_username: HashTable<u32>,
    /// For each credential, its consumer.
    credential_owner: Vec<ConsumerRef>,
    /// ACL positions sorted by consumer; consumer `c`'s are
    /// `acl_order[acl_start[c]..acl_start[c + 1]]` (one array read, no search: at a million
    /// consumers a binary search costs tens of cache misses per request).
    acl_order: Vec<u32>,
    acl_start: Vec<u32>,
}

/// The result of a key lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    /// A live credential.
    Found(CredentialRef, ConsumerRef),
    /// The key exists but its `ttl` ran out.
    Expired,
    /// No such key.
    Unknown,
}

impl Identities {
    /// Indexes the entities (references were checked by the loader).
    pub fn build(
        consumers: Vec<Consumer>,
        credentials: Vec<KeyauthCredential>,
        acls: Vec<Acl>,
    ) -> Identities {
        let hasher = RandomState::new();
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
        let mut credential_owner = Vec::with_capacity(credentials.len());
        for (i, cred) in credentials.iter().enumerate() {
            let h = hasher.hash_one(cred.key.as_bytes());
            by_key.insert_unique(h, i as u32, |&j| {
                hasher.hash_one(credentials[j as usize].key.as_bytes())
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
        Identities {
            consumers,
            credentials,
            acls,
            hasher,
            by_key,
            by_id,
            by_username,
            credential_owner,
            acl_order,
            acl_start,
        }
    }

    /// Finds the credential with this key. The final comparison is constant-time, so the
    /// response time does not reveal how much of a guessed key was right.
    pub fn find_key(&self, key: &[u8], now_secs: i64) -> KeyLookup {
        let h = self.hasher.hash_one(key);
        let found = self.by_key.find(h, |&j| {
            let stored = self.credentials[j as usize].key.as_bytes();
            stored.len() == key.len() && bool::from(stored.ct_eq(key))
        });
        match found {
            None => KeyLookup::Unknown,
            Some(&j) => {
                let cred = &self.credentials[j as usize];
                if cred.expires_at.is_some_and(|t| t.get() <= now_secs) {
                    return KeyLookup::Expired;
                }
                match self.credential_owner.get(j as usize) {
                    Some(&owner) if owner != u32::MAX => KeyLookup::Found(j, owner),
                    _ => KeyLookup::Unknown,
                }
            }
        }
    }

    /// The consumer with this id.
    pub fn consumer_by_id(&self, id: Id) -> Option<ConsumerRef> {
        self.by_id
            .find(self.hasher.hash_one(id), |&j| {
                self.consumers[j as usize].id == id
            })
            .copied()
    }

    /// The consumer with this username.
    pub fn consumer_by_username(&self, name: &str) -> Option<ConsumerRef> {
        self.by_username
            .find(self.hasher.hash_one(name.as_bytes()), |&j| {
                self.consumers[j as usize].username.as_deref() == Some(name)
            })
            .copied()
    }

    /// Kong's `anonymous` reference: a consumer id, or else a username.
    pub fn consumer_by_id_or_username(&self, reference: &str) -> Option<ConsumerRef> {
        match reference.parse::<Id>() {
            Ok(id) => self
                .consumer_by_id(id)
                .or_else(|| self.consumer_by_username(reference)),
            Err(_) => self.consumer_by_username(reference),
        }
    }

    /// The consumer entity.
    pub fn consumer(&self, c: ConsumerRef) -> &Consumer {
        &self.consumers[c as usize]
    }

    /// The credential entity.
    pub fn credential(&self, c: CredentialRef) -> &KeyauthCredential {
        &self.credentials[c as usize]
    }

    /// The consumer's ACL groups, in config order.
    pub fn groups(&self, c: ConsumerRef) -> impl Iterator<Item = &str> {
        let c = c as usize;
        let start = self.acl_start.get(c).copied().unwrap_or(0) as usize;
        let end = self.acl_start.get(c + 1).copied().unwrap_or(0) as usize;
        self.acl_order[start..end.max(start)]
            .iter()
            .map(|&i| &*self.acls[i as usize].group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::ForeignKey;

    fn consumer(n: u128, name: &str) -> Consumer {
        Consumer {
            id: Id::from_u128(n),
            username: Some(name.into()),
            custom_id: None,
            tags: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn cred(n: u128, owner: u128, key: &str, expires_at: Option<i64>) -> KeyauthCredential {
        KeyauthCredential {
            id: Id::from_u128(n),
            consumer: ForeignKey::from(Id::from_u128(owner)),
            key: key.into(),
            expires_at: expires_at.and_then(std::num::NonZeroI64::new),
            tags: None,
            created_at: 0,
        }
    }

    fn acl(n: u128, owner: u128, group: &str) -> Acl {
        Acl {
            id: Id::from_u128(n),
            consumer: ForeignKey::from(Id::from_u128(owner)),
            group: group.into(),
            tags: None,
            created_at: 0,
        }
    }

    #[test]
    fn keys_consumers_and_groups_resolve() {
        let ids = Identities::build(
            vec![consumer(1, "alice"), consumer(2, "bob")],
            vec![cred(10, 2, "bobkey", None), cred(11, 1, "old", Some(100))],
            vec![acl(20, 2, "b1"), acl(21, 1, "a1"), acl(22, 2, "b2")],
        );
        assert_eq!(ids.find_key(b"bobkey", 50), KeyLookup::Found(0, 1));
        assert_eq!(ids.find_key(b"bobke", 50), KeyLookup::Unknown);
        assert_eq!(ids.find_key(b"old", 99), KeyLookup::Found(1, 0));
        assert_eq!(ids.find_key(b"old", 100), KeyLookup::Expired);
        assert_eq!(ids.consumer_by_username("alice"), Some(0));
        assert_eq!(
            ids.consumer_by_id_or_username(&Id::from_u128(2).to_string()),
            Some(1)
        );
        assert_eq!(ids.consumer_by_id_or_username("nobody"), None);
        assert_eq!(ids.groups(1).collect::<Vec<_>>(), vec!["b1", "b2"]);
        assert_eq!(ids.groups(0).collect::<Vec<_>>(), vec!["a1"]);
    }
}
