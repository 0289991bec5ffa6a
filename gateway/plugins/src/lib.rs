//! The plugins gangway ships, one file each, with Kong's names, priorities, config schemas
//! and defaults: key-auth, acl, cors, correlation-id, ip-restriction, request-size-limiting,
//! request-termination, request-transformer, response-transformer, proxy-cache, rate-limiting,
//! prometheus, file-log and http-log. [`catalog`] hands them to the binary.
//!
//! A plugin sees a request only through the pipeline's contexts and answers with a
//! [`gangway_pipeline::Flow`]; it never reaches into the proxy, the runtime or a socket of a
//! client connection. Plugins that ship data elsewhere (file-log, http-log) do it from
//! threads of their own, fed by the log phase.

mod acl;
mod correlation_id;
mod cors;
pub mod file_log;
pub mod http_log;
mod ip_restriction;
mod key_auth;
pub mod log_queue;
mod lua_number;
pub mod prometheus;
mod proxy_cache;
pub mod rate_limiting;
pub mod request_body;
mod request_size_limiting;
pub mod request_tables;
mod request_termination;
mod request_transformer;
mod response_transformer;
mod template;
mod transform_ops;

use gangway_pipeline::{Catalog, Spec};

/// Every plugin gangway ships, in Kong's priority order.
pub const BUNDLED: &[Spec] = &[
    Spec {
        name: correlation_id::NAME,
        priority: correlation_id::PRIORITY,
        schema: correlation_id::schema,
        build: |b| correlation_id::build(b.config),
    },
    Spec {
        name: cors::NAME,
        priority: cors::PRIORITY,
        schema: cors::schema,
        build: |b| cors::build(b.config),
    },
    Spec {
        name: key_auth::NAME,
        priority: key_auth::PRIORITY,
        schema: key_auth::schema,
        build: |b| key_auth::build(b.config),
    },
    Spec {
        name: ip_restriction::NAME,
        priority: ip_restriction::PRIORITY,
        schema: ip_restriction::schema,
        build: |b| ip_restriction::build(b.config),
    },
    Spec {
        name: request_size_limiting::NAME,
        priority: request_size_limiting::PRIORITY,
        schema: request_size_limiting::schema,
        build: |b| request_size_limiting::build(b.config),
    },
    Spec {
        name: acl::NAME,
        priority: acl::PRIORITY,
        schema: acl::schema,
        build: |b| acl::build(b.config),
    },
    Spec {
        name: rate_limiting::NAME,
        priority: rate_limiting::PRIORITY,
        schema: rate_limiting::schema,
        build: rate_limiting::build,
    },
    Spec {
        name: request_transformer::NAME,
        priority: request_transformer::PRIORITY,
        schema: request_transformer::schema,
        build: |b| request_transformer::build(b.config),
    },
    Spec {
        name: response_transformer::NAME,
        priority: response_transformer::PRIORITY,
        schema: response_transformer::schema,
        build: |b| response_transformer::build(b.config),
    },
    Spec {
        name: proxy_cache::NAME,
        priority: proxy_cache::PRIORITY,
        schema: proxy_cache::schema,
        build: |b| proxy_cache::build(b.config),
    },
    Spec {
        name: prometheus::NAME,
        priority: prometheus::PRIORITY,
        schema: prometheus::schema,
        build: |b| prometheus::build(b.config),
    },
    Spec {
        name: http_log::NAME,
        priority: http_log::PRIORITY,
        schema: http_log::schema,
        build: |b| http_log::build(b.config),
    },
    Spec {
        name: file_log::NAME,
        priority: file_log::PRIORITY,
        schema: file_log::schema,
        build: |b| file_log::build(b.config),
    },
    Spec {
        name: request_termination::NAME,
        priority: request_termination::PRIORITY,
        schema: request_termination::schema,
        build: |b| request_termination::build(b.config),
    },
];

/// The proxy-cache plugin's memory dictionaries, for its Admin API (purge and lookup).
pub use proxy_cache::store as proxy_cache_store;

/// The proxy-cache memory dictionaries (Kong's shared dicts): name, bytes held, capacity.
pub fn shared_dicts() -> Vec<(String, u64, u64)> {
    proxy_cache::store::usage()
}

/// A catalog of the bundled plugins.
pub fn catalog() -> Catalog {
    Catalog::new(BUNDLED)
}

#[cfg(test)]
mod tests;
