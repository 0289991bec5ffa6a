//! The route, service and consumer objects of Kong's serialized log entry, as JSON text
//! kept per config ([`RowCache`]): they are the same for every request that logs them, and
//! building them anew (the entity to a JSON tree, its nulls dropped, then text) was about a
//! fifth of a worker's CPU per request under file-log. Consumers' rows live with the
//! identities ([`gangway_pipeline::identity::Identities::consumer_log_row`]), which an Admin
//! API write replaces without a new config.

use std::sync::Arc;

use gangway_config::model::{Consumer, Route, Service};
use gangway_pipeline::row_cache::RowCache;
use serde::Serialize;
use serde_json::Value;

/// The serialized rows of one config's routes and services, filled as requests log them.
#[derive(Default)]
pub struct LogRows {
    routes: RowCache,
    services: RowCache,
}

impl LogRows {
    /// Route `index`'s row.
    pub fn route(&self, index: usize, route: &Route) -> Arc<[u8]> {
        self.routes
            .get_or_make(index as u32, || entity_row(route, true))
    }

    /// Service `index`'s row.
    pub fn service(&self, index: usize, service: &Service) -> Arc<[u8]> {
        self.services
            .get_or_make(index as u32, || entity_row(service, true))
    }
}

/// A consumer's row: its fields without the unset ones.
pub fn consumer_row(consumer: &Consumer) -> Vec<u8> {
    entity_row(consumer, false)
}

/// Kong's row of an entity in a log entry: its fields without the unset ones, and for routes
/// and services the default workspace's id.
fn entity_row(entity: &impl Serialize, with_workspace: bool) -> Vec<u8> {
    let mut value = serde_json::to_value(entity).unwrap_or(Value::Null);
    // Kong copies an entity from its DAO row, where an unset field is absent, not null.
    if let Value::Object(fields) = &mut value {
        fields.retain(|_, v| !v.is_null());
    }
    if let (Value::Object(fields), true) = (&mut value, with_workspace) {
        fields.insert(
            "ws_id".into(),
            Value::String(super::log::DEFAULT_WORKSPACE_ID.into()),
        );
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| b"null".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_row_drops_unset_fields_and_routes_and_services_add_the_workspace() {
        let route = json!({"id": "r1", "name": null, "paths": ["/"]});
        let parsed: Value = serde_json::from_slice(&entity_row(&route, true)).expect("JSON");
        assert_eq!(
            parsed,
            json!({"id": "r1", "paths": ["/"], "ws_id": super::super::log::DEFAULT_WORKSPACE_ID})
        );
        let consumer = json!({"id": "c1", "username": "ann", "custom_id": null});
        let parsed: Value = serde_json::from_slice(&entity_row(&consumer, false)).expect("JSON");
        assert_eq!(parsed, json!({"id": "c1", "username": "ann"}));
    }
}
