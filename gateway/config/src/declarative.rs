//! The DB-less loader for Kong's declarative `kong.yml` (YAML or JSON).
//!
//! Loading runs in three steps: parse the text, give every entity an id (explicit, a
//! deterministic uuid5 from its endpoint key as Kong does, or random), then read each entity
//! with its Kong defaults, collecting every problem with its entity path instead of stopping at
//! the first. Nested children (`services[].routes[]`, `consumers[].keyauth_credentials[]`, ...)
//! take their parent's id; flat ones name their parent by name or id.
//!
//! Files with a million consumers are the norm for some users, so the text is read as a
//! stream of libyaml events ([`stream`]) and consumers, key-auth credentials and ACLs are
//! built straight into their model types as each one is parsed ([`fast`]). Everything else,
//! and any entity or document the fast path does not reproduce exactly, goes the generic way
//! through `serde_json::Value`, so results and messages do not depend on the path taken.

mod certs;
mod checks;
mod consumers;
mod document;
mod entities;
mod fast;
mod fields;
mod node;
mod plain_plugins;
mod routes;
mod shared;
mod stream;

pub use checks::Existing;
pub use document::{ConfigRef, DocumentBuilder};
pub use plain_plugins::PluginRow;

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Config, ConfigError, ConfigErrors, PluginSchemas};

/// Entity collections gangway loads.
const ENTITIES: [&str; 11] = [
    "services",
    "routes",
    "consumers",
    "plugins",
    "upstreams",
    "targets",
    "certificates",
    "snis",
    "ca_certificates",
    "keyauth_credentials",
    "acls",
];

/// Collections Kong knows that gangway does not load yet: an explicit error beats a silent
/// drop.
const UNSUPPORTED: [&str; 9] = [
    "vaults",
    "keys",
    "key_sets",
    "filter_chains",
    "basicauth_credentials",
    "hmacauth_credentials",
    "jwt_secrets",
    "oauth2_credentials",
    "consumer_groups",
];

/// The streaming readers, in the order they are tried: each declines what it does not read
/// exactly as the generic loader would, and the generic loader reads what both decline.
const READERS: [stream::Reader; 2] = [stream::Reader::Scanner, stream::Reader::Libyaml];

