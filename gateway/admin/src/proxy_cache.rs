//! The proxy-cache plugin's Admin API (Kong's `kong/plugins/proxy-cache/api.lua`):
//! `DELETE /proxy-cache` empties every instance's cache, `GET`/`DELETE /proxy-cache/{key}`
//! look an entry up in each instance's cache in turn, and
//! `/proxy-cache/{plugin_id}/caches/{key}` in one instance's.

use axum::http::Method;
use axum::response::Response;
use gangway_config::model::Plugin;
use gangway_plugins::proxy_cache_store::{self as store, Entry, Store};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crate::{AdminState, reply};

/// Kong's version of the cached object's layout.
const CACHE_VERSION: u64 = 1;

/// Answers one call; `method` is GET (HEAD) or DELETE, as the path allows.
pub fn answer(
    state: &AdminState,
    method: &Method,
    plugin: Option<&str>,
    key: Option<&str>,
) -> Response {
    let snapshot = state.gateway.snapshot();
    let instances = snapshot
        .config
        .plugins
        .iter()
        .filter(|p| p.name == "proxy-cache");
    let stores: Vec<Arc<Store>> = match plugin {
        Some(id) => match instances.clone().find(|p| p.id.to_string() == id) {
            // A loaded instance's dictionary was declared (or it would not have loaded).
            Some(p) => dictionary_of(p).into_iter().collect(),
            None => return reply::empty(404),
        },
        None => instances.filter_map(dictionary_of).collect(),
    };
    let Some(key) = key else {
        for store in &stores {
            store.flush();
        }
        return reply::empty(204);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let Some((store, entry)) = stores
        .iter()
        .find_map(|s| s.fetch(key, now).map(|entry| (s, entry)))
    else {
        return reply::empty(404);
    };
    if *method == Method::DELETE {
        store.purge(key);
        return reply::empty(204);
    }
    reply::json(200, &cached_object(&entry))
}

/// The instance's memory dictionary (`memory.dictionary_name`, Kong's `kong_db_cache`).
fn dictionary_of(plugin: &Plugin) -> Option<Arc<Store>> {
    let name = plugin.config["memory"]["dictionary_name"]
        .as_str()
        .unwrap_or("kong_db_cache");
    store::dictionary(name)
}

/// The entry as Kong's strategy returns it: status, headers by name (repeated ones as a
/// list), body, body_len, timestamp, ttl and version.
fn cached_object(entry: &Entry) -> Value {
    let mut headers = Map::new();
    let stored = entry
        .content_type
        .iter()
        .map(|ct| ("Content-Type", ct.as_bytes()))
        .chain(
            entry
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice())),
        );
    for (name, value) in stored {
        let value = Value::String(String::from_utf8_lossy(value).into_owned());
        match headers.get_mut(name) {
            Some(Value::Array(values)) => values.push(value),
            Some(one) => *one = Value::Array(vec![one.take(), value]),
            None => {
                headers.insert(name.to_owned(), value);
            }
        }
    }
    json!({
        "status": entry.status,
        "headers": headers,
        "body": String::from_utf8_lossy(&entry.body),
        "body_len": entry.body.len(),
        "timestamp": entry.timestamp,
        "ttl": entry.ttl,
        "version": CACHE_VERSION,
    })
}
