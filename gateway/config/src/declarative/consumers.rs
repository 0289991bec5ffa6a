//! Builds consumers, key-auth credentials and ACLs: the fast-path entities are moved in as
//! they are, the generic ones are read field by field, and the checks that need all of them
//! (uniqueness, references by name) index the built vectors instead of copying their strings.

use std::cell::OnceCell;
use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};
use uuid::Uuid;

use super::checks::{Lookup, reference};
use super::fast::{Fast, Names};
use super::fields::{Fields, id, random_key};
use super::{Item, Span, Store};
use crate::ConfigErrors;
use crate::model::{Acl, CompactTags, Consumer, KeyauthCredential};

/// Positions in a vector, found by a key stored in the vector itself: a set or map over
/// millions of entities without a copy of their strings.
struct Index {
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Index {
    fn with_capacity(n: usize) -> Index {
        Index {
            table: HashTable::with_capacity(n),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The position stored under `key`; `at` reads the key of a stored position.
    fn find<'s, K: Hash + Eq + ?Sized + 's>(
        &self,
        key: &K,
        at: impl Fn(u32) -> &'s K,
    ) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |p| at(*p) == key).copied()
    }

    /// Stores `pos` under `key` and returns the position already there, if any; that one is
    /// kept unless `replace` (a map where later names win).
    fn insert<'s, K: Hash + Eq + ?Sized + 's>(
        &mut self,
        key: &K,
        pos: u32,
        replace: bool,
        at: impl Fn(u32) -> &'s K,
    ) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        if let Some(found) = self.table.find_mut(hash, |p| at(*p) == key) {
            let old = *found;
            if replace {
                *found = pos;
            }
            return Some(old);
        }
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, pos, |p| hasher.hash_one(at(*p)));
        None
    }
}

/// Resolves references to consumers by id, username or custom_id, indexing the consumers
/// only when the first reference needs it (nested credentials never do).
pub(super) struct ConsumerRefs<'c> {
    consumers: &'c [Consumer],
    /// Ids, and names (position * 2, + 1 for a custom_id) where later consumers win.
    built: OnceCell<(Index, Index)>,
}

impl<'c> ConsumerRefs<'c> {
    /// References into `consumers`.
    pub fn new(consumers: &'c [Consumer]) -> Self {
        ConsumerRefs {
            consumers,
            built: OnceCell::new(),
        }
    }

    fn name(&self, pos: u32) -> &'c str {
        let c = &self.consumers[(pos >> 1) as usize];
        let name = if pos & 1 == 0 {
            &c.username
        } else {
            &c.custom_id
        };
        name.as_deref().unwrap_or_default()
    }

    fn build(&self) -> (Index, Index) {
        let all = self.consumers;
        let mut ids = Index::with_capacity(all.len());
        let mut names = Index::with_capacity(all.len());
        for (i, c) in all.iter().enumerate() {
            ids.insert(&c.id, i as u32, false, |p| &all[p as usize].id);
            for (field, name) in [(0, &c.username), (1, &c.custom_id)] {
                if let Some(name) = name.as_deref() {
                    names.insert(name, (i as u32) << 1 | field, true, |p| self.name(p));
                }
            }
        }
        (ids, names)
    }
}

impl Lookup for ConsumerRefs<'_> {
    fn resolve(&self, key: &str) -> Option<Uuid> {
        let (ids, names) = self.built.get_or_init(|| self.build());
        let all = self.consumers;
        if let Ok(id) = Uuid::parse_str(key) {
            if ids.find(&id, |p| &all[p as usize].id).is_some() {
                return Some(id);
            }
        }
        names
            .find(key, |p| self.name(p))
            .map(|p| all[(p >> 1) as usize].id)
    }

    fn resolve_id(&self, id: Uuid) -> Option<Uuid> {
        let (ids, _) = self.built.get_or_init(|| self.build());
        let all = self.consumers;
        if ids.find(&id, |p| &all[p as usize].id).is_some() {
            return Some(id);
        }
        self.resolve(&id.to_string())
    }
}

/// A generic item or a span of fast entities, in list order.
enum Next<'i, 'a> {
    Item(&'i Item<'a>),
    Span(Span),
}

/// Merges `items` with `spans` (each placed after the number of items it records).
fn merged<'i, 'a>(items: &'i [Item<'a>], spans: &[(usize, Span)]) -> Vec<Next<'i, 'a>> {
    let mut out = Vec::with_capacity(items.len() + spans.len());
    let mut next_item = 0;
    for (before, span) in spans {
        out.extend(items[next_item..*before].iter().map(Next::Item));
        next_item = *before;
        out.push(Next::Span(*span));
    }
    out.extend(items[next_item..].iter().map(Next::Item));
    out
}

