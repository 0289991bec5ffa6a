//! Kong's opentelemetry plugin (edge crate): trace-context propagation in Kong's header
//! formats ([`propagation`]) and OTLP/HTTP protobuf export ([`export`]) of the spans the
//! core records (`gangway_pipeline::trace`). The binary adds [`SPEC`] to its catalog.
//!
//! A sampled trace's spans are copied as plain data into the plugin's queue; its sender
//! thread (`gangway_plugins::log_queue`) encodes, batches and posts them, off the workers.

pub mod export;
mod plugin;
pub mod propagation;
mod schema;

use gangway_pipeline::catalog::Spec;

/// Kong's name.
pub const NAME: &str = "opentelemetry";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 14;

/// The plugin, for the binary's catalog.
pub static SPEC: Spec = Spec {
    name: NAME,
    priority: PRIORITY,
    schema: schema::schema,
    build: plugin::build,
};
