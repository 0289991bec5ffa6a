//! The plugins a process can run: each one's name, Kong priority, schema and constructor.
//!
//! The binary assembles a [`Catalog`] from the bundled plugins and the edge crates it was
//! built with, and hands it to the loader (which validates configs against the schemas) and to
//! the compile step (which builds instances). Nothing below the binary knows which plugins
//! exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::Plugin;
use super::chain::Instance;
use super::quota::Quotas;
use gangway_config::model::{Config, Id, Protocol};
use gangway_config::plugins::not_enabled;
use gangway_config::schema::Schema;
use gangway_config::{ConfigErrors, PluginSchemas};

/// A problem in a plugin's config: the field path under `config` (empty for the whole
/// record) and Kong's message.
pub type ConfigProblem = (String, String);

/// A built plugin, or every problem in its config.
pub type BuildResult = Result<Box<dyn Plugin>, Vec<ConfigProblem>>;

/// What a plugin's constructor gets.
pub struct Build<'a> {
    /// The validated config, defaults filled.
    pub config: &'a Value,
    /// The route the instance is scoped to, if any.
    pub route: Option<Id>,
    /// The service the instance is scoped to, if any.
    pub service: Option<Id>,
    /// The process's counter stores (rate limiting).
    pub quotas: &'a Quotas,
    /// Request bodies up to this many bytes are held in memory (`client_body_buffer_size`);
    /// nginx writes longer ones to a file, which some of Kong's plugins then skip.
    pub client_body_buffer_size: usize,
}

/// nginx's (and Kong's) `client_body_buffer_size`: 8 KiB.
pub const DEFAULT_CLIENT_BODY_BUFFER_SIZE: usize = 8 * 1024;

/// How to build one plugin.
pub struct Spec {
    /// Kong's plugin name.
    pub name: &'static str,
    /// Kong's PRIORITY.
    pub priority: i32,
    /// The config schema (Kong's `schema.lua`), served at `/schemas/plugins/{name}`.
    pub schema: fn() -> Schema,
    /// Builds an instance from its validated config (defaults filled) and scope.
    pub build: fn(&Build<'_>) -> BuildResult,
}

/// The plugins available to a process, in the order they were added (empty by default), and
/// the services their instances share across reloads (the counter stores).
pub struct Catalog {
    specs: Vec<&'static Spec>,
    quotas: Quotas,
    client_body_buffer_size: usize,
    /// Schemas built so far (built on first use, then shared).
    schemas: Mutex<HashMap<&'static str, Arc<Schema>>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new([])
    }
}

impl Catalog {
    /// A catalog of `specs`.
    pub fn new(specs: impl IntoIterator<Item = &'static Spec>) -> Catalog {
        Catalog {
            specs: specs.into_iter().collect(),
            quotas: Quotas::default(),
            client_body_buffer_size: DEFAULT_CLIENT_BODY_BUFFER_SIZE,
            schemas: Mutex::default(),
        }
    }

    /// The counter stores the rate-limiting plugin uses.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Replaces the counter stores (the binary adds Redis and the database).
    pub fn with_quotas(mut self, quotas: Quotas) -> Catalog {
        self.quotas = quotas;
        self
    }

    /// Sets what instances are told of `client_body_buffer_size`.
    pub fn with_client_body_buffer_size(mut self, bytes: usize) -> Catalog {
        self.client_body_buffer_size = bytes;
        self
    }

    /// Adds `specs` (an edge crate's plugins) to the catalog.
    pub fn with(mut self, specs: impl IntoIterator<Item = &'static Spec>) -> Catalog {
        self.specs.extend(specs);
        self
    }

    /// The spec of plugin `name`.
    pub fn find(&self, name: &str) -> Option<&'static Spec> {
        self.specs.iter().copied().find(|s| s.name == name)
    }

    /// Every spec, in the order added.
    pub fn specs(&self) -> impl Iterator<Item = &'static Spec> + '_ {
        self.specs.iter().copied()
    }

    /// Compiles every enabled plugin entity. `enabled` is the `plugins` setting (`bundled` or
    /// names).
    pub fn compile(
        &self,
        config: &Config,
        enabled: &[String],
        errors: &mut ConfigErrors,
    ) -> Vec<Instance> {
        let allowed = |name: &str| enabled.iter().any(|e| e == "bundled" || e == name);
        let mut out = Vec::new();
        // Consumer-only instances differ by their consumer alone, which handlers never see:
        // those with one shared config (a portal's plan) share one handler.
        let mut built: hashbrown::HashMap<(&'static str, *const Value), Arc<dyn Plugin>> =
            hashbrown::HashMap::new();
        for (i, p) in config.plugins.iter().enumerate() {
            let Some(spec) = self.find(&p.name).filter(|s| allowed(s.name)) else {
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
            let shareable = p.consumer.is_some() && p.route.is_none() && p.service.is_none();
            let key = (spec.name, Arc::as_ptr(&p.config));
            if let Some(handler) = built.get(&key).filter(|_| shareable) {
                out.push(Instance {
                    name: spec.name,
                    priority: spec.priority,
                    entity: i,
                    handler: handler.clone(),
                });
                continue;
            }
            let build = Build {
                config: &p.config,
                route: p.route.map(|r| r.id),
                service: p.service.map(|s| s.id),
                quotas: &self.quotas,
                client_body_buffer_size: self.client_body_buffer_size,
            };
            match (spec.build)(&build).map(Arc::<dyn Plugin>::from) {
                Ok(handler) => out.push(Instance {
                    name: spec.name,
                    priority: spec.priority,
                    entity: i,
                    handler: {
                        if shareable {
                            built.insert(key, handler.clone());
                        }
                        handler
                    },
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
}

impl PluginSchemas for Catalog {
    fn schema(&self, name: &str) -> Option<Arc<Schema>> {
        let spec = self.find(name)?;
        let mut built = self.schemas.lock().unwrap_or_else(|e| e.into_inner());
        let schema = built
            .entry(spec.name)
            .or_insert_with(|| Arc::new((spec.schema)()));
        Some(schema.clone())
    }

    fn knows(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}
