//! The fast path for the entity kinds that run into millions: consumers, key-auth credentials
//! and ACLs are read straight into their model types as each list element is parsed, instead
//! of being kept as `serde_json::Value` trees until the whole file is read.
//!
//! An element takes the fast path only when nothing about it can produce an error except the
//! checks that need every entity (uniqueness, references by name): every field known, every
//! type right, an `id` absent or a valid UUID. Anything else stays a `Value` and goes through
//! the generic code, so every message and path is the same as before.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::fields::random_key;
use super::{namespace, stream};
use crate::config::model::{Acl, CompactTags, Consumer, ForeignKey, KeyauthCredential};

/// The top-level lists read through the fast path.
pub(crate) const KINDS: [&str; 3] = ["consumers", "keyauth_credentials", "acls"];

/// A top-level list: runs of fast elements between elements kept as values.
#[derive(Default)]
pub(crate) struct List {
    /// The elements in order.
    pub runs: Vec<Run>,
}

/// Consecutive fast elements, or one generic element.
pub(crate) enum Run {
    /// Fast elements: how many, and how many nested credentials and ACLs they added.
    Fast {
        /// Elements of the list itself.
        count: u32,
        /// Credentials nested in them (consumers only).
        creds: u32,
        /// ACLs nested in them (consumers only).
        acls: u32,
    },
    /// An element for the generic path.
    Generic(Value),
}

/// Entities read by the fast path, in list order, with where each came from.
#[derive(Default)]
pub(crate) struct Fast {
    /// The load time: default `created_at` and `updated_at`, and the base of `ttl`.
    pub now: i64,
    /// Sends every element the generic way (to compare both paths); default false.
    pub generic_only: bool,
    /// Top-level consumers.
    pub consumers: Vec<Consumer>,
    /// Credentials nested in fast consumers.
    pub nested_creds: Vec<KeyauthCredential>,
    /// For each nested credential: its consumer's index in `consumers[]` and its own index.
    pub nested_cred_at: Vec<(u32, u32)>,
    /// ACLs nested in fast consumers.
    pub nested_acls: Vec<Acl>,
    /// Top-level credentials; their consumer id is filled once every consumer is known.
    pub flat_creds: Vec<KeyauthCredential>,
    /// The `consumer` each top-level credential names.
    pub flat_cred_refs: Vec<Box<str>>,
    /// Top-level ACLs; consumer filled later, like `flat_creds`.
    pub flat_acls: Vec<Acl>,
    /// The `consumer` each top-level ACL names.
    pub flat_acl_refs: Vec<Box<str>>,
    /// The three lists, when present as sequences.
    pub lists: Lists,
}

/// The lists of [`KINDS`], each when the document has it as a sequence.
pub(crate) type Lists = [Option<List>; 3];

/// The list of `kind`, if the document had it as a sequence.
pub(crate) fn list<'l>(lists: &'l Lists, kind: &str) -> Option<&'l List> {
    lists[kind_index(kind)?].as_ref()
}

/// Mutable [`list`].
pub(crate) fn list_mut<'l>(lists: &'l mut Lists, kind: &str) -> Option<&'l mut List> {
    lists[kind_index(kind)?].as_mut()
}

fn kind_index(kind: &str) -> Option<usize> {
    KINDS.iter().position(|k| *k == kind)
}

impl Fast {
    /// An empty store for a load at `now` (epoch seconds).
    pub fn new(now: i64) -> Fast {
        Fast {
            now,
            ..Fast::default()
        }
    }

    /// Notes that the document has the list `kind` as a sequence, perhaps an empty one.
    pub fn seen(&mut self, kind: &str) {
        if let Some(k) = kind_index(kind) {
            self.lists[k].get_or_insert_with(List::default);
        }
    }

    /// Takes element `index` of the top-level list `kind`.
    pub fn push(&mut self, kind: &str, index: usize, value: Value) {
        let Some(k) = kind_index(kind) else {
            return;
        };
        let before = (self.nested_creds.len(), self.nested_acls.len());
        let taken = match value {
            Value::Object(obj) if !self.generic_only && fits(k, &obj) => {
                match k {
                    0 => self.take_consumer(obj, index),
                    1 => self.take_flat_cred(obj),
                    _ => self.take_flat_acl(obj),
                }
                None
            }
            other => Some(other),
        };
        let creds = (self.nested_creds.len() - before.0) as u32;
        let acls = (self.nested_acls.len() - before.1) as u32;
        let list = self.lists[k].get_or_insert_with(List::default);
        match (taken, list.runs.last_mut()) {
            (Some(v), _) => list.runs.push(Run::Generic(v)),
            (
                None,
                Some(Run::Fast {
                    count,
                    creds: c,
                    acls: a,
                }),
            ) => {
                *count += 1;
                *c += creds;
                *a += acls;
            }
            (None, _) => list.runs.push(Run::Fast {
                count: 1,
                creds,
                acls,
            }),
        }
    }

