//! Consumers, their key-auth credentials and ACL groups, indexed for the data plane.
//!
//! Built once per config and shared behind an `Arc`, separate from the compiled routes and
//! plugin chains. The index ([`index`]) is open-addressing tables of `u32` positions into
//! the entity vectors (a few bytes per entry), hashed with a per-process random SipHash key,
//! so lookup cost stays flat from a thousand keys to millions and crafted keys cannot force
//! collisions. Single writes (an Admin API call adding a key) go to a small delta on top
//! ([`delta`]): they cost microseconds and leave routes and plugins alone.

mod delta;
mod index;

use std::hash::RandomState;
use std::sync::Arc;

use delta::Delta;
pub use delta::IdentityError;
use index::Index;

use gangway_config::model::{Consumer, Id, KeyauthCredential};

/// A consumer, by position: the index's consumers, then those added since.
pub type ConsumerRef = u32;
/// A credential, by position: the index's credentials, then those added since.
pub type CredentialRef = u32;

/// The consumers, key-auth credentials and ACL groups the data plane authenticates against.
/// Cloning is cheap (two `Arc`s).
#[derive(Debug, Clone, Default)]
pub struct Identities {
    base: Arc<Index>,
    delta: Arc<Delta>,
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
        acls: Vec<gangway_config::model::Acl>,
    ) -> Identities {
        Identities {
            base: Arc::new(Index::build(
                consumers,
                credentials,
                acls,
                RandomState::new(),
            )),
            delta: Arc::default(),
        }
    }

    /// Finds the credential with this key. The final comparison is constant-time, so the
    /// response time does not reveal how much of a guessed key was right.
    pub fn find_key(&self, key: &[u8], now_secs: i64) -> KeyLookup {
        let base_len = self.base.credentials.len() as u32;
        let h = self.base.hash_key(key);
        let (r, owner) = match self.delta.find_key(h, key, base_len) {
            Some(j) => (base_len + j, self.delta.credential_owner[j as usize]),
            None => match self.base.find_key(h, key) {
                Some(r) if !self.delta.removed_credentials.contains(&r) => {
                    (r, self.base.credential_owner[r as usize])
                }
                _ => return KeyLookup::Unknown,
            },
        };
        if self
            .credential(r)
            .expires_at
            .is_some_and(|t| t.get() <= now_secs)
        {
            return KeyLookup::Expired;
        }
        if owner == u32::MAX || self.delta.removed_consumers.contains(&owner) {
            return KeyLookup::Unknown;
        }
        KeyLookup::Found(r, owner)
    }

    /// The consumer with this id.
    pub fn consumer_by_id(&self, id: Id) -> Option<ConsumerRef> {
        self.delta
            .consumer_by_id(id)
            .or_else(|| self.base.consumer_by_id(id))
            .filter(|c| !self.delta.removed_consumers.contains(c))
    }

    /// The consumer with this username.
    pub fn consumer_by_username(&self, name: &str) -> Option<ConsumerRef> {
        // A renamed consumer leaves its old name in the tables: the current entity decides.
        let current = |c: &ConsumerRef| {
            !self.delta.removed_consumers.contains(c)
                && self.consumer(*c).username.as_deref() == Some(name)
        };
        self.delta
            .consumer_by_username(name)
            .filter(current)
            .or_else(|| self.base.consumer_by_username(name).filter(current))
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
        if let Some(changed) = self.delta.replaced_consumers.get(&c) {
            return changed;
        }
        let c = c as usize;
        match self.base.consumers.get(c) {
            Some(consumer) => consumer,
            None => &self.delta.consumers[c - self.base.consumers.len()],
        }
    }

    /// The consumer's row in a log entry, built by `make` once while the consumer stays as
    /// it is (a consumer an Admin API write replaced or added is built for each request).
    pub fn consumer_log_row(
        &self,
        c: ConsumerRef,
        make: impl FnOnce(&Consumer) -> Vec<u8>,
    ) -> std::sync::Arc<[u8]> {
        match self.base.consumers.get(c as usize) {
            Some(consumer) if !self.delta.replaced_consumers.contains_key(&c) => {
                self.base.log_rows.get_or_make(c, || make(consumer))
            }
            _ => make(self.consumer(c)).into(),
        }
    }

    /// The credential entity.
    pub fn credential(&self, c: CredentialRef) -> &KeyauthCredential {
        let c = c as usize;
        match self.base.credentials.get(c) {
            Some(cred) => cred,
            None => &self.delta.credentials[c - self.base.credentials.len()],
        }
    }

    /// How many consumers there are.
    pub fn consumer_count(&self) -> usize {
        self.base.consumers.len() + self.delta.consumers.len()
    }

    /// Every consumer: the index's in config order, then those added since (removed ones
    /// left out, changed ones as they are now).
    pub fn consumers(&self) -> impl Iterator<Item = &Consumer> {
        let count = self.consumer_count() as ConsumerRef;
        (0..count)
            .filter(|c| !self.delta.removed_consumers.contains(c))
            .map(|c| self.consumer(c))
    }

    /// Every credential not removed, expired ones included: the index's in config order, then
    /// those added since.
    pub fn credentials(&self) -> impl Iterator<Item = (CredentialRef, &KeyauthCredential)> {
        let removed = &self.delta.removed_credentials;
        self.all_credentials()
            .filter(move |(r, _)| !removed.contains(r))
    }

    /// Every ACL membership: the index's in config order, then those added since (removed
    /// ones left out).
    pub fn acls(&self) -> impl Iterator<Item = &gangway_config::model::Acl> {
        let removed = &self.delta.removed_acls;
        self.base
            .acls
            .iter()
            .chain(&self.delta.acls)
            .enumerate()
            .filter(move |(i, _)| !removed.contains(&(*i as u32)))
            .map(|(_, a)| a)
    }

    /// The credential holding `key`, unless removed; expired ones included (the Admin API
    /// decides what an expired row looks like).
    pub fn credential_by_key(&self, key: &str) -> Option<CredentialRef> {
        self.live_credential_with_key(key.as_bytes())
    }

    /// The consumer's ACL groups: the index's in config order, then those added since.
    pub fn groups(&self, c: ConsumerRef) -> impl Iterator<Item = &str> {
        let removed = &self.delta.removed_acls;
        let base_len = self.base.acls.len() as u32;
        let indexed = self
            .base
            .acl_positions(c)
            .iter()
            .filter(move |i| !removed.contains(i))
            .map(|&i| &*self.base.acls[i as usize].group);
        let added = self
            .delta
            .acls
            .iter()
            .zip(&self.delta.acl_owner)
            .enumerate()
            .filter(move |(j, (_, owner))| {
                **owner == c && !removed.contains(&(base_len + *j as u32))
            })
            .map(|(_, (acl, _))| &*acl.group);
        indexed.chain(added)
    }
}

#[cfg(test)]
mod tests;
