//! The DB-less loader for Kong's declarative `kong.yml` (YAML or JSON).
//!
//! Loading runs in three steps: parse the text, give every entity an id (explicit, a
//! deterministic uuid5 from its endpoint key as Kong does, or random), then read each entity
//! with its Kong defaults, collecting every problem with its entity path instead of stopping at
//! the first. Nested children (`services[].routes[]`, `consumers[].keyauth_credentials[]`, ...)
//! take their parent's id; flat ones name their parent by name or id.

mod certs;
mod entities;
mod fields;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Config, ConfigError, ConfigErrors};

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

/// Loads a declarative file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::from(ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    load_str(&text)
}

/// Loads declarative YAML or JSON text.
pub fn load_str(text: &str) -> Result<Config, ConfigErrors> {
    let value: Value = serde_norway::from_str(text).map_err(|e| {
        ConfigErrors::from(ConfigError::new(
            "",
            format!("failed parsing declarative configuration: {e}"),
        ))
    })?;
    parse_value(value)
}

/// The namespace Kong derives declarative ids from.
fn namespace(entity: &str) -> Uuid {
    let root = Uuid::parse_str("fd02801f-0957-4a15-a55a-c8d9606f30b5")
        .expect("invariant: Kong's namespace is a valid UUID");
    Uuid::new_v5(&root, entity.as_bytes())
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
}

/// Gives every entity object an `id`, recursing into nested children.
fn assign_ids(entity: &str, list: &mut Value, path: &str, errors: &mut ConfigErrors) {
    let Some(items) = list.as_array_mut() else {
        return;
    };
    for (i, v) in items.iter_mut().enumerate() {
        let Some(obj) = v.as_object_mut() else {
            continue;
        };
        let here = format!("{path}[{i}]");
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
            let key = endpoint_key(entity)
                .and_then(|k| obj.get(k))
                .and_then(Value::as_str);
            match key {
                Some(k) => Uuid::new_v5(&namespace(entity), k.as_bytes()),
                None => Uuid::new_v4(),
            }
        });
        obj.insert("id".into(), Value::String(id.to_string()));
        for (child, _) in nested(entity) {
            if let Some(list) = obj.get_mut(*child) {
                assign_ids(child, list, &format!("{here}.{child}"), errors);
            }
        }
    }
}

/// Flattens a collection and its nested children into per-entity lists.
fn flatten<'a>(
    entity: &'static str,
    list: &'a Value,
    path: &str,
    parent: Option<(&'static str, Uuid)>,
    out: &mut HashMap<&'static str, Vec<Item<'a>>>,
    errors: &mut ConfigErrors,
) {
    let Some(items) = list.as_array() else {
        errors.push(path, "expected an array");
        return;
    };
    for (i, v) in items.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let Some(obj) = v.as_object() else {
            errors.push(here, "expected a record");
            continue;
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
                    out,
                    errors,
                );
            }
        }
        out.entry(entity).or_default().push(Item {
            path: here,
            obj,
            parent,
        });
    }
}

/// Kong 1.1/2.1 files wrote regex paths without `~`: anything with characters outside a plain
/// path's alphabet was a regex.
fn migrate_paths(doc: &mut Value) {
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
pub fn parse_value(mut doc: Value) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let Some(top) = doc.as_object() else {
        return Err(ConfigError::new("", "expected a declarative configuration").into());
    };
    match top.get("_format_version") {
        None => errors.push("_format_version", "required field missing"),
        Some(Value::String(v)) if matches!(v.as_str(), "1.1" | "2.1" | "3.0") => {}
        Some(Value::String(v)) => errors.push(
            "_format_version",
            format!("unsupported declarative configuration _format_version '{v}'; expected one of: 1.1, 2.1, 3.0"),
        ),
        Some(_) => errors.push("_format_version", "expected a string"),
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
        migrate_paths(&mut doc);
    }
    if let Some(top) = doc.as_object_mut() {
        for entity in ENTITIES {
            if let Some(list) = top.get_mut(entity) {
                assign_ids(entity, list, entity, &mut errors);
            }
        }
    }
    let mut items: HashMap<&'static str, Vec<Item<'_>>> = HashMap::new();
    if let Some(top) = doc.as_object() {
        for entity in ENTITIES {
            if let Some(list) = top.get(entity) {
                flatten(entity, list, entity, None, &mut items, &mut errors);
            }
        }
    }
    let config = entities::build(&items, &mut errors);
    errors.into_result(config)
}

#[cfg(test)]
mod tests;
