//! The fast path for the entity kinds that run into millions: consumers, key-auth credentials
//! and ACLs are read straight into their model types as each list element is parsed, instead
//! of being kept as `serde_json::Value` trees until the whole file is read.
//!
//! An element takes the fast path only when nothing about it can produce an error except the
//! checks that need every entity (uniqueness, references by name): every field known and
//! given once, every type right, an `id` absent or a valid UUID. Anything else becomes a
//! `Value` and goes through the generic code, so every message and path is the same as before.
//!
//! A consumer's nested plugins (a portal's per-consumer plans) do not keep the consumer off
//! the fast path. One in the usual shape becomes a plain plugin (`plain_plugins`); any other
//! is kept as JSON text, with its consumer's id and its path in the file, and validated by
//! the generic code as if it had found it nested.

use compact_str::CompactString;
use std::num::NonZeroI64;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::fields::random_key;
use super::node::Node;
use super::plain_plugins::{PlainPlugin, Rests, TopPlugin, nested};
use super::shared::{SharedConfigs, SharedNames};
use super::{namespace, stream, uuid_v5};
use crate::model::{Acl, CompactTags, Consumer, ForeignKey, KeyauthCredential};

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
    /// Fast elements: how many, and how many nested credentials, ACLs and plugins they added.
    Fast {
        /// Elements of the list itself.
        count: u32,
        /// Plugins nested in them (consumers only).
        plugins: u32,
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
    /// Plugins nested in fast consumers, for the generic code.
    pub nested_plugins: Vec<NestedPlugin>,
    /// Their JSON, end to end: kept as values, they would stay scattered among the
    /// consumers' allocations after they are freed, and keep those pages from the kernel.
    pub nested_plugin_json: String,
    /// The configs of nested plugins (taken out of their JSON), and of top-level plugins a
    /// [`super::DocumentBuilder`] was given apart.
    pub configs: SharedConfigs,
    /// The top-level plugins pushed to a [`super::DocumentBuilder`], in order.
    pub top_plugins: Vec<TopPlugin>,
    /// The other-fields texts of the plugin rows pushed to a [`super::DocumentBuilder`].
    pub plugin_rests: Rests,
    /// Plugins in the usual shape: those nested in fast consumers as they are read, then
    /// the top-level ones taken out of `top_plugins`.
    pub plain_plugins: Vec<PlainPlugin>,
    /// Top-level credentials; their consumer id is filled once every consumer is known.
    pub flat_creds: Vec<KeyauthCredential>,
    /// The `consumer` each top-level credential names.
    pub flat_cred_refs: Names,
    /// Top-level ACLs; consumer filled later, like `flat_creds`.
    pub flat_acls: Vec<Acl>,
    /// The `consumer` each top-level ACL names.
    pub flat_acl_refs: Names,
    /// ACL group and plugin names, shared: a million memberships or plan instances name a
    /// handful of each.
    names: SharedNames,
    /// The three lists, when present as sequences.
    pub lists: Lists,
}

/// A plugin nested in a fast consumer.
pub(crate) struct NestedPlugin {
    /// Its consumer's index in the `consumers` list of the file.
    pub consumer: u32,
    /// Its index in that consumer's `plugins`.
    pub index: u32,
    /// Its consumer's id.
    pub consumer_id: Uuid,
    /// How it was read.
    pub form: NestedForm,
}

/// How a nested plugin was read.
pub(crate) enum NestedForm {
    /// For the generic code: where the plugin as written, less its config, is in
    /// [`Fast::nested_plugin_json`], and its config in [`Fast::configs`] when it has one.
    Json {
        json: std::ops::Range<usize>,
        config: Option<u32>,
    },
    /// In the usual shape: its index in [`Fast::plain_plugins`].
    Plain(u32),
}