/// True when the list is exactly one span over the whole store `len`: the store can be
/// moved in as it is.
fn whole(items: &[Item<'_>], spans: &[(usize, Span)], len: usize) -> Option<Span> {
    match spans {
        [(_, span)] if items.is_empty() && span.start == 0 && span.len as usize == len => {
            Some(*span)
        }
        _ => None,
    }
}

fn compact_tags(tags: Option<Vec<String>>) -> CompactTags {
    tags.map(|t| Box::new(t.into_iter().map(String::into_boxed_str).collect()))
}

fn uniqueness(entity: &str, field: &str, value: &str) -> String {
    format!(
        "uniqueness violation: '{entity}' entity with {field} set to '{value}' already declared"
    )
}

/// Repeated usernames and custom_ids.
struct ConsumerChecks {
    usernames: Index,
    custom_ids: Index,
}

impl ConsumerChecks {
    fn check(
        &mut self,
        all: &[Consumer],
        i: usize,
        path: impl Fn() -> String,
        errors: &mut ConfigErrors,
    ) {
        let c = &all[i];
        if let Some(name) = c.username.as_deref() {
            let at = |p: u32| all[p as usize].username.as_deref().unwrap_or_default();
            if self.usernames.insert(name, i as u32, false, at).is_some() {
                errors.push(path(), uniqueness("consumers", "username", name));
            }
        }
        if let Some(cid) = c.custom_id.as_deref() {
            let at = |p: u32| all[p as usize].custom_id.as_deref().unwrap_or_default();
            if self.custom_ids.insert(cid, i as u32, false, at).is_some() {
                errors.push(path(), uniqueness("consumers", "custom_id", cid));
            }
        }
    }
}

/// Builds every consumer into `out` (empty on entry).
pub(super) fn consumers(
    items: &[Item<'_>],
    spans: &[(usize, Span)],
    fast: &mut Fast,
    out: &mut Vec<Consumer>,
    errors: &mut ConfigErrors,
) {
    let t = fast.now;
    let store = std::mem::take(&mut fast.consumers);
    let n = store.len() + items.len();
    let mut checks = ConsumerChecks {
        usernames: Index::with_capacity(n),
        custom_ids: Index::with_capacity(n),
    };
    if let Some(span) = whole(items, spans, store.len()).filter(|_| out.is_empty()) {
        *out = store;
        for i in 0..out.len() {
            let path = || format!("consumers[{}]", span.top as usize + i);
            checks.check(out, i, path, errors);
        }
        return;
    }
    out.reserve(n);
    let mut src = store.into_iter();
    for next in merged(items, spans) {
        match next {
            Next::Item(it) => {
                out.push(generic_consumer(it, t, errors));
                checks.check(out, out.len() - 1, || it.path.clone(), errors);
            }
            Next::Span(span) => {
                for j in 0..span.len as usize {
                    out.push(
                        src.next()
                            .expect("invariant: spans cover the store in order"),
                    );
                    let path = || format!("consumers[{}]", span.top as usize + j);
                    checks.check(out, out.len() - 1, path, errors);
                }
            }
        }
    }
}

fn generic_consumer(it: &Item<'_>, t: i64, errors: &mut ConfigErrors) -> Consumer {
    let mut f = Fields {
        obj: it.obj,
        path: &it.path,
        errors,
    };
    f.check_known(&[
        "username",
        "custom_id",
        "tags",
        "created_at",
        "updated_at",
        "plugins",
        "keyauth_credentials",
        "acls",
    ]);
    let username = f.str("username");
    let custom_id = f.str("custom_id");
    if username.is_none() && custom_id.is_none() {
        f.errors.push(
            it.path.clone(),
            "at least one of these fields must be non-empty: 'custom_id', 'username'",
        );
    }
    Consumer {
        id: id(it.obj),
        username: username.map(String::into_boxed_str),
        custom_id: custom_id.map(String::into_boxed_str),
        tags: compact_tags(f.tags()),
        created_at: f.created_at(t),
        updated_at: t,
    }
}

/// Marks a position in [`KeyChecks::lost`] rather than in the built credentials.
const LOST: u32 = 1 << 31;

/// Repeated keys, counting the keys of credentials dropped for an unresolved consumer.
struct KeyChecks {
    index: Index,
    lost: Vec<Box<str>>,
}

impl KeyChecks {
    /// Checks the key at `pos` (in `all`, or in `lost` when flagged [`LOST`]).
    fn check(
        &mut self,
        all: &[KeyauthCredential],
        pos: u32,
        path: impl Fn() -> String,
        errors: &mut ConfigErrors,
    ) {
        let KeyChecks { index, lost } = self;
        let at = |p: u32| -> &str {
            if p & LOST == 0 {
                &all[p as usize].key
            } else {
                &lost[(p & !LOST) as usize]
            }
        };
        let key = at(pos);
        if index.insert(key, pos, false, at).is_some() {
            errors.push(path(), uniqueness("keyauth_credentials", "key", key));
        }
    }

    /// Adds `cred` to `all` when its consumer resolved, else only its key to `lost`, and
    /// checks the key.
    fn add(
        &mut self,
        all: &mut Vec<KeyauthCredential>,
        cred: KeyauthCredential,
        resolved: bool,
        path: impl Fn() -> String,
        errors: &mut ConfigErrors,
    ) {
        let pos = if resolved {
            all.push(cred);
            (all.len() - 1) as u32
        } else {
            self.lost.push(cred.key);
            (self.lost.len() - 1) as u32 | LOST
        };
        self.check(all, pos, path, errors);
    }
}

fn unresolved(key: &str) -> String {
    format!("the foreign key cannot be resolved with '{key}' for an existing 'consumers' entity")
}

/// Resolves, in place, the consumers named by a whole list of top-level entities (`names`,
/// the list `list` starting at index `top`): `set` stores each id, an unresolved name is
/// reported at `list[i].consumer`, `then` runs after each entity (its key check), and the
/// unresolved entities are dropped at the end, as the generic path never adds them.
#[allow(clippy::too_many_arguments)]
fn resolve_in_place<T>(
    all: &mut Vec<T>,
    names: &Names,
    list: &str,
    top: u32,
    consumers: &dyn Lookup,
    set: impl Fn(&mut T, Uuid),
    mut then: impl FnMut(&[T], usize, &mut ConfigErrors),
    errors: &mut ConfigErrors,
) {
    let mut dropped = Vec::new();
    for i in 0..all.len() {
        let name = names.get(i);
        match consumers.resolve(name) {
            Some(id) => set(&mut all[i], id),
            None => {
                let path = format!("{list}[{}].consumer", top as usize + i);
                errors.push(path, unresolved(name));
                dropped.push(i);
            }
        }
        then(all, i, errors);
    }
    if !dropped.is_empty() {
        let mut i = 0;
        let mut next = dropped.into_iter().peekable();
        all.retain(|_| {
            let keep = next.peek() != Some(&i);
            if !keep {
                next.next();
            }
            i += 1;
            keep
        });
    }
}

/// Builds every key-auth credential into `out` (empty on entry).
pub(super) fn keyauth_credentials(
    items: &[Item<'_>],
    spans: &[(usize, Span)],
    fast: &mut Fast,
    consumers: &dyn Lookup,
    out: &mut Vec<KeyauthCredential>,
    errors: &mut ConfigErrors,
) {
    let t = fast.now;
    let nested = std::mem::take(&mut fast.nested_creds);
    let nested_at = std::mem::take(&mut fast.nested_cred_at);
    let flat = std::mem::take(&mut fast.flat_creds);
    let refs = std::mem::take(&mut fast.flat_cred_refs);
    let n = nested.len() + flat.len() + items.len();
    let mut keys = KeyChecks {
        index: Index::with_capacity(n),
        lost: Vec::new(),
    };
    let nested_path = |pos: usize| {
        let (consumer, i) = nested_at[pos];
        format!("consumers[{consumer}].keyauth_credentials[{i}]")
    };
    let whole_nested = whole(items, spans, nested.len())
        .filter(|s| matches!(s.store, Store::NestedCreds) && flat.is_empty() && out.is_empty());
    if whole_nested.is_some() {
        *out = nested;
        for i in 0..out.len() {
            keys.check(out, i as u32, || nested_path(i), errors);
        }
        return;
    }
    let whole_flat = whole(items, spans, flat.len())
        .filter(|s| matches!(s.store, Store::FlatCreds) && nested.is_empty() && out.is_empty());
    if let Some(span) = whole_flat {
        // Every key stays in the store until the end, so the index can point into it.
        let mut index = keys.index;
        *out = flat;
        let check = |all: &[KeyauthCredential], i: usize, errors: &mut ConfigErrors| {
            let key = &*all[i].key;
            if index
                .insert(key, i as u32, false, |p| &all[p as usize].key)
                .is_some()
            {
                let path = format!("keyauth_credentials[{}]", span.top as usize + i);
                errors.push(path, uniqueness("keyauth_credentials", "key", key));
            }
        };
        let set = |c: &mut KeyauthCredential, id: Uuid| c.consumer = id.into();
        resolve_in_place(
            out,
            &refs,
            "keyauth_credentials",
            span.top,
            consumers,
            set,
            check,
            errors,
        );
        return;
    }
    out.reserve(nested.len() + flat.len() + items.len());
    let mut nested = nested.into_iter();
    let mut flat = flat.into_iter().enumerate();
    for next in merged(items, spans) {
        match next {
            Next::Item(it) => {
                let mut f = Fields {
                    obj: it.obj,
                    path: &it.path,
                    errors,
                };
                f.check_known(&["consumer", "key", "ttl", "tags", "created_at"]);
                let consumer = reference(&mut f, "consumer", it.parent, consumers, "consumers");
                let key = f.str("key").unwrap_or_else(random_key);
                let ttl = f.int("ttl", 0, 100_000_000);
                let (tags, created_at) = (f.tags(), f.created_at(t));
                let cred = KeyauthCredential {
                    id: id(it.obj),
                    consumer: consumer.unwrap_or_default().into(),
                    key: key.into_boxed_str(),
                    expires_at: ttl
                        .filter(|s| *s > 0)
                        .and_then(|s| std::num::NonZeroI64::new(t + s)),
                    tags: compact_tags(tags),
                    created_at,
                };
                keys.add(out, cred, consumer.is_some(), || it.path.clone(), errors);
            }
            Next::Span(span) if matches!(span.store, Store::NestedCreds) => {
                for j in 0..span.len as usize {
                    let cred = nested.next().expect("invariant: spans cover the store");
                    let pos = span.start as usize + j;
                    keys.add(out, cred, true, || nested_path(pos), errors);
                }
            }
            Next::Span(span) => {
                for j in 0..span.len as usize {
                    let (pos, mut cred) = flat.next().expect("invariant: spans cover the store");
                    let name = refs.get(pos);
                    let path = || format!("keyauth_credentials[{}]", span.top as usize + j);
                    let consumer = consumers.resolve(name);
                    match consumer {
                        Some(id) => cred.consumer = id.into(),
                        None => errors.push(format!("{}.consumer", path()), unresolved(name)),
                    }
                    keys.add(out, cred, consumer.is_some(), path, errors);
                }
            }
        }
    }
}

/// Builds every ACL into `out` (empty on entry).
pub(super) fn acls(
    items: &[Item<'_>],
    spans: &[(usize, Span)],
    fast: &mut Fast,
    consumers: &dyn Lookup,
    out: &mut Vec<Acl>,
    errors: &mut ConfigErrors,
) {
    let t = fast.now;
    let nested = std::mem::take(&mut fast.nested_acls);
    let flat = std::mem::take(&mut fast.flat_acls);
    let refs = std::mem::take(&mut fast.flat_acl_refs);
    let whole_nested = whole(items, spans, nested.len())
        .filter(|s| matches!(s.store, Store::NestedAcls) && flat.is_empty() && out.is_empty());
    if whole_nested.is_some() {
        *out = nested;
        return;
    }
    let whole_flat = whole(items, spans, flat.len())
        .filter(|s| matches!(s.store, Store::FlatAcls) && nested.is_empty() && out.is_empty());
    if let Some(span) = whole_flat {
        *out = flat;
        let set = |a: &mut Acl, id: Uuid| a.consumer = id.into();
        let nothing = |_: &[Acl], _: usize, _: &mut ConfigErrors| {};
        resolve_in_place(
            out, &refs, "acls", span.top, consumers, set, nothing, errors,
        );
        return;
    }
    out.reserve(nested.len() + flat.len() + items.len());
    let mut nested = nested.into_iter();
    let mut flat = flat.into_iter().enumerate();
    for next in merged(items, spans) {
        match next {
            Next::Item(it) => {
                let mut f = Fields {
                    obj: it.obj,
                    path: &it.path,
                    errors,
                };
                f.check_known(&["consumer", "group", "tags", "created_at"]);
                let consumer = reference(&mut f, "consumer", it.parent, consumers, "consumers");
                let group = f.required_str("group");
                if let Some(consumer) = consumer {
                    out.push(Acl {
                        id: id(it.obj),
                        consumer: consumer.into(),
                        group: group.into(),
                        tags: compact_tags(f.tags()),
                        created_at: f.created_at(t),
                    });
                }
            }
            Next::Span(span) if matches!(span.store, Store::NestedAcls) => {
                out.extend(nested.by_ref().take(span.len as usize));
            }
            Next::Span(span) => {
                for j in 0..span.len as usize {
                    let (pos, mut acl) = flat.next().expect("invariant: spans cover the store");
                    let name = refs.get(pos);
                    match consumers.resolve(name) {
                        Some(id) => {
                            acl.consumer = id.into();
                            out.push(acl);
                        }
                        None => errors.push(
                            format!("acls[{}].consumer", span.top as usize + j),
                            unresolved(name),
                        ),
                    }
                }
            }
        }
    }
}