/// Loads a declarative file.
pub fn load_file(path: &Path, plugins: &dyn PluginSchemas) -> Result<Config, ConfigErrors> {
    let now = now();
    // Streamed from the file: the text of a million consumers is never held whole. Its md5
    // is taken on a second thread meanwhile, from the same open file.
    if let Ok(file) = std::fs::File::open(path) {
        let streamed = std::thread::scope(|scope| {
            // Without a thread to spare (thread limits), the file is hashed here after all.
            let hashing = std::thread::Builder::new()
                .name("gangway-config-md5".into())
                .spawn_scoped(scope, || stream::file_md5(&file));
            let loaded = stream_file(&file, now, plugins)?;
            let md5 = match hashing {
                Ok(hashing) => hashing.join().ok()?.ok()?,
                Err(_) => stream::file_md5(&file).ok()?,
            };
            Some(loaded.map(|mut config| {
                config.source_md5 = Some(md5);
                config
            }))
        });
        if let Some(loaded) = streamed {
            return loaded;
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::from(ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    with_md5(load_generic(&text, now, true, plugins), &text)
}

/// `file` streamed by each reader in turn, from its start; `None` when both decline it
/// (or it cannot be read), for the generic loader.
fn stream_file(
    file: &std::fs::File,
    now: i64,
    plugins: &dyn PluginSchemas,
) -> Option<Result<Config, ConfigErrors>> {
    use std::io::Seek as _;
    for reader in READERS {
        let mut file = file.try_clone().ok()?;
        file.rewind().ok()?;
        let mut fast = fast::Fast::new(now);
        match stream::read(stream::Input::File(file), reader, &mut fast) {
            Ok(top) => return Some(parse_doc(top, fast, plugins, None)),
            Err(stream::Stop::Syntax(message)) => return Some(Err(syntax_error(message))),
            Err(stream::Stop::Unusual) => {}
        }
    }
    None
}

/// The md5 of a declarative text, as 32 hex characters: Kong's configuration hash of it.
pub fn text_md5(text: &str) -> String {
    stream::md5_hex(text.as_bytes())
}

/// Marks a config loaded from `text` with the text's md5.
fn with_md5(loaded: Result<Config, ConfigErrors>, text: &str) -> Result<Config, ConfigErrors> {
    loaded.map(|mut config| {
        config.source_md5 = Some(text_md5(text));
        config
    })
}

/// Loads declarative YAML or JSON text.
pub fn load_str(text: &str, plugins: &dyn PluginSchemas) -> Result<Config, ConfigErrors> {
    load_text(text, now(), true, plugins)
}

/// [`load_str`] at load time `now`; `fast_path` off sends every entity the generic way (to
/// compare the two).
fn load_text(
    text: &str,
    now: i64,
    fast_path: bool,
    plugins: &dyn PluginSchemas,
) -> Result<Config, ConfigErrors> {
    for reader in READERS {
        let mut fast = fast::Fast::new(now);
        fast.generic_only = !fast_path;
        let loaded = match stream::read(stream::Input::Text(text.as_bytes()), reader, &mut fast) {
            Ok(top) => parse_doc(top, fast, plugins, None),
            Err(stream::Stop::Syntax(message)) => Err(syntax_error(message)),
            Err(stream::Stop::Unusual) => continue,
        };
        return with_md5(loaded, text);
    }
    with_md5(load_generic(text, now, fast_path, plugins), text)
}

fn syntax_error(message: impl std::fmt::Display) -> ConfigErrors {
    ConfigError::new(
        "",
        format!("failed parsing declarative configuration: {message}"),
    )
    .into()
}

/// Parses the whole text with serde_norway, for what the streaming reader leaves over.
fn load_generic(
    text: &str,
    now: i64,
    fast_path: bool,
    plugins: &dyn PluginSchemas,
) -> Result<Config, ConfigErrors> {
    let value: Value = serde_norway::from_str(text).map_err(syntax_error)?;
    parse_value_with(value, now, fast_path, plugins, None)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `Uuid::new_v5(namespace, name)`, hashed by the `sha1` crate: it uses the CPU's SHA
/// instructions where there are some, and a load derives one or more ids for each of up to
/// millions of entities.
pub(crate) fn uuid_v5(namespace: &Uuid, name: &[u8]) -> Uuid {
    uuid_v5_of_parts(namespace, &[name])
}

/// [`uuid_v5`] of the name made of `parts` end to end, without building it.
pub(crate) fn uuid_v5_of_parts(namespace: &Uuid, parts: &[&[u8]]) -> Uuid {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(namespace.as_bytes());
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// The namespace Kong derives declarative ids from (cached: one SHA-1 per entity kind, not
/// per entity).
fn namespace(entity: &str) -> Uuid {
    fn derive(entity: &str) -> Uuid {
        let root = Uuid::parse_str("fd02801f-0957-4a15-a55a-c8d9606f30b5")
            .expect("invariant: Kong's namespace is a valid UUID");
        Uuid::new_v5(&root, entity.as_bytes())
    }
    static KNOWN: LazyLock<Vec<(&str, Uuid)>> =
        LazyLock::new(|| ENTITIES.iter().map(|e| (*e, derive(e))).collect());
    KNOWN
        .iter()
        .find(|(e, _)| *e == entity)
        .map_or_else(|| derive(entity), |(_, ns)| *ns)
}

/// The field whose value Kong derives a missing id from.
fn endpoint_key(entity: &str) -> Option<&'static str> {
    match entity {
        "services" | "routes" | "upstreams" | "snis" => Some("name"),
        "consumers" => Some("username"),
        "keyauth_credentials" => Some("key"),
        "plugins" => Some("instance_name"),
        _ => None,
    }
}

/// Children that may nest in each collection, and the field naming the parent.
fn nested(entity: &str) -> &'static [(&'static str, &'static str)] {
    match entity {
        "services" => &[("routes", "service"), ("plugins", "service")],
        "routes" => &[("plugins", "route")],
        "consumers" => &[
            ("plugins", "consumer"),
            ("keyauth_credentials", "consumer"),
            ("acls", "consumer"),
        ],
        "upstreams" => &[("targets", "upstream")],
        "certificates" => &[("snis", "certificate")],
        _ => &[],
    }
}

/// One entity, flattened out of its nesting, with where it was written.
pub(crate) struct Item<'a> {
    /// Entity path such as `services[0].routes[1]`.
    pub path: String,
    /// Its object.
    pub obj: &'a Map<String, Value>,
    /// Id of the parent it was nested in, with the field that names the parent.
    pub parent: Option<(&'static str, Uuid)>,
    /// A plugin's config, when it was read apart from `obj` into the shared configs.
    pub shared_config: Option<u32>,
}

/// Which fast-path store a [`Span`] points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    /// Top-level consumers.
    Consumers,
    /// Credentials nested in consumers.
    NestedCreds,
    /// Top-level credentials.
    FlatCreds,
    /// ACLs nested in consumers.
    NestedAcls,
    /// Top-level ACLs.
    FlatAcls,
}

/// Consecutive fast-path entities of one kind, in list order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    /// The store they are in.
    pub store: Store,
    /// Index of the first in the store.
    pub start: u32,
    /// How many.
    pub len: u32,
    /// Index of the first in its top-level list (for consumers and top-level entities).
    pub top: u32,
}

/// Gives every entity object of a list an `id`, recursing into nested children. `parent`
/// is the field naming the parent and its id, for children nested in it.
fn assign_ids(
    entity: &str,
    list: &mut Value,
    path: &str,
    parent: Option<(&str, Uuid)>,
    errors: &mut ConfigErrors,
) {
    let Some(items) = list.as_array_mut() else {
        return;
    };
    for (i, v) in items.iter_mut().enumerate() {
        assign_id(entity, v, &format!("{path}[{i}]"), parent, errors);
    }
}

/// The fields of Kong's cache key for entities that have one, each with whether it is
/// required.
fn cache_key_fields(entity: &str) -> &'static [(&'static str, bool)] {
    match entity {
        "plugins" => &[
            ("name", true),
            ("route", false),
            ("service", false),
            ("consumer", false),
        ],
        "acls" => &[("consumer", true), ("group", true)],
        "targets" => &[("upstream", true), ("target", true)],
        _ => &[],
    }
}