/// The names top-level entities give as `consumer`, in one buffer.
pub(crate) type Names = crate::model::PackedStrs;

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
    pub fn push(&mut self, kind: &str, index: usize, node: Node) {
        let Some(k) = kind_index(kind) else {
            return;
        };
        let before = (
            self.nested_creds.len(),
            self.nested_acls.len(),
            self.nested_plugins.len(),
        );
        let generic = match node {
            Node::Map(pairs) if !self.generic_only && fits(k, &pairs) => {
                match k {
                    0 => self.take_consumer(pairs, index),
                    1 => self.take_flat_cred(pairs),
                    _ => self.take_flat_acl(pairs),
                }
                None
            }
            other => Some(other.into_value()),
        };
        let creds = (self.nested_creds.len() - before.0) as u32;
        let acls = (self.nested_acls.len() - before.1) as u32;
        let plugins = (self.nested_plugins.len() - before.2) as u32;
        let list = self.lists[k].get_or_insert_with(List::default);
        match (generic, list.runs.last_mut()) {
            (Some(v), _) => list.runs.push(Run::Generic(v)),
            (
                None,
                Some(Run::Fast {
                    count,
                    creds: c,
                    acls: a,
                    plugins: p,
                }),
            ) => {
                *count += 1;
                *c += creds;
                *a += acls;
                *p += plugins;
            }
            (None, _) => list.runs.push(Run::Fast {
                count: 1,
                creds,
                acls,
                plugins,
            }),
        }
    }

    fn take_consumer(&mut self, pairs: Vec<(CompactString, Node)>, index: usize) {
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
        let mut plugins = Vec::new();
        for (k, v) in pairs {
            match (k.as_str(), v) {
                ("id", Node::Str(s)) => id = Uuid::parse_str(&s).ok(),
                ("username", Node::Str(s)) => c.username = Some(s.into_string().into_boxed_str()),
                ("custom_id", Node::Str(s)) => c.custom_id = Some(s.into_string().into_boxed_str()),
                ("tags", v) => c.tags = tags(v),
                ("created_at", v) => c.created_at = v.as_i64().unwrap_or(self.now),
                ("keyauth_credentials", Node::Seq(a)) => creds = a,
                ("acls", Node::Seq(a)) => acls = a,
                ("plugins", Node::Seq(a)) => plugins = a,
                _ => {}
            }
        }
        c.id = id.unwrap_or_else(|| match &c.username {
            Some(name) => uuid_v5(&namespace("consumers"), name.as_bytes()),
            None => Uuid::new_v4(),
        });
        let owner = ForeignKey::from(c.id);
        for (i, cred) in creds.into_iter().enumerate() {
            if let Node::Map(pairs) = cred {
                let cred = self.cred(pairs, owner).0;
                self.nested_creds.push(cred);
                self.nested_cred_at.push((index as u32, i as u32));
            }
        }
        for acl in acls {
            if let Node::Map(pairs) = acl {
                let acl = self.acl(pairs, owner).0;
                self.nested_acls.push(acl);
            }
        }
        for (i, mut plugin) in plugins.into_iter().enumerate() {
            let at = (index as u32, i as u32);
            if let Node::Map(pairs) = &mut plugin {
                if let Some(plain) = nested(pairs, at, c.id, &mut self.configs, &mut self.names) {
                    self.nested_plugins.push(NestedPlugin {
                        consumer: at.0,
                        index: at.1,
                        consumer_id: c.id,
                        form: NestedForm::Plain(self.plain_plugins.len() as u32),
                    });
                    self.plain_plugins.push(plain);
                    continue;
                }
            }
            let config = match &mut plugin {
                Node::Map(pairs) => {
                    // As in a parsed object, the last of repeated keys wins.
                    let last = pairs.iter().rposition(|(k, _)| k == "config");
                    let config = last.map(|at| pairs.remove(at).1);
                    pairs.retain(|(k, _)| k != "config");
                    config.map(|c| self.configs.intern(c.into_value()))
                }
                _ => None,
            };
            let start = self.nested_plugin_json.len();
            self.nested_plugin_json
                .push_str(&plugin.into_value().to_string());
            self.nested_plugins.push(NestedPlugin {
                consumer: at.0,
                index: at.1,
                consumer_id: c.id,
                form: NestedForm::Json {
                    json: start..self.nested_plugin_json.len(),
                    config,
                },
            });
        }
        self.consumers.push(c);
    }

    fn take_flat_cred(&mut self, pairs: Vec<(CompactString, Node)>) {
        let (cred, consumer) = self.cred(pairs, ForeignKey::from(Uuid::nil()));
        self.flat_creds.push(cred);
        self.flat_cred_refs
            .push(consumer.as_deref().unwrap_or_default());
    }

    fn take_flat_acl(&mut self, pairs: Vec<(CompactString, Node)>) {
        let (acl, consumer) = self.acl(pairs, ForeignKey::from(Uuid::nil()));
        self.flat_acls.push(acl);
        self.flat_acl_refs
            .push(consumer.as_deref().unwrap_or_default());
    }

    /// A credential, with the `consumer` string it names (top-level ones).
    fn cred(
        &self,
        pairs: Vec<(CompactString, Node)>,
        owner: ForeignKey,
    ) -> (KeyauthCredential, Option<CompactString>) {
        let mut id = None;
        let mut key: Option<Box<str>> = None;
        let mut consumer = None;
        let mut cred = KeyauthCredential {
            id: Uuid::nil(),
            consumer: owner,
            key: Box::from(""),
            expires_at: None,
            tags: None,
            created_at: self.now,
        };
        for (k, v) in pairs {
            match (k.as_str(), v) {
                ("id", Node::Str(s)) => id = Uuid::parse_str(&s).ok(),
                ("key", Node::Str(s)) => key = Some(s.into_string().into_boxed_str()),
                ("consumer", v) => consumer = consumer_reference(v),
                ("ttl", v) => {
                    let ttl = v.as_i64().filter(|s| *s > 0);
                    cred.expires_at = ttl.and_then(|s| NonZeroI64::new(self.now + s));
                }
                ("tags", v) => cred.tags = tags(v),
                ("created_at", v) => cred.created_at = v.as_i64().unwrap_or(self.now),
                _ => {}
            }
        }
        cred.id = id.unwrap_or_else(|| match &key {
            Some(k) => uuid_v5(&namespace("keyauth_credentials"), k.as_bytes()),
            None => Uuid::new_v4(),
        });
        cred.key = key.unwrap_or_else(|| random_key().into_boxed_str());
        (cred, consumer)
    }

    /// An ACL, with the `consumer` string it names (top-level ones).
    fn acl(
        &mut self,
        pairs: Vec<(CompactString, Node)>,
        owner: ForeignKey,
    ) -> (Acl, Option<CompactString>) {
        let mut id = None;
        let mut consumer = None;
        let mut group_given = false;
        let mut by_record = false;
        let mut acl = Acl {
            id: Uuid::nil(),
            consumer: owner,
            group: Arc::from(""),
            tags: None,
            created_at: self.now,
        };
        for (k, v) in pairs {
            match (k.as_str(), v) {
                ("id", Node::Str(s)) => id = Uuid::parse_str(&s).ok(),
                ("group", Node::Str(s)) => {
                    group_given = true;
                    acl.group = self.names.get(&s);
                }
                ("consumer", v) => {
                    by_record = matches!(v, Node::Map(_));
                    consumer = consumer_reference(v);
                }
                ("tags", v) => acl.tags = tags(v),
                ("created_at", v) => acl.created_at = v.as_i64().unwrap_or(self.now),
                _ => {}
            }
        }
        // Kong's cache key `acls:*:<consumer>:<group>`: the nesting consumer's id, else the
        // name or id the ACL gives (a `{"id": ...}` record adds nothing, as in Kong); without
        // a group Kong picks a random id.
        acl.id = id.unwrap_or_else(|| {
            let key = match &consumer {
                _ if owner.id != Uuid::nil() => Some(format!("acls:*:{}:{}", owner.id, acl.group)),
                Some(_) if by_record => Some(format!("acls:*:{}", acl.group)),
                Some(name) => Some(format!("acls:*:{name}:{}", acl.group)),
                None => None,
            };
            match (key, group_given) {
                (Some(key), true) => uuid_v5(&namespace("acls"), key.as_bytes()),
                _ => Uuid::new_v4(),
            }
        });
        (acl, consumer)
    }
}

