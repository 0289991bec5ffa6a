//! The bundled plugins: each one's name, Kong priority and constructor.

use serde_json::Value;

use super::Plugin;
use super::chain::Instance;
use super::schema::Schema;
use crate::config::ConfigErrors;
use crate::config::model::{Config, Protocol};

/// A problem in a plugin's config: the field path under `config` (empty for the whole
/// record) and Kong's message.
pub type ConfigProblem = (String, String);

/// A built plugin, or every problem in its config.
pub type BuildResult = Result<Box<dyn Plugin>, Vec<ConfigProblem>>;

/// How to build one plugin.
pub struct Spec {
    /// Kong's plugin name.
    pub name: &'static str,
    /// Kong's PRIORITY.
    pub priority: i32,
    /// The config schema (Kong's `schema.lua`), served at `/schemas/plugins/{name}`.
    pub schema: fn() -> Schema,
    /// Builds an instance from its validated config (defaults filled).
    pub build: fn(&Value) -> BuildResult,
}

/// Every plugin gangway ships, in Kong's priority order.
pub const BUNDLED: &[Spec] = &[
    Spec {
        name: super::correlation_id::NAME,
        priority: super::correlation_id::PRIORITY,
        schema: super::correlation_id::schema,
        build: super::correlation_id::build,
    },
    Spec {
        name: super::cors::NAME,
        priority: super::cors::PRIORITY,
        schema: super::cors::schema,
        build: super::cors::build,
    },
    Spec {
        name: super::key_auth::NAME,
        priority: super::key_auth::PRIORITY,
        schema: super::key_auth::schema,
        build: super::key_auth::build,
    },
    Spec {
        name: super::ip_restriction::NAME,
        priority: super::ip_restriction::PRIORITY,
        schema: super::ip_restriction::schema,
        build: super::ip_restriction::build,
    },
    Spec {
        name: super::request_size_limiting::NAME,
        priority: super::request_size_limiting::PRIORITY,
        schema: super::request_size_limiting::schema,
        build: super::request_size_limiting::build,
    },
    Spec {
        name: super::acl::NAME,
        priority: super::acl::PRIORITY,
        schema: super::acl::schema,
        build: super::acl::build,
    },
    Spec {
        name: super::request_transformer::NAME,
        priority: super::request_transformer::PRIORITY,
        schema: super::request_transformer::schema,
        build: super::request_transformer::build,
    },
    Spec {
        name: super::response_transformer::NAME,
        priority: super::response_transformer::PRIORITY,
        schema: super::response_transformer::schema,
        build: super::response_transformer::build,
    },
    Spec {
        name: super::proxy_cache::NAME,
        priority: super::proxy_cache::PRIORITY,
        schema: super::proxy_cache::schema,
        build: super::proxy_cache::build,
    },
    Spec {
        name: super::http_log::NAME,
        priority: super::http_log::PRIORITY,
        schema: super::http_log::schema,
        build: super::http_log::build,
    },
    Spec {
        name: super::file_log::NAME,
        priority: super::file_log::PRIORITY,
        schema: super::file_log::schema,
        build: super::file_log::build,
    },
    Spec {
        name: super::request_termination::NAME,
        priority: super::request_termination::PRIORITY,
        schema: super::request_termination::schema,
        build: super::request_termination::build,
    },
];

/// The spec of a bundled plugin.
pub fn find(name: &str) -> Option<&'static Spec> {
    BUNDLED.iter().find(|s| s.name == name)
}

/// Kong's message for a plugin that is not available.
pub fn not_enabled(name: &str) -> String {
    format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property")
}

/// Checks the `ordering` field's shape: `{before|after: {access: [names]}}`.
pub fn check_ordering(ordering: &Value, path: &str, errors: &mut ConfigErrors) {
    let Some(sides) = ordering.as_object() else {
        errors.push(path, "expected a record");
        return;
    };
    for (side, phases) in sides {
        let here = format!("{path}.{side}");
        if side != "before" && side != "after" {
            errors.push(here, "unknown field");
            continue;
        }
        let Some(phases) = phases.as_object() else {
            errors.push(here, "expected a record");
            continue;
        };
        for (phase, names) in phases {
            let here = format!("{here}.{phase}");
            if phase != "access" {
                errors.push(here, "unknown field");
                continue;
            }
            match names.as_array() {
                Some(list) => {
                    for (i, n) in list.iter().enumerate() {
                        match n.as_str() {
                            Some(name) if find(name).is_some() => {}
                            Some(name) => errors.push(format!("{here}[{i}]"), not_enabled(name)),
                            None => errors.push(format!("{here}[{i}]"), "expected a string"),
                        }
                    }
                }
                None => errors.push(here, "expected an array"),
            }
        }
    }
}

/// Compiles every enabled plugin entity. `enabled` is the `plugins` setting (`bundled` or
/// names).
pub fn compile(config: &Config, enabled: &[String], errors: &mut ConfigErrors) -> Vec<Instance> {
    let allowed = |name: &str| enabled.iter().any(|e| e == "bundled" || e == name);
    let mut out = Vec::new();
    for (i, p) in config.plugins.iter().enumerate() {
        let Some(spec) = find(&p.name).filter(|s| allowed(s.name)) else {
            errors.push(format!("plugins[{i}].name"), not_enabled(&p.name));
            continue;
        };
        // As Kong's plugins iterator: `protocols` selects the subsystem. An instance for
        // stream protocols only never runs on HTTP traffic (gangway proxies no streams).
        let http = p.protocols.iter().any(|proto| {
            matches!(
                proto,
                Protocol::Http | Protocol::Https | Protocol::Grpc | Protocol::Grpcs
            )
        });
        if !p.enabled || !http {
            continue;
        }
        match (spec.build)(&p.config) {
            Ok(handler) => out.push(Instance {
                name: spec.name,
                priority: spec.priority,
                entity: i,
                handler,
            }),
            Err(problems) => {
                for (field, message) in problems {
                    let path = if field.is_empty() {
                        format!("plugins[{i}].config")
                    } else {
                        format!("plugins[{i}].config.{field}")
                    };
                    errors.push(path, message);
                }
            }
        }
    }
    out
}
