//! Process lifecycle: settings, the first config load, listeners, worker threads, the control
//! runtime (status API, signals, reloads) and graceful shutdown.

pub mod control;
pub mod gateway;
pub mod worker;

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::ConfigErrors;
use crate::settings::{self, IoBackend, SettingsError};

pub use gateway::Gateway;

/// Why `gangway start` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad settings.
    #[error("invalid settings: {0}")]
    Settings(#[from] SettingsError),
    /// The declarative config did not load.
    #[error("invalid declarative config:\n{0}")]
    Config(#[from] ConfigErrors),
    /// io_uring was forced but is unavailable.
    #[error("io_backend = \"io_uring\" but {0}")]
    IoUring(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The default certificate could not be loaded or generated.
    #[error("default certificate: {0}")]
    Tls(#[from] crate::net::tls::TlsError),
    /// Any other I/O failure at startup.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The backend a process runs with, decided once at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenBackend {
    /// io_uring via tokio-uring.
    IoUring,
    /// epoll via tokio.
    Epoll,
}

fn choose_backend(setting: IoBackend) -> Result<ChosenBackend, StartError> {
    match setting {
        IoBackend::Epoll => Ok(ChosenBackend::Epoll),
        IoBackend::IoUring => crate::net::probe_io_uring()
            .map(|()| ChosenBackend::IoUring)
            .map_err(StartError::IoUring),
        IoBackend::Auto => match crate::net::probe_io_uring() {
            Ok(()) => Ok(ChosenBackend::IoUring),
            Err(reason) => {
                warn!(%reason, "io_uring unavailable; falling back to epoll");
                Ok(ChosenBackend::Epoll)
            }
        },
    }
}

/// Hands freed heap pages back to the OS. glibc only trims the top of its heaps by itself:
/// the parse of a big declarative file, or a config replaced by a reload (allocated below
/// the new one), otherwise stays resident. Measured with a million consumers: about 90 MB
/// after each reload.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Validates a declarative file as `start` would load it: the schema checks, then the compile
/// step (route regexes, certificates, targets). Returns every error with its entity path.
pub fn check_config(path: &Path) -> Result<crate::config::Snapshot, ConfigErrors> {
    compile_standalone(crate::config::declarative::load_file(path)?)
}

/// Compiles `config` with default settings and no running gateway (`gangway check`, tests).
pub fn compile_standalone(
    config: crate::config::model::Config,
) -> Result<crate::config::Snapshot, ConfigErrors> {
    let settings = crate::settings::Settings::default();
    let shared = standalone_state()?;
    // The snapshot owns the config: no second copy of a million consumers just to check.
    crate::config::compile::compile(config, &shared.compile_inputs(&settings), 1)
}

/// Shared state with no running gateway: the built-in default certificate, system roots.
fn standalone_state() -> Result<gateway::SharedState, ConfigErrors> {
    Ok(gateway::SharedState {
        health: Arc::new(crate::upstream::balancer::HealthRegistry::default()),
        default_cert: crate::net::tls::default_certificate(&[], &[])
            .map_err(|e| ConfigErrors::from(crate::config::ConfigError::new("", e.to_string())))?,
        roots: crate::net::tls::RootSource::trusted(false, &[])
            .map_err(|e| ConfigErrors::from(crate::config::ConfigError::new("", e.to_string())))?,
        client_configs: std::sync::Mutex::default(),
    })
}

/// A gateway on `config` with default settings, serving nothing: for tests of the control
/// paths (reloads, writes) without sockets.
pub fn standalone_gateway(
    config: crate::config::model::Config,
) -> Result<gateway::Gateway, ConfigErrors> {
    let snapshot = compile_standalone(config)?;
    Ok(gateway::Gateway::new(
        crate::settings::Settings::default(),
        snapshot,
        standalone_state()?,
    ))
}

/// Runs gangway in the foreground until SIGTERM/SIGINT and the drain that follows.
pub fn start(conf: Option<&Path>) -> Result<(), StartError> {
    let (settings, warnings) = settings::load(conf, settings::process_env())?;
    crate::telemetry::init(settings.log_level, settings.log_format);
    for w in warnings {
        warn!("{w}");
    }
    let backend = choose_backend(settings.io_backend)?;
    let workers = settings.worker_count();
    let config = control::load_config(&settings)?;
    let trusted = &settings.lua_ssl_trusted_certificate;
    let pem_files: Vec<std::path::PathBuf> = trusted
        .iter()
        .filter(|t| t.as_str() != "system")
        .map(Into::into)
        .collect();
    let shared = gateway::SharedState {
        health: Arc::new(crate::upstream::balancer::HealthRegistry::default()),
        default_cert: crate::net::tls::default_certificate(
            &settings.ssl_cert,
            &settings.ssl_cert_key,
        )?,
        roots: crate::net::tls::RootSource::trusted(
            trusted.iter().any(|t| t == "system"),
            &pem_files,
        )?,
        client_configs: std::sync::Mutex::default(),
    };
    let snapshot = crate::config::compile::compile(config, &shared.compile_inputs(&settings), 1)?;
    release_freed_memory();
    let gateway = Arc::new(Gateway::new(settings, snapshot, shared));
    let listeners = worker::bind_all(&gateway.settings.proxy_listen, workers)?;
    info!(
        version = crate::VERSION,
        io_backend = ?backend,
        workers,
        config.hash = %gateway.snapshot().hash,
        "gangway starting"
    );
    crate::upstream::active::spawn(gateway.clone())?;
    let for_workers = gateway.clone();
    control::run(gateway, move || {
        worker::spawn_all(for_workers, backend, listeners)
    })
}
