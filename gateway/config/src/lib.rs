//! gangway's configuration layer: settings, Kong's entities, the schema engine, and the
//! declarative `kong.yml` loader.
//!
//! It owns what a config *is* and whether it is valid: [`settings`] (the TOML file and the
//! `KONG_*`/`GANGWAY_*` variables), the entity [`model`], Kong's [`schema`] engine, and
//! [`declarative`], which turns a `kong.yml` into a validated [`Config`] with every problem
//! named by its entity path. It must not know how a config is served: no router, plugin
//! code, sockets, TLS sessions or runtime. Plugins are reached only through
//! [`plugins::PluginSchemas`], which the caller provides.

pub mod dao;
pub mod declarative;
pub mod error;
pub mod model;
pub mod node;
pub mod plugins;
pub mod route_regex;
pub mod schema;
pub mod settings;
pub mod store;

pub use error::{ConfigError, ConfigErrors};
pub use model::Config;
pub use plugins::PluginSchemas;

/// A UUID in Kong's sense: the 36-character hyphenated form only. The uuid crate also reads
/// 32 bare hex digits, braces and `urn:uuid:`, which Kong takes for keys and names, not ids.
pub fn hyphenated_uuid(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(s).ok().filter(|_| s.len() == 36)
}
