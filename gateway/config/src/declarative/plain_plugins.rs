//! Plugins read without a JSON tree each: a database's plugin rows and the plugins nested in
//! a `kong.yml` consumer, in the usual shape (a portal's 100,000 per-consumer plan
//! instances), go into [`PlainPlugin`]s and are checked here by the same rules, with the
//! same messages, as the generic code applies to an entity object. One whose fields are
//! anything but the usual (`ordering`, another scope, an unknown, repeated or mistyped
//! field) is handed to the generic code instead.
//!
//! A row's fields besides its columns (`enabled`, `protocols`, `tags`, `ordering`) come as
//! JSON text, and the rows of one plan repeat it: each distinct text is parsed once. The
//! usual shape is decided on that parsed text ([`usual`]) and on a nested plugin's nodes
//! ([`nested`]), with one set of rules for the fields both have ([`usual_field`]).

use compact_str::CompactString;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::checks::{Lookup, utf8_name_problem};
use super::entities::ConfigKey;
use super::node::Node;
use super::shared::{SharedConfigs, SharedNames};
use super::{namespace, uuid_v5_of_parts};
use crate::model::{ForeignKey, PackedStrs, Plugin, Protocol};
use crate::plugins::not_enabled;
use crate::schema::Schema;
use crate::{ConfigErrors, PluginSchemas};

/// The default `protocols` of a plugin.
pub(super) const DEFAULT_PROTOCOLS: [Protocol; 4] = [
    Protocol::Grpc,
    Protocol::Grpcs,
    Protocol::Http,
    Protocol::Https,
];

/// [`DEFAULT_PROTOCOLS`], shared.
pub(super) fn default_protocols() -> Arc<[Protocol]> {
    static SHARED: std::sync::LazyLock<Arc<[Protocol]>> =
        std::sync::LazyLock::new(|| DEFAULT_PROTOCOLS.into());
    SHARED.clone()
}

/// A plugin's fields besides its columns and timestamps, when they hold nothing the generic
/// code would have to report or keep beyond these.
#[derive(Clone)]
pub(super) struct Usual {
    enabled: bool,
    protocols: Option<Vec<Protocol>>,
    tags: Option<Vec<String>>,
}

/// A distinct text of the other fields: parsed, and read as [`Usual`] when it is.
struct Rest {
    value: Map<String, Value>,
    usual: Option<Usual>,
}

/// The distinct texts of plugins' other fields, each parsed once.
#[derive(Default)]
pub(crate) struct Rests {
    by_text: HashMap<Box<str>, u32>,
    parsed: Vec<Rest>,
}

impl Rests {
    /// The parsed `text` (a JSON object), parsed the first time it is seen.
    fn intern(&mut self, text: &str) -> Result<&Rest, serde_json::Error> {
        let at = match self.by_text.get(text) {
            Some(&at) => at,
            None => {
                let value: Map<String, Value> = serde_json::from_str(text)?;
                let usual = usual(&value);
                let at = self.parsed.len() as u32;
                self.parsed.push(Rest { value, usual });
                self.by_text.insert(text.into(), at);
                at
            }
        };
        Ok(&self.parsed[at as usize])
    }
}

/// What the usual-shape rules read of a field's value, in either form the loader holds it.
trait FieldValue: Sized {
    fn is_null(&self) -> bool;
    fn as_bool(&self) -> Option<bool>;
    fn as_text(&self) -> Option<&str>;
    fn items(&self) -> Option<&[Self]>;
}

impl FieldValue for Value {
    fn is_null(&self) -> bool {
        self.is_null()
    }
    fn as_bool(&self) -> Option<bool> {
        self.as_bool()
    }
    fn as_text(&self) -> Option<&str> {
        self.as_str()
    }
    fn items(&self) -> Option<&[Value]> {
        self.as_array().map(Vec::as_slice)
    }
}