/// The name Kong derives a missing id from for an entity with a cache key
/// (`plugins:*:key-auth:<route id>::`): strings as given, a nesting parent by id, `""` for an
/// absent optional field; `None` (a random id) when a required one is absent. A reference
/// given as a record adds nothing, as in Kong.
pub(crate) fn cache_key_name(
    entity: &str,
    obj: &Map<String, Value>,
    parent: Option<(&str, Uuid)>,
) -> Option<String> {
    let fields = cache_key_fields(entity);
    if fields.is_empty() {
        return None;
    }
    let mut parts = vec![entity.to_owned(), "*".to_owned()];
    for (field, required) in fields {
        match obj.get(*field) {
            Some(Value::String(s)) => parts.push(s.clone()),
            None => match parent {
                Some((fk, id)) if fk == *field => parts.push(id.to_string()),
                _ if *required => return None,
                _ => parts.push(String::new()),
            },
            Some(_) => {}
        }
    }
    Some(parts.join(":"))
}

/// Gives one entity object (at `here`) an `id`, recursing into nested children.
fn assign_id(
    entity: &str,
    v: &mut Value,
    here: &str,
    parent: Option<(&str, Uuid)>,
    errors: &mut ConfigErrors,
) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(format!("{here}.id"), "expected a valid UUID");
                None
            }
        },
        Some(_) => {
            errors.push(format!("{here}.id"), "expected a string");
            None
        }
        None => None,
    };
    let id = id.unwrap_or_else(|| {
        if let Some(name) = cache_key_name(entity, obj, parent) {
            return uuid_v5(&namespace(entity), name.as_bytes());
        }
        let key = endpoint_key(entity)
            .filter(|_| cache_key_fields(entity).is_empty())
            .and_then(|k| obj.get(k))
            .and_then(Value::as_str);
        match key {
            Some(k) => uuid_v5(&namespace(entity), k.as_bytes()),
            None => Uuid::new_v4(),
        }
    });
    obj.insert("id".into(), Value::String(id.to_string()));
    for (child, fk) in nested(entity) {
        if let Some(list) = obj.get_mut(*child) {
            assign_ids(
                child,
                list,
                &format!("{here}.{child}"),
                Some((fk, id)),
                errors,
            );
        }
    }
}

