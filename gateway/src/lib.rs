//! gangway: a Kong-compatible API gateway.
//!
//! The data plane (`runtime::worker`, `net`, `http`, `proxy`, `upstream`) runs one
//! single-threaded runtime per core; everything else (`config`, `settings`, status) runs on a
//! small control runtime and hands the data plane an immutable [`config::Snapshot`].

pub mod cli;
pub mod config;
pub mod http;
pub mod net;
pub mod plugin;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod upstream;

/// The version reported by `gangway version`, `/` and the `Server`/`Via` headers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