impl FieldValue for Node {
    fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_text(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
    fn items(&self) -> Option<&[Node]> {
        match self {
            Node::Seq(list) => Some(list),
            _ => None,
        }
    }
}

/// Whether `value` of `enabled`, `protocols` or `tags` is one the plain path takes as the
/// generic code would (null, a boolean, known protocols, texts); `None` for another field.
fn usual_field<V: FieldValue>(key: &str, value: &V) -> Option<bool> {
    let known_protocol = |p: &V| p.as_text().and_then(Protocol::parse).is_some();
    let usual = match key {
        "enabled" | "protocols" | "tags" if value.is_null() => true,
        "enabled" => value.as_bool().is_some(),
        "protocols" => value
            .items()
            .is_some_and(|list| !list.is_empty() && list.iter().all(known_protocol)),
        "tags" => value.items().is_some_and(|list| {
            list.iter()
                .all(|t| t.as_text().is_some_and(super::fields::valid_tag))
        }),
        _ => return None,
    };
    Some(usual)
}

/// The protocols of a `protocols` value [`usual_field`] took.
fn protocols<V: FieldValue>(value: &V) -> Vec<Protocol> {
    let list = value.items().unwrap_or_default();
    list.iter()
        .filter_map(|p| p.as_text().and_then(Protocol::parse))
        .collect()
}

/// The tags of a `tags` value [`usual_field`] took.
fn tags<V: FieldValue>(value: &V) -> Vec<String> {
    let list = value.items().unwrap_or_default();
    list.iter()
        .filter_map(|t| t.as_text().map(str::to_owned))
        .collect()
}

/// `rest` as [`Usual`], or `None` when the generic code must see it. A row holds every
/// column, so a null is taken for any field.
fn usual(rest: &Map<String, Value>) -> Option<Usual> {
    let mut out = Usual {
        enabled: true,
        protocols: None,
        tags: None,
    };
    for (key, value) in rest {
        if value.is_null() {
            continue;
        }
        if usual_field(key, value) != Some(true) {
            return None;
        }
        match key.as_str() {
            "enabled" => out.enabled = value.as_bool().unwrap_or(true),
            "protocols" => out.protocols = Some(protocols(value)),
            _ => out.tags = Some(tags(value)),
        }
    }
    Some(out)
}

/// A plugin as a database stores it: its columns, its config given apart, and the rest of
/// its fields (`enabled`, `protocols`, `tags`, `ordering`) as a JSON object's text.
pub struct PluginRow<'r> {
    /// `id`.
    pub id: Uuid,
    /// `name`.
    pub name: &'r str,
    /// `instance_name`.
    pub instance_name: Option<&'r str>,
    /// The route's id.
    pub route: Option<Uuid>,
    /// The service's id.
    pub service: Option<Uuid>,
    /// The consumer's id.
    pub consumer: Option<Uuid>,
    /// The other fields but `created_at` and `updated_at`, as a JSON object's text.
    pub rest: &'r str,
    /// `created_at`. (The model takes `updated_at` as the load time, so a row need not
    /// give it.)
    pub created_at: Option<i64>,
}

/// Where a plain plugin was written: its index in the document's top-level `plugins`.
#[derive(Clone, Copy)]
pub(crate) struct Position(pub u32);

/// Where a plain plugin was written.
#[derive(Clone, Copy)]
enum Origin {
    /// In the top-level `plugins`.
    Top(Position),
    /// In a consumer's `plugins` (its index in the file's `consumers`, the plugin's in its
    /// list): the consumer is its nesting parent.
    Nested { consumer: u32, index: u32 },
}

impl Origin {
    /// Appends the path (`plugins[3]`, `consumers[7].plugins[0]`) to `paths`.
    fn push_path(self, paths: &mut PackedStrs) {
        let mut a = itoa::Buffer::new();
        let mut b = itoa::Buffer::new();
        match self {
            Origin::Top(Position(i)) => paths.push_parts(&["plugins[", a.format(i), "]"]),
            Origin::Nested { consumer, index } => paths.push_parts(&[
                "consumers[",
                a.format(consumer),
                "].plugins[",
                b.format(index),
                "]",
            ]),
        }
    }
}

