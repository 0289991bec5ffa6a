//! gangway's Postgres config store (Aurora in production), an edge crate on tokio-postgres.
//!
//! It owns the schema and its migrations ([`migrations`]), connections ([`connect`]), and
//! will own Kong's DAO operations over it and the change log that carries every write to every
//! node. It knows entities only as Kong's JSON and the validated model of `gangway-config`;
//! it must not know the proxy, the Admin API's HTTP, or the runtime.

pub mod connect;
pub mod dao;
pub mod health_notice;
pub mod import;
pub mod migrations;
pub mod quota;
mod snapshot;
pub mod sync;

use gangway_config::settings::Settings;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres could not be reached.
    #[error("cannot reach postgres at {target}: {cause}")]
    Unreachable {
        /// `host:port/database`.
        target: String,
        /// The driver's reason.
        cause: String,
    },
    /// The schema is not bootstrapped.
    #[error("database needs bootstrapping; run 'gangway migrations bootstrap'")]
    NotBootstrapped,
    /// Settings that cannot work (a bad CA file, ...).
    #[error("{0}")]
    Config(String),
    /// A query failed.
    #[error("postgres: {}", explain(.0))]
    Query(#[from] tokio_postgres::Error),
}

impl StoreError {
    /// An unreachable server, named as the operator configured it.
    pub fn unreachable(settings: &Settings, cause: &dyn std::error::Error) -> StoreError {
        StoreError::Unreachable {
            target: format!(
                "{}:{}/{}",
                settings.pg_host, settings.pg_port, settings.pg_database
            ),
            cause: explain(cause),
        }
    }
}

/// An error with its causes: the driver's own message is often just "db error" or "error
/// performing TLS handshake", and the server's reason (or the certificate's fault) is in the
/// source chain.
pub fn explain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
