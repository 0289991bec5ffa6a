//! `/schemas/...` (`kong/api/routes/kong.lua`): the schemas Kong's clients render forms from,
//! and validation without storing anything.

use axum::response::Response;
use gangway_config::ConfigErrors;
use gangway_config::dao::DaoError;
use gangway_config::plugins::not_enabled;
use serde_json::{Value, json};

use crate::AdminState;
use crate::reply;

/// `GET /schemas/{name}`: an entity's schema.
pub fn entity(name: &str) -> Response {
    match gangway_config::schema::entities::entity_schema_json(name) {
        Some(schema) => reply::json(200, &schema),
        None => reply::message(404, &format!("No entity named '{name}'")),
    }
}

/// `GET /schemas/plugins/{name}`.
pub fn plugin(state: &AdminState, name: &str) -> Response {
    match state.gateway.shared.catalog.find(name) {
        Some(spec) => reply::json(200, &(spec.schema)().to_kong_json()),
        None => reply::message(404, &format!("No plugin named '{name}'")),
    }
}

/// `GET /plugins/schema/{name}` (deprecated in Kong, still answered): the plugin's `config`
/// record alone.
pub fn plugin_config(state: &AdminState, name: &str) -> Response {
    let Some(spec) = state.gateway.shared.catalog.find(name) else {
        return reply::message(404, &format!("No plugin named '{name}'"));
    };
    let schema = (spec.schema)().to_kong_json();
    let config = schema["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find_map(|f| f.get("config")));
    match config {
        Some(config) => reply::json(200, config),
        None => reply::message(404, &format!("No plugin named '{name}'")),
    }
}

/// `POST /schemas/plugins/validate`: a plugin entity checked as a write would be, without
/// storing it: its name, scope, protocols and config.
pub fn validate_plugin(state: &AdminState, mut body: Value, form: bool) -> Response {
    let mut problems = ConfigErrors::default();
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let name = name.as_str();
    match state.gateway.shared.catalog.find(name) {
        None if name.is_empty() => problems.push("name", "required field missing"),
        None => problems.push("name", not_enabled(name)),
        Some(spec) => {
            let schema = (spec.schema)();
            if form {
                if let Some(config) = body.get_mut("config") {
                    crate::args::coerce(config, &crate::args::Expect::from(&schema.config));
                }
            }
            if let Value::Object(entity) = &body {
                schema.validate_scope(entity, "", &mut problems);
            }
            schema.validate(body.get("config"), "config", &mut problems);
        }
    }
    if problems.is_empty() {
        return reply::json(200, &json!({"message": "schema validation successful"}));
    }
    reply::dao_error(&violation(&problems))
}

/// Kong's schema-violation error for `problems` (their paths relative to the entity).
pub fn violation(problems: &ConfigErrors) -> DaoError {
    DaoError::from_config_errors("", problems)
}

/// References accepted as they are: schema validation does not look entities up.
struct AnyId;

impl gangway_config::declarative::Existing for AnyId {
    fn resolve(&self, _kind: &str, key: &str) -> Option<uuid::Uuid> {
        key.parse().ok()
    }
}

/// `POST /schemas/{entity}/validate`: an entity checked by the rules a write would meet,
/// without storing it or looking its references up.
pub fn validate_entity(state: &AdminState, name: &str, body: Value) -> Response {
    let Some(kind) = gangway_config::dao::kind_named(name) else {
        return reply::message(404, &format!("No entity named '{name}'"));
    };
    let doc = serde_json::json!({ "_format_version": "3.0", kind.name: [body] });
    match gangway_config::declarative::load_fragment(
        doc,
        &AnyId,
        state.gateway.shared.catalog.as_ref(),
    ) {
        Ok(_) => reply::json(200, &json!({"message": "schema validation successful"})),
        Err(problems) => reply::dao_error(&DaoError::from_config_errors(
            &format!("{}[0]", kind.name),
            &problems,
        )),
    }
}