/// A plugin in the usual shape, read without a JSON object of its own. What a plan's
/// instance seldom has is boxed apart: a portal's 100,000 instances stay small.
pub(crate) struct PlainPlugin {
    at: Origin,
    /// How many generic plugins come before it in the document: the generic code builds
    /// those first, so the built list keeps the document's order.
    pub before: u32,
    id: Uuid,
    name: Arc<str>,
    consumer: Option<Uuid>,
    config: Option<u32>,
    enabled: bool,
    rare: Option<Box<Rare>>,
}

/// The fields of a [`PlainPlugin`] that plan instances seldom set.
#[derive(Default)]
struct Rare {
    instance_name: Option<Box<str>>,
    service: Option<Uuid>,
    route: Option<Uuid>,
    protocols: Option<Vec<Protocol>>,
    tags: Option<Vec<String>>,
    created_at: Option<i64>,
}

impl PlainPlugin {
    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn service(&self) -> Option<Uuid> {
        self.rare.as_ref()?.service
    }

    fn route(&self) -> Option<Uuid> {
        self.rare.as_ref()?.route
    }

    fn instance_name(&self) -> Option<&str> {
        self.rare.as_ref()?.instance_name.as_deref()
    }
}

/// A top-level plugin pushed by a [`super::DocumentBuilder`], in push order.
pub(crate) enum TopPlugin {
    /// In the usual shape.
    Plain(PlainPlugin),
    /// Anything else, as a value for the generic code, with its config when given apart.
    Generic(Value, Option<u32>),
}

/// The plugin a fast consumer (its id `consumer_id`, at `consumer` in the file's list) nests
/// at `index`, when it is in the usual shape: every field known, given once and well typed,
/// and no scope but the consumer. `None` leaves `pairs` as they were, for the generic code.
pub(crate) fn nested(
    pairs: &mut Vec<(CompactString, Node)>,
    (consumer, index): (u32, u32),
    consumer_id: Uuid,
    configs: &mut SharedConfigs,
    names: &mut SharedNames,
) -> Option<PlainPlugin> {
    for (i, (key, value)) in pairs.iter().enumerate() {
        let usual = match (key.as_str(), value) {
            ("enabled" | "protocols" | "tags", _) => usual_field(key, value) == Some(true),
            ("name", Node::Str(s)) => !s.is_empty(),
            ("config" | "instance_name", Node::Null) => true,
            ("config", Node::Map(_)) => true,
            ("instance_name", Node::Str(_)) | ("updated_at", _) => true,
            ("id", Node::Str(s)) => Uuid::parse_str(s).is_ok(),
            ("created_at", Node::Null) => true,
            ("created_at", n) => n.as_i64().is_some_and(|t| t >= 0),
            _ => false,
        };
        if !usual || pairs[..i].iter().any(|(seen, _)| seen == key) {
            return None;
        }
    }
    let name = pairs
        .iter()
        .find_map(|(key, value)| match (key.as_str(), value) {
            ("name", Node::Str(s)) => Some(names.get(s)),
            _ => None,
        })?;
    let mut p = PlainPlugin {
        at: Origin::Nested { consumer, index },
        before: 0,
        id: Uuid::nil(),
        name,
        consumer: Some(consumer_id),
        config: None,
        enabled: true,
        rare: None,
    };
    let mut id = None;
    for (key, value) in pairs.drain(..) {
        match (key.as_str(), value) {
            ("config", config @ Node::Map(_)) => p.config = Some(configs.intern_node(config)),
            ("enabled", Node::Bool(b)) => p.enabled = b,
            ("protocols", list @ Node::Seq(_)) => p.rare_mut().protocols = Some(protocols(&list)),
            ("tags", Node::Seq(list)) => {
                let tags = list.into_iter().filter_map(|n| match n {
                    Node::Str(s) => Some(s.into_string()),
                    _ => None,
                });
                p.rare_mut().tags = Some(tags.collect());
            }
            ("instance_name", Node::Str(s)) => p.rare_mut().instance_name = Some(s.as_str().into()),
            ("id", Node::Str(s)) => id = Uuid::parse_str(&s).ok(),
            ("created_at", n) => p.rare_mut().created_at = n.as_i64(),
            _ => {}
        }
    }
    // Kong's id for a plugin without one: from its cache key, as the generic code derives it.
    p.id = id.unwrap_or_else(|| {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let consumer = consumer_id.hyphenated().encode_lower(&mut text);
        let key: [&[u8]; 4] = [
            b"plugins:*:",
            p.name.as_bytes(),
            b":::",
            consumer.as_bytes(),
        ];
        uuid_v5_of_parts(&namespace("plugins"), &key)
    });
    Some(p)
}