/// Flattens a collection and its nested children into per-entity lists. `shared_configs`
/// holds, by index, the configs of list elements that were read apart.
fn flatten<'a>(
    entity: &'static str,
    list: &'a Value,
    path: &str,
    parent: Option<(&'static str, Uuid)>,
    shared_configs: &[Option<u32>],
    out: &mut HashMap<&'static str, Vec<Item<'a>>>,
    errors: &mut ConfigErrors,
) {
    let Some(items) = list.as_array() else {
        errors.push(path, "expected an array");
        return;
    };
    for (i, v) in items.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let shared = shared_configs.get(i).copied().flatten();
        flatten_one(entity, v, here, parent, shared, out, errors);
    }
}

/// Flattens one entity (at `here`) and its nested children.
fn flatten_one<'a>(
    entity: &'static str,
    v: &'a Value,
    here: String,
    parent: Option<(&'static str, Uuid)>,
    shared_config: Option<u32>,
    out: &mut HashMap<&'static str, Vec<Item<'a>>>,
    errors: &mut ConfigErrors,
) {
    let Some(obj) = v.as_object() else {
        errors.push(here, "expected a record");
        return;
    };
    let id = fields::id(obj);
    for (child, fk) in nested(entity) {
        if let Some(list) = obj.get(*child) {
            let child_name = ENTITIES
                .iter()
                .find(|e| *e == child)
                .copied()
                .unwrap_or("plugins");
            flatten(
                child_name,
                list,
                &format!("{here}.{child}"),
                Some((fk, id)),
                &[],
                out,
                errors,
            );
        }
    }
    out.entry(entity).or_default().push(Item {
        path: here,
        obj,
        parent,
        shared_config,
    });
}

/// How far each fast-path store has been placed by [`flatten_fast`].
#[derive(Default)]
struct Cursors {
    consumers: u32,
    nested_creds: u32,
    nested_acls: u32,
    nested_plugins: u32,
    flat_creds: u32,
    flat_acls: u32,
}

/// The plugins nested in fast consumers: those for the generic code with their values, and
/// the plain ones, whose place among the generic items is noted as they are reached.
struct NestedPlugins<'a, 'p> {
    read: &'a [(fast::NestedPlugin, Option<Value>)],
    plain: &'p mut [plain_plugins::PlainPlugin],
}

/// Flattens a fast-path list: generic elements as items, runs of fast ones as spans placed
/// among the items of their kind.
fn flatten_fast<'a>(
    entity: &'static str,
    list: &'a fast::List,
    nested: &mut NestedPlugins<'a, '_>,
    cur: &mut Cursors,
    out: &mut HashMap<&'static str, Vec<Item<'a>>>,
    spans: &mut entities::Spans,
    errors: &mut ConfigErrors,
) {
    let mut top = 0u32;
    for run in &list.runs {
        let (count, creds, acls, plugins) = match run {
            fast::Run::Generic(v) => {
                flatten_one(
                    entity,
                    v,
                    format!("{entity}[{top}]"),
                    None,
                    None,
                    out,
                    errors,
                );
                top += 1;
                continue;
            }
            fast::Run::Fast {
                count,
                creds,
                acls,
                plugins,
            } => (*count, *creds, *acls, *plugins),
        };
        let start = cur.nested_plugins as usize;
        for (plugin, value) in &nested.read[start..start + plugins as usize] {
            match (&plugin.form, value) {
                (fast::NestedForm::Json { config, .. }, Some(value)) => {
                    let here = format!("consumers[{}].plugins[{}]", plugin.consumer, plugin.index);
                    let parent = Some(("consumer", plugin.consumer_id));
                    flatten_one("plugins", value, here, parent, *config, out, errors);
                }
                (fast::NestedForm::Plain(i), _) => {
                    nested.plain[*i as usize].before =
                        out.get("plugins").map_or(0, Vec::len) as u32;
                }
                (fast::NestedForm::Json { .. }, None) => {}
            }
        }
        cur.nested_plugins += plugins;
        let mut place = |kind: &'static str, store: Store, start: &mut u32, len: u32, at: u32| {
            if len > 0 {
                let before = out.get(kind).map_or(0, Vec::len);
                let span = Span {
                    store,
                    start: *start,
                    len,
                    top: at,
                };
                spans.entry(kind).or_default().push((before, span));
                *start += len;
            }
        };
        match entity {
            "consumers" => {
                place(entity, Store::Consumers, &mut cur.consumers, count, top);
                let k = "keyauth_credentials";
                place(k, Store::NestedCreds, &mut cur.nested_creds, creds, 0);
                place("acls", Store::NestedAcls, &mut cur.nested_acls, acls, 0);
            }
            "keyauth_credentials" => {
                place(entity, Store::FlatCreds, &mut cur.flat_creds, count, top);
            }
            _ => place(entity, Store::FlatAcls, &mut cur.flat_acls, count, top),
        }
        top += count;
    }
}

