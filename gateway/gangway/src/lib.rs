//! gangway, the binary: the command line, the process runtime (worker threads, the control
//! runtime, reloads and graceful shutdown), the Status API and logging.
//!
//! This is where the layers meet: it builds the plugin catalog (bundled plugins plus the
//! edge crates this build has), loads settings and config through `gangway-config`, compiles
//! them with `gangway-proxy`, and runs one `gangway-proxy` worker per core. Nothing below it
//! knows about threads, signals or which plugins exist.

pub mod cli;
#[cfg(feature = "store")]
pub mod database;
pub mod kernel;
pub mod prometheus;
pub mod runtime;
mod status;
mod telemetry;

/// The version reported by `gangway version`, `/` and the `Server`/`Via` headers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
