//! Writes on top of a built index: what an Admin API write of one consumer, key or ACL group
//! does. The change lands in a small [`Delta`] next to the shared index, so adding a key to a
//! million costs microseconds and never touches routes or plugin chains. [`Identities::compact`]
//! folds the delta into a fresh index (a full build) when it has grown.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use super::index::same_key;
use super::{ConsumerRef, CredentialRef, Identities};
use gangway_config::model::{Acl, Consumer, Id, KeyauthCredential};

/// Entities added or removed since the index was built. Added entities take the positions
/// after the index's (`index.len() + i`), so references handed out earlier stay valid.
#[derive(Debug, Clone, Default)]
pub(super) struct Delta {
    pub(super) consumers: Vec<Consumer>,
    pub(super) credentials: Vec<KeyauthCredential>,
    pub(super) credential_owner: Vec<ConsumerRef>,
    pub(super) acls: Vec<Acl>,
    pub(super) acl_owner: Vec<ConsumerRef>,
    by_key: HashTable<u32>,
    credential_by_id: HashMap<Id, u32>,
    by_id: HashMap<Id, ConsumerRef>,
    by_username: HashMap<Box<str>, ConsumerRef>,
    pub(super) removed_credentials: HashSet<CredentialRef>,
    /// Consumers deleted since the index was built (their positions stay taken).
    pub(super) removed_consumers: HashSet<ConsumerRef>,
    /// Consumers changed in place: a consumer keeps its position, so its credentials and
    /// groups stay attached.
    pub(super) replaced_consumers: HashMap<ConsumerRef, Consumer>,
    /// ACL memberships deleted (positions across the index's and the delta's).
    pub(super) removed_acls: HashSet<u32>,
}

impl Delta {
    /// The live delta credential holding `key` (its position within the delta); `hash` is
    /// the index's hash of `key`, `base_len` the index's credential count.
    pub(super) fn find_key(&self, hash: u64, key: &[u8], base_len: u32) -> Option<u32> {
        if self.credentials.is_empty() {
            return None;
        }
        self.by_key
            .find(hash, |&j| {
                !self.removed_credentials.contains(&(base_len + j))
                    && same_key(self.credentials[j as usize].key.as_bytes(), key)
            })
            .copied()
    }

    pub(super) fn consumer_by_id(&self, id: Id) -> Option<ConsumerRef> {
        self.by_id.get(&id).copied()
    }

    pub(super) fn consumer_by_username(&self, name: &str) -> Option<ConsumerRef> {
        self.by_username.get(name).copied()
    }

    /// Entities added, changed or removed.
    pub(super) fn len(&self) -> usize {
        self.consumers.len()
            + self.credentials.len()
            + self.acls.len()
            + self.removed_credentials.len()
            + self.removed_consumers.len()
            + self.replaced_consumers.len()
            + self.removed_acls.len()
    }
}

/// Why a write was refused, with Kong's DAO messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A unique field (a key, a username, an id) is taken: Kong's code 5, HTTP 409.
    #[error("UNIQUE violation detected on '{{{field}=\"{value}\"}}'")]
    Unique {
        /// The field.
        field: &'static str,
        /// The value already in use.
        value: String,
    },
    /// The consumer referenced does not exist: Kong's code 4, HTTP 400.
    #[error("the foreign key '{{id=\"{0}\"}}' does not reference an existing 'consumers' entity.")]
    UnknownConsumer(Id),
    /// No entity has this primary key: Kong's code 6, HTTP 404.
    #[error("could not find the entity with primary key '{{id=\"{0}\"}}'")]
    NotFound(Id),
}

impl Identities {
    fn with_delta(&self, change: impl FnOnce(&mut Delta)) -> Identities {
        let mut delta = Delta::clone(&self.delta);
        change(&mut delta);
        Identities {
            base: self.base.clone(),
            delta: Arc::new(delta),
        }
    }

    /// A copy with `consumer` added.
    pub fn with_consumer(&self, consumer: Consumer) -> Result<Identities, IdentityError> {
        if self.consumer_by_id(consumer.id).is_some() {
            return Err(IdentityError::Unique {
                field: "id",
                value: consumer.id.to_string(),
            });
        }
        if let Some(name) = consumer.username.as_deref() {
            if self.consumer_by_username(name).is_some() {
                return Err(IdentityError::Unique {
                    field: "username",
                    value: name.to_string(),
                });
            }
        }
        let position = self.consumer_count() as ConsumerRef;
        Ok(self.with_delta(|d| {
            d.by_id.insert(consumer.id, position);
            if let Some(name) = consumer.username.as_deref() {
                d.by_username.insert(name.into(), position);
            }
            d.consumers.push(consumer);
        }))
    }

    /// A copy with the key-auth credential `cred` added (its key must be unused and its
    /// consumer must exist).
    pub fn with_credential(&self, cred: KeyauthCredential) -> Result<Identities, IdentityError> {
        let owner = self
            .consumer_by_id(cred.consumer.id)
            .ok_or(IdentityError::UnknownConsumer(cred.consumer.id))?;
        // An expired key still holds its value, as Kong's unique constraint does.
        if self.live_credential_with_key(cred.key.as_bytes()).is_some() {
            return Err(IdentityError::Unique {
                field: "key",
                value: cred.key.to_string(),
            });
        }
        if self.credential_by_id(cred.id).is_some() {
            return Err(IdentityError::Unique {
                field: "id",
                value: cred.id.to_string(),
            });
        }
        let index = &self.base;
        Ok(self.with_delta(|d| {
            let h = index.hasher.hash_one(cred.key.as_bytes());
            let position = d.credentials.len() as u32;
            let credentials = &d.credentials;
            d.by_key.insert_unique(h, position, |&j| {
                index
                    .hasher
                    .hash_one(credentials[j as usize].key.as_bytes())
            });
            d.credential_by_id.insert(cred.id, position);
            d.credentials.push(cred);
            d.credential_owner.push(owner);
        }))
    }

