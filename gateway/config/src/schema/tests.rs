//! Unit tests: every Kong message, default filling, checks and the rendered schema.

mod checks;
mod render;
mod validate;

use serde_json::Value;

use super::{Field, Schema};
use crate::ConfigErrors;

/// The config path the tests validate at.
const AT: &str = "plugins[0].config";

/// A schema with `config` holding `fields`.
fn schema(fields: Vec<(&'static str, Field)>) -> Schema {
    Schema::new("test", Field::record(fields))
}

/// Validates `config` at [`AT`]; returns the filled config and `path: message` lines.
fn run(schema: &Schema, config: Option<&Value>) -> (Value, Vec<String>) {
    let mut errors = ConfigErrors::default();
    let filled = schema.validate(config, AT, &mut errors);
    let lines = errors.0.iter().map(ToString::to_string).collect();
    (filled, lines)
}

/// The `path: message` lines for `config`.
fn errors_of(schema: &Schema, config: Value) -> Vec<String> {
    run(schema, Some(&config)).1
}

/// A key-auth-like schema, as Kong's `kong/plugins/key-auth/schema.lua` declares it.
fn key_auth() -> Schema {
    let flag = |default: bool| Field::boolean().required().default(default.into());
    Schema::new(
        "key-auth",
        Field::record(vec![
            (
                "key_names",
                Field::array(Field::string())
                    .required()
                    .default(serde_json::json!(["apikey"])),
            ),
            ("hide_credentials", flag(false)),
            ("anonymous", Field::string()),
            ("key_in_header", flag(true)),
            ("key_in_query", flag(true)),
            ("key_in_body", flag(false)),
            ("run_on_preflight", flag(true)),
            ("realm", Field::string().optional()),
        ]),
    )
    .no_consumer()
}