    fn take_consumer(&mut self, obj: Map<String, Value>, index: usize) {
        let mut c = Consumer {
            id: Uuid::nil(),
            username: None,
            custom_id: None,
            tags: None,
            created_at: self.now,
            updated_at: self.now,
        };
        let mut id = None;
        let mut creds = Vec::new();
        let mut acls = Vec::new();
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("id", Value::String(s)) => id = Uuid::parse_str(&s).ok(),
                ("username", Value::String(s)) => c.username = Some(s.into_boxed_str()),
                ("custom_id", Value::String(s)) => c.custom_id = Some(s.into_boxed_str()),
                ("tags", v) => c.tags = tags(v),
                ("created_at", v) => c.created_at = v.as_i64().unwrap_or(self.now),
                ("keyauth_credentials", Value::Array(a)) => creds = a,
                ("acls", Value::Array(a)) => acls = a,
                _ => {}
            }
        }
        c.id = id.unwrap_or_else(|| match &c.username {
            Some(name) => Uuid::new_v5(&namespace("consumers"), name.as_bytes()),
            None => Uuid::new_v4(),
        });
        let owner = ForeignKey::from(c.id);
        for (i, cred) in creds.into_iter().enumerate() {
            if let Value::Object(obj) = cred {
                let cred = self.cred(obj, owner).0;
                self.nested_creds.push(cred);
                self.nested_cred_at.push((index as u32, i as u32));
            }
        }
        for acl in acls {
            if let Value::Object(obj) = acl {
                let acl = self.acl(obj, owner).0;
                self.nested_acls.push(acl);
            }
        }
        self.consumers.push(c);
    }

    fn take_flat_cred(&mut self, obj: Map<String, Value>) {
        let (cred, consumer) = self.cred(obj, ForeignKey::from(Uuid::nil()));
        self.flat_creds.push(cred);
        self.flat_cred_refs.push(consumer.unwrap_or_default());
    }

    fn take_flat_acl(&mut self, obj: Map<String, Value>) {
        let (acl, consumer) = self.acl(obj, ForeignKey::from(Uuid::nil()));
        self.flat_acls.push(acl);
        self.flat_acl_refs.push(consumer.unwrap_or_default());
    }

    /// A credential, with the `consumer` string it names (top-level ones).
    fn cred(
        &self,
        obj: Map<String, Value>,
        owner: ForeignKey,
    ) -> (KeyauthCredential, Option<Box<str>>) {
        let mut id = None;
        let mut key = None;
        let mut consumer = None;
        let mut cred = KeyauthCredential {
            id: Uuid::nil(),
            consumer: owner,
            key: Box::from(""),
            expires_at: None,
            tags: None,
            created_at: self.now,
        };
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("id", Value::String(s)) => id = Uuid::parse_str(&s).ok(),
                ("key", Value::String(s)) => key = Some(s.into_boxed_str()),
                ("consumer", Value::String(s)) => consumer = Some(s.into_boxed_str()),
                ("ttl", v) => {
                    cred.expires_at = v.as_i64().filter(|s| *s > 0).map(|s| self.now + s);
                }
                ("tags", v) => cred.tags = tags(v),
                ("created_at", v) => cred.created_at = v.as_i64().unwrap_or(self.now),
                _ => {}
            }
        }
        cred.id = id.unwrap_or_else(|| match &key {
            Some(k) => Uuid::new_v5(&namespace("keyauth_credentials"), k.as_bytes()),
            None => Uuid::new_v4(),
        });
        cred.key = key.unwrap_or_else(|| random_key().into_boxed_str());
        (cred, consumer)
    }

    /// An ACL, with the `consumer` string it names (top-level ones).
    fn acl(&self, obj: Map<String, Value>, owner: ForeignKey) -> (Acl, Option<Box<str>>) {
        let mut id = None;
        let mut consumer = None;
        let mut acl = Acl {
            id: Uuid::nil(),
            consumer: owner,
            group: Box::from(""),
            tags: None,
            created_at: self.now,
        };
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("id", Value::String(s)) => id = Uuid::parse_str(&s).ok(),
                ("group", Value::String(s)) => acl.group = s.into_boxed_str(),
                ("consumer", Value::String(s)) => consumer = Some(s.into_boxed_str()),
                ("tags", v) => acl.tags = tags(v),
                ("created_at", v) => acl.created_at = v.as_i64().unwrap_or(self.now),
                _ => {}
            }
        }
        acl.id = id.unwrap_or_else(Uuid::new_v4);
        (acl, consumer)
    }
}