    /// A copy without the credential whose id is `id`.
    pub fn without_credential(&self, id: Id) -> Result<Identities, IdentityError> {
        let found = self
            .credential_by_id(id)
            .ok_or(IdentityError::NotFound(id))?;
        Ok(self.with_delta(|d| {
            d.removed_credentials.insert(found);
        }))
    }

    /// A copy without the consumer whose id is `id`. Its credentials and groups stop
    /// resolving to a consumer (a database deletes them with it, and logs each deletion).
    pub fn without_consumer(&self, id: Id) -> Result<Identities, IdentityError> {
        let found = self.consumer_by_id(id).ok_or(IdentityError::NotFound(id))?;
        Ok(self.with_delta(|d| {
            d.removed_consumers.insert(found);
            d.replaced_consumers.remove(&found);
        }))
    }

    /// A copy with `consumer` added, or changed in place when its id exists (a rename keeps
    /// its credentials and groups).
    pub fn upsert_consumer(&self, consumer: Consumer) -> Result<Identities, IdentityError> {
        let Some(at) = self.consumer_by_id(consumer.id) else {
            return self.with_consumer(consumer);
        };
        if let Some(name) = consumer.username.as_deref() {
            if self
                .consumer_by_username(name)
                .is_some_and(|other| other != at)
            {
                return Err(IdentityError::Unique {
                    field: "username",
                    value: name.to_string(),
                });
            }
        }
        Ok(self.with_delta(|d| {
            if let Some(name) = consumer.username.as_deref() {
                d.by_username.insert(name.into(), at);
            }
            d.replaced_consumers.insert(at, consumer);
        }))
    }

    /// A copy with `cred` added, or replacing the credential with its id.
    pub fn upsert_credential(&self, cred: KeyauthCredential) -> Result<Identities, IdentityError> {
        match self.credential_by_id(cred.id) {
            Some(_) => self.without_credential(cred.id)?.with_credential(cred),
            None => self.with_credential(cred),
        }
    }

    /// The position of the ACL membership with this id, unless removed.
    fn acl_by_id(&self, id: Id) -> Option<u32> {
        let removed = &self.delta.removed_acls;
        self.base
            .acls
            .iter()
            .chain(&self.delta.acls)
            .enumerate()
            .find(|(i, a)| a.id == id && !removed.contains(&(*i as u32)))
            .map(|(i, _)| i as u32)
    }

    /// A copy without the ACL membership whose id is `id`.
    pub fn without_acl(&self, id: Id) -> Result<Identities, IdentityError> {
        let found = self.acl_by_id(id).ok_or(IdentityError::NotFound(id))?;
        Ok(self.with_delta(|d| {
            d.removed_acls.insert(found);
        }))
    }

    /// A copy with `acl` added, or replacing the membership with its id.
    pub fn upsert_acl(&self, acl: Acl) -> Result<Identities, IdentityError> {
        match self.acl_by_id(acl.id) {
            Some(_) => self.without_acl(acl.id)?.with_acl(acl),
            None => self.with_acl(acl),
        }
    }

    /// A copy with the ACL membership `acl` added (its consumer must exist).
    pub fn with_acl(&self, acl: Acl) -> Result<Identities, IdentityError> {
        let owner = self
            .consumer_by_id(acl.consumer.id)
            .ok_or(IdentityError::UnknownConsumer(acl.consumer.id))?;
        Ok(self.with_delta(|d| {
            d.acls.push(acl);
            d.acl_owner.push(owner);
        }))
    }

    /// Entities written since the index was built; when this grows, [`Self::compact`].
    pub fn pending_writes(&self) -> usize {
        self.delta.len()
    }

    /// Folds the writes into a new index: a full build, as a reload does (run it off the
    /// data plane's threads).
    pub fn compact(&self) -> Identities {
        let credentials = self.credentials().map(|(_, c)| c.clone()).collect();
        let consumers = self.consumers().cloned().collect();
        let acls = self.acls().cloned().collect();
        Identities::build(consumers, credentials, acls)
    }

    pub(super) fn all_credentials(
        &self,
    ) -> impl Iterator<Item = (CredentialRef, &KeyauthCredential)> {
        self.base
            .credentials
            .iter()
            .chain(&self.delta.credentials)
            .enumerate()
            .map(|(i, c)| (i as CredentialRef, c))
    }

    /// The credential with this key, removed ones aside, expired ones included.
    pub(super) fn live_credential_with_key(&self, key: &[u8]) -> Option<CredentialRef> {
        let h = self.base.hash_key(key);
        let base_len = self.base.credentials.len() as u32;
        if let Some(j) = self.delta.find_key(h, key, base_len) {
            return Some(base_len + j);
        }
        self.base
            .find_key(h, key)
            .filter(|r| !self.delta.removed_credentials.contains(r))
    }

    /// The credential with this id, unless removed.
    pub fn credential_by_id(&self, id: Id) -> Option<CredentialRef> {
        let added = self
            .delta
            .credential_by_id
            .get(&id)
            .map(|&j| self.base.credentials.len() as u32 + j);
        added
            .or_else(|| self.base.credential_by_id(id))
            .filter(|r| !self.delta.removed_credentials.contains(r))
    }
}