impl stream::Sink for Fast {
    fn streams(&self, key: &str) -> bool {
        kind_index(key).is_some()
    }

    fn element(&mut self, key: &str, index: usize, node: Node) {
        self.push(key, index, node);
    }

    fn list_seen(&mut self, key: &str) {
        self.seen(key);
    }
}

/// The string a consumer reference names it by: itself, or the id of `{"id": ...}`.
fn consumer_reference(v: Node) -> Option<CompactString> {
    match v {
        Node::Str(s) => Some(s),
        Node::Map(pairs) => pairs.into_iter().find_map(|(k, v)| match (k.as_str(), v) {
            ("id", Node::Str(id)) => Some(id),
            _ => None,
        }),
        _ => None,
    }
}

fn tags(v: Node) -> CompactTags {
    match v {
        Node::Seq(a) => Some(Box::new(
            a.into_iter()
                .filter_map(|t| match t {
                    Node::Str(s) => Some(s.into_string().into_boxed_str()),
                    _ => None,
                })
                .collect(),
        )),
        _ => None,
    }
}

type Pairs = [(CompactString, Node)];

/// True when element `pairs` of list `KINDS[kind]` can take the fast path.
fn fits(kind: usize, pairs: &Pairs) -> bool {
    match kind {
        0 => consumer_fits(pairs),
        1 => cred_fits(pairs, true),
        _ => acl_fits(pairs, true),
    }
}

