//! Compiling without a running process: `gangway check` and tests build snapshots (and
//! gateways that serve nothing) with default settings, the built-in certificate and the
//! system's trust anchors.

use std::sync::Arc;

use gangway_config::model::Config;
use gangway_config::settings::Settings;
use gangway_config::{ConfigError, ConfigErrors};
use gangway_net::tls::{RootSource, ServerTls, default_certificate};
use gangway_pipeline::Catalog;

use crate::gateway::{Gateway, SharedState};
use crate::snapshot::Snapshot;
use crate::upstream::balancer::HealthRegistry;

/// Compiles `config` with default settings and the plugins of `catalog`.
pub fn compile_standalone(config: Config, catalog: Catalog) -> Result<Snapshot, ConfigErrors> {
    let settings = Settings::default();
    let shared = standalone_state(catalog)?;
    // The snapshot owns the config: no second copy of a million consumers just to check.
    crate::compile::compile(config, &shared.compile_inputs(&settings), 1)
}

/// A gateway on `config` with default settings, serving nothing: for tests of the control
/// paths (reloads, writes) without sockets.
pub fn standalone_gateway(config: Config, catalog: Catalog) -> Result<Gateway, ConfigErrors> {
    let settings = Settings::default();
    let shared = standalone_state(catalog)?;
    let snapshot = crate::compile::compile(config, &shared.compile_inputs(&settings), 1)?;
    Ok(Gateway::new(settings, snapshot, shared))
}

/// Shared state with no running gateway: the built-in default certificate, system roots.
fn standalone_state(catalog: Catalog) -> Result<SharedState, ConfigErrors> {
    let problem =
        |e: &dyn std::fmt::Display| ConfigErrors::from(ConfigError::new("", e.to_string()));
    Ok(SharedState {
        catalog: Arc::new(catalog),
        health: Arc::new(HealthRegistry::default()),
        default_cert: default_certificate(&[], &[]).map_err(|e| problem(&e))?,
        server_tls: ServerTls::default(),
        client_ssl: None,
        roots: RootSource::trusted(false, &[]).map_err(|e| problem(&e))?,
        client_configs: std::sync::Mutex::default(),
    })
}