/// Kong 1.1/2.1 files wrote regex paths without `~`: anything with characters outside a plain
/// path's alphabet was a regex.
fn migrate_paths(doc: &mut Map<String, Value>) {
    fn visit(routes: &mut Value) {
        for route in routes.as_array_mut().into_iter().flatten() {
            let Some(paths) = route.get_mut("paths").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in paths.iter_mut() {
                if let Some(s) = p.as_str() {
                    let plain = s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/.-_~%".contains(&b));
                    if !plain && !s.starts_with('~') {
                        *p = Value::String(format!("~{s}"));
                    }
                }
            }
        }
    }
    if let Some(routes) = doc.get_mut("routes") {
        visit(routes);
    }
    for service in doc
        .get_mut("services")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(routes) = service.get_mut("routes") {
            visit(routes);
        }
    }
}

/// Validates a parsed declarative document (also the body of a future `POST /config`).
pub fn parse_value(doc: Value, plugins: &dyn PluginSchemas) -> Result<Config, ConfigErrors> {
    parse_value_with(doc, now(), true, plugins, None)
}

/// Validates the entities of `doc` (a declarative document holding only what is being
/// written, as a database store writes one entity) by the same rules as a whole file:
/// references the document cannot resolve are looked up in `existing`. Uniqueness is
/// checked within the document only; the store enforces it across everything it holds.
pub fn load_fragment(
    doc: Value,
    existing: &dyn Existing,
    plugins: &dyn PluginSchemas,
) -> Result<Config, ConfigErrors> {
    parse_value_with(doc, now(), true, plugins, Some(existing))
}

/// [`parse_value`] at load time `now`, with or without the fast path.
fn parse_value_with(
    doc: Value,
    now: i64,
    fast_path: bool,
    plugins: &dyn PluginSchemas,
    existing: Option<&dyn Existing>,
) -> Result<Config, ConfigErrors> {
    let Value::Object(mut top) = doc else {
        return Err(ConfigError::new("", "expected a declarative configuration").into());
    };
    let mut fast = fast::Fast::new(now);
    fast.generic_only = !fast_path;
    for kind in fast::KINDS {
        if let Some(v @ Value::Array(_)) = top.get_mut(kind) {
            // The key stays (as null) so the top-level key order is kept.
            if let Value::Array(list) = std::mem::take(v) {
                fast.seen(kind);
                for (i, element) in list.into_iter().enumerate() {
                    fast.push(kind, i, node::Node::from_value(element));
                }
            }
        }
    }
    parse_doc(top, fast, plugins, existing)
}