/// Checks each field once, in one pass: a repeated key (where the generic loader keeps the
/// last value) or a field `check` refuses sends the element the generic way.
fn each_field(pairs: &Pairs, mut check: impl FnMut(&str, &Node) -> bool) -> bool {
    pairs.iter().enumerate().all(|(i, (k, v))| {
        !pairs[..i].iter().any(|(seen, _)| seen == k)
            && (matches!(k.as_str(), "_comment" | "_ignore") || check(k, v))
    })
}

fn valid_id(v: &Node) -> bool {
    matches!(v, Node::Str(s) if Uuid::parse_str(s).is_ok())
}

fn opt_str(v: &Node) -> bool {
    matches!(v, Node::Null | Node::Str(_))
}

fn opt_int(v: &Node, min: i64, max: i64) -> bool {
    matches!(v, Node::Null) || v.as_i64().is_some_and(|n| (min..=max).contains(&n))
}

fn opt_tags(v: &Node) -> bool {
    match v {
        Node::Null => true,
        Node::Seq(a) => a
            .iter()
            .all(|t| matches!(t, Node::Str(s) if super::fields::valid_tag(s))),
        _ => false,
    }
}

fn all_maps(v: &Node, fits: fn(&Pairs, bool) -> bool) -> bool {
    matches!(v, Node::Seq(items) if items.iter().all(|i| matches!(i, Node::Map(p) if fits(p, false))))
}

fn consumer_fits(pairs: &Pairs) -> bool {
    let mut named = false;
    each_field(pairs, |k, v| match k {
        "id" => valid_id(v),
        "username" | "custom_id" => {
            named |= matches!(v, Node::Str(_));
            opt_str(v)
        }
        "tags" => opt_tags(v),
        "created_at" => opt_int(v, 0, i64::MAX),
        // Allowed and never read.
        "updated_at" => true,
        "keyauth_credentials" => all_maps(v, cred_fits),
        "acls" => all_maps(v, acl_fits),
        // Validated later, by the generic code.
        "plugins" => all_maps(v, |_, _| true),
        _ => false,
    }) && named
}

/// Top-level (`flat`) credentials must name their consumer with a plain string; nested ones
/// belong to their parent whatever `consumer` says.
fn cred_fits(pairs: &Pairs, flat: bool) -> bool {
    let mut named = !flat;
    each_field(pairs, |k, v| match k {
        "id" => valid_id(v),
        "consumer" => {
            named |= names_consumer(v);
            !flat || names_consumer(v)
        }
        "key" => opt_str(v),
        "ttl" => opt_int(v, 0, 100_000_000),
        "tags" => opt_tags(v),
        "created_at" => opt_int(v, 0, i64::MAX),
        _ => false,
    }) && named
}

/// A consumer named by a string (a username or an id), or by Kong's foreign-key form
/// `{"id": "<uuid>"}` (as a database export writes it).
fn names_consumer(v: &Node) -> bool {
    match v {
        Node::Str(_) => true,
        Node::Map(pairs) => matches!(pairs.as_slice(), [(k, id)] if k == "id" && valid_id(id)),
        _ => false,
    }
}

fn acl_fits(pairs: &Pairs, flat: bool) -> bool {
    let (mut named, mut grouped) = (!flat, false);
    each_field(pairs, |k, v| match k {
        "id" => valid_id(v),
        "consumer" => {
            named |= names_consumer(v);
            !flat || names_consumer(v)
        }
        "group" => {
            grouped = matches!(v, Node::Str(_));
            grouped
        }
        "tags" => opt_tags(v),
        "created_at" => opt_int(v, 0, i64::MAX),
        _ => false,
    }) && named
        && grouped
}

#[cfg(test)]
mod tests;
