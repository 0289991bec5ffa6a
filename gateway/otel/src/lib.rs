//! Kong's opentelemetry plugin (edge crate): trace-context propagation in Kong's header
//! formats ([`propagation`]) and OTLP/HTTP protobuf export ([`export`]) of the spans the
//! core records (`gangway_pipeline::trace`). The binary adds [`SPEC`] to its catalog.
//!
//! Spans are encoded on the worker only for sampled traces, then batched and posted by the
//! plugin queue's sender thread (`gangway_plugins::log_queue`), off the workers.

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
