//! `POST /config?flatten_errors=1`: the problems of an invalid declarative config grouped by
//! entity, as `kong/db/errors.lua` `declarative_config_flattened` reports them. Nested
//! entities (a service's routes) are reported on their own, with the parent's id as their
//! foreign key, and problems deeper in an entity (`config.minute`) are dotted fields of it.

use gangway_config::ConfigErrors;
use serde_json::{Map, Value, json};

/// Collections whose elements are entities, at the top level or nested in a parent.
const ENTITY_LISTS: [&str; 11] = [
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

/// Kong's `entity_type`: the collection name made singular.
fn singular(list: &str) -> &str {
    list.strip_suffix('s').unwrap_or(list)
}

/// One error's place: the entity (a path of `(list, index)` steps) and what is left.
struct Located {
    entity: Vec<(String, usize)>,
    field: Vec<String>,
}

/// Splits `services[0].routes[1].paths[0]` into the entity `services[0].routes[1]` and the
/// field `paths.1` (Kong numbers array elements from 1).
fn locate(path: &str) -> Option<Located> {
    let mut entity = Vec::new();
    let mut field = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = match part.find('[') {
            Some(open) => (&part[..open], &part[open..]),
            None => (part, ""),
        };
        let positions: Vec<usize> = indexes
            .split(['[', ']'])
            .filter_map(|i| i.parse().ok())
            .collect();
        if field.is_empty() && ENTITY_LISTS.contains(&name) && positions.len() == 1 {
            entity.push((name.to_owned(), positions[0]));
            continue;
        }
        field.push(name.to_owned());
        field.extend(positions.iter().map(|i| (i + 1).to_string()));
    }
    (!entity.is_empty()).then_some(Located { entity, field })
}

/// The input object at an entity path, with its parent's id if it has one.
fn find<'v>(input: &'v Value, entity: &[(String, usize)]) -> Option<(&'v Value, Option<String>)> {
    let mut here = input;
    let mut parent_id = None;
    for (i, (list, index)) in entity.iter().enumerate() {
        if i > 0 {
            parent_id = here["id"].as_str().map(str::to_owned);
        }
        here = here.get(list)?.get(index)?;
    }
    Some((here, parent_id))
}

/// The parent's foreign key field in a nested entity (`service` for a service's routes).
fn parent_field(parent_list: &str) -> String {
    singular(parent_list).to_owned()
}

/// One entry per entity with problems, in the order the problems were found.
pub fn flatten(errors: &ConfigErrors, input: &Value) -> Vec<Value> {
    let mut order: Vec<Vec<(String, usize)>> = Vec::new();
    let mut problems: Vec<Vec<Value>> = Vec::new();
    for e in &errors.0 {
        let Some(located) = locate(&e.path) else {
            continue;
        };
        let problem = if located.field.is_empty() {
            json!({"type": "entity", "message": e.message})
        } else {
            json!({"type": "field", "field": located.field.join("."), "message": e.message})
        };
        match order.iter().position(|p| *p == located.entity) {
            Some(i) => problems[i].push(problem),
            None => {
                order.push(located.entity);
                problems.push(vec![problem]);
            }
        }
    }
    order
        .iter()
        .zip(problems)
        .filter_map(|(path, errors)| {
            let (object, parent_id) = find(input, path)?;
            let mut entity = object.as_object().cloned().unwrap_or_default();
            for list in ENTITY_LISTS {
                if entity.get(list).is_some_and(Value::is_array) {
                    entity.remove(list);
                }
            }
            if let (Some(id), Some(parent)) = (parent_id, path.iter().rev().nth(1)) {
                entity
                    .entry(parent_field(&parent.0))
                    .or_insert(json!({ "id": id }));
            }
            let (list, _) = path.last()?;
            Some(entry(singular(list), entity, errors))
        })
        .collect()
}

fn entry(entity_type: &str, entity: Map<String, Value>, errors: Vec<Value>) -> Value {
    let name = entity
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let id = entity
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| uuid::Uuid::parse_str(id).is_ok());
    let tags = entity
        .get("tags")
        .filter(|t| t.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
    json!({
        "entity_type": entity_type,
        "entity_name": name,
        "entity_id": id,
        "entity_tags": tags,
        "entity": entity,
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use gangway_config::ConfigError;

    use super::*;

    #[test]
    fn nested_entities_are_hoisted_with_their_parents_key() {
        let input = json!({
            "_format_version": "3.0",
            "services": [{
                "id": "3b4c1f8e-5a44-4b0f-9c3e-1f2d3c4b5a69",
                "name": "s",
                "url": "http://x",
                "routes": [{"name": "r", "protocols": ["nope"]}],
                "tags": ["t"]
            }]
        });
        let errors = ConfigErrors(vec![
            ConfigError::new(
                "services[0].routes[0].protocols[0]",
                "expected one of: http",
            ),
            ConfigError::new("services[0].routes[0]", "must set one of 'paths'"),
            ConfigError::new("services[0].host", "must not have a port"),
            ConfigError::new("_format_version", "not flattened"),
        ]);
        let flat = flatten(&errors, &input);
        assert_eq!(flat.len(), 2, "{flat:#?}");
        assert_eq!(flat[0]["entity_type"], "route");
        assert_eq!(flat[0]["entity_name"], "r");
        assert_eq!(
            flat[0]["entity"]["service"],
            json!({"id": "3b4c1f8e-5a44-4b0f-9c3e-1f2d3c4b5a69"})
        );
        assert_eq!(
            flat[0]["errors"],
            json!([
                {"type": "field", "field": "protocols.1", "message": "expected one of: http"},
                {"type": "entity", "message": "must set one of 'paths'"}
            ])
        );
        assert_eq!(flat[1]["entity_type"], "service");
        assert_eq!(flat[1]["entity_tags"], json!(["t"]));
        assert!(
            flat[1]["entity"].get("routes").is_none(),
            "children are hoisted"
        );
    }
}