impl TopPlugin {
    /// `row`, the `at`th top-level plugin, whose config is `config`.
    pub(crate) fn read(
        row: PluginRow<'_>,
        config: Option<u32>,
        at: Position,
        rests: &mut Rests,
    ) -> Result<TopPlugin, serde_json::Error> {
        let rest = rests.intern(row.rest)?;
        let created_at = row.created_at.filter(|t| *t >= 0);
        let plain = !row.name.is_empty() && created_at == row.created_at;
        if let (Some(usual), true) = (&rest.usual, plain) {
            let rare = Rare {
                instance_name: row.instance_name.map(Into::into),
                service: row.service,
                route: row.route,
                protocols: usual.protocols.clone(),
                tags: usual.tags.clone(),
                created_at,
            };
            let seldom = rare.instance_name.is_some()
                || rare.service.is_some()
                || rare.route.is_some()
                || rare.protocols.is_some()
                || rare.tags.is_some()
                || rare.created_at.is_some();
            return Ok(TopPlugin::Plain(PlainPlugin {
                at: Origin::Top(at),
                before: 0,
                id: row.id,
                name: row.name.into(),
                consumer: row.consumer,
                config,
                enabled: usual.enabled,
                rare: seldom.then(|| Box::new(rare)),
            }));
        }
        let reference = |id: Option<Uuid>| match id {
            Some(id) => serde_json::json!({ "id": id.to_string() }),
            None => Value::Null,
        };
        let mut entity = Map::with_capacity(12);
        entity.insert("id".into(), Value::String(row.id.to_string()));
        entity.insert("name".into(), Value::String(row.name.to_owned()));
        entity.insert(
            "instance_name".into(),
            row.instance_name
                .map_or(Value::Null, |n| n.to_owned().into()),
        );
        entity.insert("route".into(), reference(row.route));
        entity.insert("service".into(), reference(row.service));
        entity.insert("consumer".into(), reference(row.consumer));
        entity.extend(rest.value.clone());
        if let Some(created_at) = row.created_at {
            entity.insert("created_at".into(), created_at.into());
        }
        Ok(TopPlugin::Generic(Value::Object(entity), config))
    }
}

/// What checking plain plugins needs from the rest of the document.
pub(super) struct Context<'a> {
    pub services: &'a dyn Lookup,
    pub routes: &'a dyn Lookup,
    pub consumers: &'a dyn Lookup,
    pub configs: &'a SharedConfigs,
    pub schemas: &'a dyn PluginSchemas,
    /// Filled configs by plugin name and raw config, shared with the generic code.
    pub validated: &'a mut HashMap<(String, ConfigKey), Arc<Value>>,
    /// The load time.
    pub now: i64,
    /// What plain plugins found so far, by shared config and plugin name: its schema and
    /// its filled form (100,000 instances of three plans look each up without building a
    /// key or taking the catalog's lock).
    pub seen: hashbrown::HashMap<u32, Vec<Seen>>,
}

/// A plugin name, its schema and its filled config, under a shared config's index.
pub(super) type Seen = (Arc<str>, Arc<Schema>, Arc<Value>);

/// The id `id` of a `kind` entity, as [`super::checks::reference`] resolves a `{id: ...}`
/// record, reporting Kong's message at `path.field` when there is none.
fn resolve(
    id: Option<Uuid>,
    known: &dyn Lookup,
    kind: &str,
    path: &str,
    field: &str,
    errors: &mut ConfigErrors,
) -> Option<ForeignKey> {
    let id = id?;
    match known.resolve_id(id) {
        Some(found) => Some(ForeignKey::from(found)),
        None => {
            errors.push(
                format!("{path}.{field}"),
                format!(
                    "the foreign key cannot be resolved with '{id}' for an existing '{kind}' entity"
                ),
            );
            None
        }
    }
}

