//! The node endpoints: `GET /` (`kong/api/routes/kong.lua`), `/status`, `/endpoints` and
//! `/plugins/enabled`.

use std::collections::BTreeSet;

use axum::response::Response;
use gangway_config::settings::Database;
use gangway_proxy::node_status::status_body;
use serde_json::{Map, json};

use crate::AdminState;
use crate::reply;

pub use gangway_config::node::KONG_VERSION;

/// `GET /`.
pub fn root(state: &AdminState) -> Response {
    let snapshot = state.gateway.snapshot();
    let settings = &state.gateway.settings;
    let mut available = Map::new();
    for spec in state.gateway.shared.catalog.specs() {
        if plugin_enabled(&settings.plugins, spec.name) {
            available.insert(
                spec.name.to_owned(),
                json!({"version": KONG_VERSION, "priority": spec.priority}),
            );
        }
    }
    let in_cluster: BTreeSet<&str> = snapshot
        .config
        .plugins
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let mut configuration = settings.kong_configuration_json();
    configuration["log_level"] = json!(settings.log_level.as_str());
    let pid = std::process::id();
    let body = json!({
        "tagline": "Welcome to kong",
        "version": KONG_VERSION,
        "gangway_version": env!("CARGO_PKG_VERSION"),
        "edition": "community",
        "hostname": gangway_config::node::hostname(),
        "node_id": gangway_config::node::node_id(),
        "timers": {"running": 0, "pending": 0},
        "plugins": {
            "available_on_server": available,
            "enabled_in_cluster": in_cluster,
        },
        "configuration": configuration,
        "pids": {"master": pid, "workers": [pid]},
    });
    reply::json(200, &body)
}

/// True when the `plugins` setting (`bundled`, names, or `off`) enables `name`.
fn plugin_enabled(setting: &[String], name: &str) -> bool {
    setting.iter().any(|e| e == "bundled" || e == name)
}

/// `GET /status[?unit=]`: the Status API's body; with a database, `database.reachable`
/// stands where DB-less mode has `configuration_hash`.
pub async fn status(state: &AdminState, unit: Option<&str>) -> Response {
    let config = match state.gateway.settings.database {
        Database::Off => ("configuration_hash", json!(state.gateway.snapshot().hash)),
        Database::Postgres => (
            "database",
            json!({"reachable": state.store_reachable().await}),
        ),
    };
    match status_body(
        &state.gateway.counters,
        state.gateway.shared.catalog.quotas(),
        unit.unwrap_or("m"),
        config,
    ) {
        Ok(body) => reply::json(200, &body),
        Err(message) => reply::message(400, &message),
    }
}

/// `GET /metrics`: the same exposition as the Status API's.
pub async fn metrics(state: &AdminState) -> Response {
    let Some(render) = &state.metrics else {
        return reply::message(404, "Not found");
    };
    match render(state.store_reachable().await) {
        Some(text) => axum::response::IntoResponse::into_response((
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )),
        None => reply::message(404, "Not found"),
    }
}

/// `GET /endpoints`.
pub fn endpoints() -> Response {
    reply::json(200, &json!({ "data": crate::paths::all() }))
}

/// `GET /plugins/enabled`: the plugins the `plugins` setting loads.
pub fn plugins_enabled(state: &AdminState) -> Response {
    let settings = &state.gateway.settings;
    let names: Vec<&str> = state
        .gateway
        .shared
        .catalog
        .specs()
        .map(|s| s.name)
        .filter(|name| plugin_enabled(&settings.plugins, name))
        .collect();
    reply::json(200, &json!({ "enabled_plugins": names }))
}