impl stream::Sink for Fast {
    fn streams(&self, key: &str) -> bool {
        kind_index(key).is_some()
    }

    fn element(&mut self, key: &str, index: usize, value: Value) {
        self.push(key, index, value);
    }

    fn list_seen(&mut self, key: &str) {
        self.seen(key);
    }
}

fn tags(v: Value) -> CompactTags {
    match v {
        Value::Array(a) => Some(
            a.into_iter()
                .filter_map(|t| match t {
                    Value::String(s) => Some(s.into_boxed_str()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// True when element `obj` of list `KINDS[kind]` can take the fast path.
fn fits(kind: usize, obj: &Map<String, Value>) -> bool {
    match kind {
        0 => consumer_fits(obj),
        1 => cred_fits(obj, true),
        _ => acl_fits(obj, true),
    }
}

/// Keys `check_known` accepts for every entity besides the listed ones.
fn known(obj: &Map<String, Value>, allowed: &[&str]) -> bool {
    obj.keys().all(|k| {
        allowed.contains(&k.as_str()) || matches!(k.as_str(), "id" | "_comment" | "_ignore")
    }) && match obj.get("id") {
        None => true,
        Some(Value::String(s)) => Uuid::parse_str(s).is_ok(),
        Some(_) => false,
    }
}

fn absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

fn opt_str(v: Option<&Value>) -> bool {
    absent(v) || matches!(v, Some(Value::String(_)))
}

fn opt_int(v: Option<&Value>, min: i64, max: i64) -> bool {
    absent(v)
        || v.and_then(Value::as_i64)
            .is_some_and(|n| (min..=max).contains(&n))
}

fn opt_tags(v: Option<&Value>) -> bool {
    absent(v)
        || v.and_then(Value::as_array)
            .is_some_and(|a| a.iter().all(Value::is_string))
}

fn consumer_fits(obj: &Map<String, Value>) -> bool {
    let list_fits = |key: &str, fits: fn(&Map<String, Value>, bool) -> bool| match obj.get(key) {
        None => true,
        Some(Value::Array(a)) => a
            .iter()
            .all(|v| v.as_object().is_some_and(|o| fits(o, false))),
        Some(_) => false,
    };
    known(
        obj,
        &[
            "username",
            "custom_id",
            "tags",
            "created_at",
            "updated_at",
            "keyauth_credentials",
            "acls",
        ],
    ) && opt_str(obj.get("username"))
        && opt_str(obj.get("custom_id"))
        && (obj.get("username").is_some_and(Value::is_string)
            || obj.get("custom_id").is_some_and(Value::is_string))
        && opt_tags(obj.get("tags"))
        && opt_int(obj.get("created_at"), 0, i64::MAX)
        && list_fits("keyauth_credentials", cred_fits)
        && list_fits("acls", acl_fits)
}

/// Top-level (`flat`) credentials must name their consumer with a plain string.
fn cred_fits(obj: &Map<String, Value>, flat: bool) -> bool {
    known(obj, &["consumer", "key", "ttl", "tags", "created_at"])
        && (!flat || obj.get("consumer").is_some_and(Value::is_string))
        && opt_str(obj.get("key"))
        && opt_int(obj.get("ttl"), 0, 100_000_000)
        && opt_tags(obj.get("tags"))
        && opt_int(obj.get("created_at"), 0, i64::MAX)
}

fn acl_fits(obj: &Map<String, Value>, flat: bool) -> bool {
    known(obj, &["consumer", "group", "tags", "created_at"])
        && (!flat || obj.get("consumer").is_some_and(Value::is_string))
        && obj.get("group").is_some_and(Value::is_string)
        && opt_tags(obj.get("tags"))
        && opt_int(obj.get("created_at"), 0, i64::MAX)
}

#[cfg(test)]
mod tests;
