//! The route and service objects of Kong's serialized log entry, as JSON text kept per
//! config: they are the same for every request a route serves, and building them anew (the
//! entity to a JSON tree, its nulls dropped, then text) was about a fifth of a worker's CPU
//! per request under file-log.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use gangway_config::model::{Route, Service};
use serde_json::Value;

/// Rows kept per kind at most: beyond that, a row is built for its request and dropped.
const MAX_ROWS: usize = 10_000;

/// The serialized rows of one config's routes and services, filled as requests log them.
#[derive(Default)]
pub struct LogRows {
    routes: RwLock<HashMap<usize, Arc<[u8]>>>,
    services: RwLock<HashMap<usize, Arc<[u8]>>>,
}

impl LogRows {
    /// Route `index`'s row.
    pub fn route(&self, index: usize, route: &Route) -> Arc<[u8]> {
        row(&self.routes, index, || serde_json::to_value(route))
    }

    /// Service `index`'s row.
    pub fn service(&self, index: usize, service: &Service) -> Arc<[u8]> {
        row(&self.services, index, || serde_json::to_value(service))
    }
}

fn row(
    rows: &RwLock<HashMap<usize, Arc<[u8]>>>,
    index: usize,
    entity: impl FnOnce() -> serde_json::Result<Value>,
) -> Arc<[u8]> {
    if let Some(row) = rows
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&index)
    {
        return row.clone();
    }
    let row: Arc<[u8]> = entity_row(entity).into();
    let mut rows = rows.write().unwrap_or_else(PoisonError::into_inner);
    if rows.len() < MAX_ROWS {
        rows.insert(index, row.clone());
    }
    row
}

/// Kong's row of an entity in a log entry: its fields without the unset ones, and the
/// default workspace's id.
fn entity_row(entity: impl FnOnce() -> serde_json::Result<Value>) -> Vec<u8> {
    let mut value = super::log::without_nulls(entity().unwrap_or(Value::Null));
    if let Value::Object(fields) = &mut value {
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
    fn a_row_drops_unset_fields_adds_the_workspace_and_is_kept() {
        let rows = LogRows::default();
        let route = json!({"id": "r1", "name": null, "paths": ["/"]});
        let first = row(&rows.routes, 3, || Ok(route));
        let parsed: Value = serde_json::from_slice(&first).expect("JSON");
        assert_eq!(
            parsed,
            json!({"id": "r1", "paths": ["/"], "ws_id": super::super::log::DEFAULT_WORKSPACE_ID})
        );
        // The same index is answered from the cache, not rebuilt from what is passed.
        let again = row(&rows.routes, 3, || Ok(json!({"id": "other"})));
        assert!(Arc::ptr_eq(&first, &again));
        // Services are kept apart from routes.
        let service = row(&rows.services, 3, || Ok(json!({"id": "s1"})));
        assert!(!Arc::ptr_eq(&first, &service));
    }
}
