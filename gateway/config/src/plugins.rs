//! What the config layer knows about plugins: which names exist and their config schemas.
//!
//! The plugins themselves live above this crate; whoever loads a config hands the loader a
//! [`PluginSchemas`] (the binary passes its catalog of bundled and edge plugins), so the
//! loader validates and fills each plugin's `config` without knowing any plugin.

use std::sync::Arc;

use serde_json::Value;

use crate::ConfigErrors;
use crate::schema::Schema;

/// The plugins a config may name, with their config schemas.
pub trait PluginSchemas {
    /// The config schema of plugin `name`; `None` when no such plugin is available. Shared:
    /// a config with a hundred thousand instances of one plugin builds its schema once.
    fn schema(&self, name: &str) -> Option<Arc<Schema>>;

    /// True when plugin `name` is available.
    fn knows(&self, name: &str) -> bool;
}

/// Kong's message for a plugin that is not available.
pub fn not_enabled(name: &str) -> String {
    format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property")
}

/// Checks the `ordering` field's shape: `{before|after: {access: [names]}}`, each name a
/// known plugin.
pub fn check_ordering(
    ordering: &Value,
    path: &str,
    plugins: &dyn PluginSchemas,
    errors: &mut ConfigErrors,
) {
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
                            Some(name) if plugins.knows(name) => {}
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

/// For the loader's own tests: a few of Kong's plugin names, each with an empty config
/// record (the bundled plugins' real schemas are tested with the plugins).
#[cfg(test)]
pub(crate) struct TestPlugins;

#[cfg(test)]
impl PluginSchemas for TestPlugins {
    fn schema(&self, name: &str) -> Option<Arc<Schema>> {
        const NAMES: [&str; 4] = ["key-auth", "acl", "request-termination", "correlation-id"];
        let name = NAMES.into_iter().find(|n| *n == name)?;
        Some(Arc::new(Schema::new(
            name,
            crate::schema::Field::record(Vec::new()),
        )))
    }

    fn knows(&self, name: &str) -> bool {
        self.schema(name).is_some()
    }
}