/// Validates a document whose big lists went to `fast` (those keys are absent or null in
/// `top`).
fn parse_doc(
    mut top: Map<String, Value>,
    mut fast: fast::Fast,
    plugins: &dyn PluginSchemas,
    existing: Option<&dyn Existing>,
) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    match top.get("_format_version") {
        None => errors.push("_format_version", "required field missing"),
        Some(Value::String(v)) if matches!(v.as_str(), "1.1" | "2.1" | "3.0") => {}
        Some(Value::String(v)) => errors.push(
            "_format_version",
            format!("unsupported declarative configuration _format_version '{v}'; expected one of: 1.1, 2.1, 3.0"),
        ),
        Some(_) => errors.push("_format_version", "expected a string"),
    }
    // `_transform` turns Kong's write-time transformations on or off (basic-auth password
    // hashing, for one). No entity gangway loads has one, so a well-typed value is all we need.
    let kinds = [
        (
            "_transform",
            Value::is_boolean as fn(&Value) -> bool,
            "expected a boolean",
        ),
        ("_comment", Value::is_string, "expected a string"),
        ("_ignore", Value::is_array, "expected an array"),
    ];
    for (key, ok, message) in kinds {
        if top.get(key).is_some_and(|v| !ok(v)) {
            errors.push(key, message);
        }
    }
    for key in top.keys() {
        let k = key.as_str();
        if UNSUPPORTED.contains(&k) {
            errors.push(
                k,
                format!("'{k}' entities are not supported by gangway yet"),
            );
        } else if !ENTITIES.contains(&k)
            && !matches!(
                k,
                "_format_version" | "_transform" | "_comment" | "_ignore" | "_workspace"
            )
        {
            errors.push(k, "unknown field");
        }
    }
    if matches!(
        top.get("_format_version").and_then(Value::as_str),
        Some("1.1" | "2.1")
    ) {
        migrate_paths(&mut top);
    }
    let mut lists = std::mem::take(&mut fast.lists);
    let configs = std::mem::take(&mut fast.configs);
    // Top-level plugins a DocumentBuilder was given, each with its place among them.
    let mut generic_plugins = Vec::new();
    let mut top_plain = Vec::new();
    for (i, plugin) in std::mem::take(&mut fast.top_plugins)
        .into_iter()
        .enumerate()
    {
        match plugin {
            plain_plugins::TopPlugin::Plain(p) => top_plain.push((i, p)),
            plain_plugins::TopPlugin::Generic(mut value, config) => {
                let here = format!("plugins[{i}]");
                assign_id("plugins", &mut value, &here, None, &mut errors);
                generic_plugins.push((i, here, value, config));
            }
        }
    }
    let mut plain = std::mem::take(&mut fast.plain_plugins);
    let json = std::mem::take(&mut fast.nested_plugin_json);
    let nested_plugins: Vec<(fast::NestedPlugin, Option<Value>)> =
        std::mem::take(&mut fast.nested_plugins)
            .into_iter()
            .map(|plugin| {
                let fast::NestedForm::Json { json: at, .. } = &plugin.form else {
                    return (plugin, None);
                };
                let mut value = serde_json::from_str(&json[at.clone()])
                    .expect("invariant: the JSON was written from a value");
                let here = format!("consumers[{}].plugins[{}]", plugin.consumer, plugin.index);
                let parent = Some(("consumer", plugin.consumer_id));
                assign_id("plugins", &mut value, &here, parent, &mut errors);
                (plugin, Some(value))
            })
            .collect();
    drop(json);
    for entity in ENTITIES {
        if let Some(list) = fast::list_mut(&mut lists, entity) {
            let mut index = 0;
            for run in &mut list.runs {
                match run {
                    fast::Run::Generic(v) => {
                        assign_id(entity, v, &format!("{entity}[{index}]"), None, &mut errors);
                        index += 1;
                    }
                    fast::Run::Fast { count, .. } => index += *count as usize,
                }
            }
        } else if let Some(list) = top.get_mut(entity) {
            assign_ids(entity, list, entity, None, &mut errors);
        }
    }
    let mut items: HashMap<&'static str, Vec<Item<'_>>> = HashMap::new();
    let mut spans = entities::Spans::new();
    let mut cursors = Cursors::default();
    for entity in ENTITIES {
        if let Some(list) = fast::list(&lists, entity) {
            flatten_fast(
                entity,
                list,
                &mut NestedPlugins {
                    read: &nested_plugins,
                    plain: &mut plain,
                },
                &mut cursors,
                &mut items,
                &mut spans,
                &mut errors,
            );
        } else if let Some(list) = top.get(entity) {
            flatten(entity, list, entity, None, &[], &mut items, &mut errors);
        }
    }
    let mut top_plain = top_plain.into_iter().peekable();
    let generic_before =
        |items: &HashMap<&str, Vec<Item<'_>>>| items.get("plugins").map_or(0, Vec::len) as u32;
    for (at, here, value, config) in &generic_plugins {
        while let Some((_, mut p)) = top_plain.next_if(|(i, _)| i < at) {
            p.before = generic_before(&items);
            plain.push(p);
        }
        let here = here.clone();
        flatten_one(
            "plugins",
            value,
            here,
            None,
            *config,
            &mut items,
            &mut errors,
        );
    }
    for (_, mut p) in top_plain {
        p.before = generic_before(&items);
        plain.push(p);
    }
    fast.plain_plugins = plain;
    let config = entities::build(
        &items,
        &spans,
        fast,
        &configs,
        plugins,
        existing,
        &mut errors,
    );
    errors.into_result(config)
}

#[cfg(test)]
mod tests;