/// `p`'s filled config (`raw`, shared config `shared`): from the configs the generic code
/// validated, else validated now; a valid one is noted for the plain plugins after it.
fn validate(
    p: &PlainPlugin,
    shared: Option<u32>,
    raw: Option<&Value>,
    schema: &Arc<Schema>,
    path: &str,
    cx: &mut Context<'_>,
    errors: &mut ConfigErrors,
) -> Arc<Value> {
    let key = shared.map(|i| (p.name.to_string(), ConfigKey::Shared(i)));
    let (filled, valid) = match key.as_ref().and_then(|k| cx.validated.get(k)) {
        Some(filled) => (filled.clone(), true),
        None => {
            let before = errors.len();
            let filled = Arc::new(schema.validate(raw, &format!("{path}.config"), errors));
            let valid = errors.len() == before;
            if let (Some(key), true) = (key, valid) {
                cx.validated.insert(key, filled.clone());
            }
            (filled, valid)
        }
    };
    if let (Some(i), true) = (shared, valid) {
        let seen = cx.seen.entry(i).or_default();
        seen.push((p.name.clone(), schema.clone(), filled.clone()));
    }
    filled
}

/// Checks and builds `p` into `built` and its path into `origins`; problems go to `errors`.
pub(super) fn build(
    p: &PlainPlugin,
    cx: &mut Context<'_>,
    built: &mut Vec<Plugin>,
    origins: &mut PackedStrs,
    errors: &mut ConfigErrors,
) {
    {
        p.at.push_path(origins);
        let path = origins.get(origins.len() - 1);
        let shared = p.config.filter(|i| !cx.configs.get(*i).is_null());
        let seen = shared.and_then(|i| {
            let found = cx.seen.get(&i)?.iter().find(|(n, ..)| *n == p.name)?;
            Some((found.1.clone(), found.2.clone()))
        });
        let schema = match &seen {
            Some((schema, _)) => Some(schema.clone()),
            None => cx.schemas.schema(&p.name),
        };
        if schema.is_none() {
            errors.push(format!("{path}.name"), not_enabled(&p.name));
        }
        let service = resolve(
            p.service(),
            cx.services,
            "services",
            path,
            "service",
            errors,
        );
        let route = resolve(p.route(), cx.routes, "routes", path, "route", errors);
        let consumer = match p.at {
            Origin::Nested { .. } => p.consumer.map(ForeignKey::from),
            Origin::Top(_) => resolve(
                p.consumer,
                cx.consumers,
                "consumers",
                path,
                "consumer",
                errors,
            ),
        };
        let raw = shared.map(|i| cx.configs.get(i));
        let filled = match &schema {
            Some(schema) => {
                let scopes = [
                    ("consumer", schema.consumer_forbidden, p.consumer),
                    ("route", schema.route_forbidden, p.route()),
                    ("service", schema.service_forbidden, p.service()),
                ];
                for (scope, forbidden, set) in scopes {
                    if forbidden && set.is_some() {
                        errors.push(format!("{path}.{scope}"), "value must be null");
                    }
                }
                match seen {
                    Some((_, filled)) => filled,
                    None => validate(p, shared, raw, schema, path, cx, errors),
                }
            }
            None => Arc::new(raw.cloned().unwrap_or(Value::Null)),
        };
        if let Some(name) = p.instance_name() {
            if let Some(problem) = utf8_name_problem(name) {
                errors.push(format!("{path}.instance_name"), problem);
            }
        }
        let rare = p.rare.as_deref();
        built.push(Plugin {
            id: p.id,
            name: p.name.to_string(),
            instance_name: p.instance_name().map(str::to_owned),
            config: filled,
            service,
            route,
            consumer,
            protocols: match rare.and_then(|r| r.protocols.as_deref()) {
                Some(given) => given.into(),
                None => default_protocols(),
            },
            enabled: p.enabled,
            ordering: None,
            tags: rare.and_then(|r| r.tags.clone()),
            created_at: rare.and_then(|r| r.created_at).unwrap_or(cx.now),
            updated_at: cx.now,
        });
    }
}
