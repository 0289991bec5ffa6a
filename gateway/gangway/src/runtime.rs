//! Process lifecycle: settings, the first config load, listeners, worker threads, the control
//! runtime (status API, signals, reloads) and graceful shutdown.

pub mod control;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use gangway_config::ConfigErrors;
use gangway_config::settings::{self, Database, IoBackend, Settings, SettingsError};
use gangway_http::error_page::{ErrorTemplate, ErrorTemplates};
use gangway_net::tls::{
    CertifiedKey, RootSource, ServerTls, client_ssl_certificate, default_certificate,
};
use gangway_pipeline::Catalog;
use gangway_proxy::gateway::{Gateway, SharedState};
use gangway_proxy::upstream::balancer::HealthRegistry;

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
    Tls(#[from] gangway_net::tls::TlsError),
    /// A setting whose value parsed but cannot be used: an `error_template_*` file that is
    /// unreadable or not a template Kong could render, TLS settings that leave nothing to
    /// serve, a `client_ssl_cert` that does not load. The message names the setting.
    #[error("invalid settings: {0}")]
    UnusableSetting(String),
    /// `worker_rlimit_nofile` could not be set.
    #[error("worker_rlimit_nofile = {wanted}: {source}")]
    OpenFileLimit {
        /// The limit asked for.
        wanted: u64,
        /// Why the kernel refused it.
        source: std::io::Error,
    },
    /// A setting this build cannot honour.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The Admin API could not start.
    #[error("admin API: {0}")]
    Admin(String),
    /// The Status API could not start.
    #[error("status API: {0}")]
    Status(gangway_admin::listen::ListenError),
    /// `ebpf = required` and the programs could not be loaded or attached.
    #[error("ebpf = \"required\" but {0}")]
    Ebpf(String),
    /// The log file (`proxy_error_log`) could not be opened.
    #[error("proxy_error_log: {0}")]
    ErrorLog(std::io::Error),
    /// The access log's file could not be opened.
    #[error("proxy_access_log: {0}")]
    AccessLog(std::io::Error),
    /// Any other I/O failure at startup.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Sets the open-file limit `worker_rlimit_nofile` asks for (`auto`: the soft limit up to
/// the hard one), and warns when it is below what `max_connections` needs: each proxied
/// request holds two files, the client's connection and the upstream's.
fn set_open_file_limit(settings: &Settings) -> Result<(), StartError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(StartError::Io(std::io::Error::last_os_error()));
    }
    // An unlimited hard limit is capped by the kernel's fs.nr_open.
    let hard = match limit.rlim_max {
        libc::RLIM_INFINITY => std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1 << 20),
        hard => hard,
    };
    let wanted = settings.worker_rlimit_nofile.unwrap_or(hard);
    if wanted != limit.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max.max(wanted),
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            let source = std::io::Error::last_os_error();
            if settings.worker_rlimit_nofile.is_some() {
                return Err(StartError::OpenFileLimit { wanted, source });
            }
            warn!(error = %source, limit = limit.rlim_cur, "could not raise the open-file limit");
        }
    }
    let mut now = limit;
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) } == 0 {
        let needed = 2 * settings.max_connections as u64 * settings.worker_count() as u64;
        if now.rlim_cur < needed {
            warn!(
                limit = now.rlim_cur,
                needed,
                "the open-file limit is below 2 x max_connections x workers: connections past \
                 it are refused (raise the hard limit, worker_rlimit_nofile, or lower \
                 max_connections)"
            );
        }
    }
    Ok(())
}

/// The operator's error bodies (`error_template_*`), read and checked once, at startup.
fn error_templates(settings: &Settings) -> Result<ErrorTemplates, StartError> {
    let read = |key: &str, path: &Option<PathBuf>| {
        let Some(path) = path else {
            return Ok(None);
        };
        let shown = path.display();
        let text = std::fs::read(path)
            .map_err(|e| StartError::UnusableSetting(format!("{key}: cannot read {shown}: {e}")))?;
        ErrorTemplate::parse(&text)
            .map(Some)
            .map_err(|e| StartError::UnusableSetting(format!("{key}: {shown} {e}")))
    };
    Ok(ErrorTemplates {
        html: read("error_template_html", &settings.error_template_html)?,
        json: read("error_template_json", &settings.error_template_json)?,
        xml: read("error_template_xml", &settings.error_template_xml)?,
        plain: read("error_template_plain", &settings.error_template_plain)?,
    })
}

/// The certificate upstreams get when a service names none: `client_ssl_cert` when
/// `client_ssl` is on (Kong's `proxy_ssl_certificate`).
fn client_ssl(settings: &Settings) -> Result<Option<Arc<CertifiedKey>>, StartError> {
    match (
        settings.client_ssl,
        &settings.client_ssl_cert,
        &settings.client_ssl_cert_key,
    ) {
        (true, Some(cert), Some(key)) => client_ssl_certificate(cert, key)
            .map(Some)
            .map_err(StartError::UnusableSetting),
        _ => Ok(None),
    }
}

/// The downstream TLS policy `settings` ask for; what of it cannot be served is said once,
/// here.
fn server_tls(settings: &Settings) -> Result<ServerTls, StartError> {
    let (tls, warnings) =
        ServerTls::from_settings(settings).map_err(StartError::UnusableSetting)?;
    for warning in warnings {
        warn!("{warning}");
    }
    Ok(tls)
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
        IoBackend::IoUring => gangway_net::probe_io_uring()
            .map(|()| ChosenBackend::IoUring)
            .map_err(StartError::IoUring),
        IoBackend::Auto => match gangway_net::probe_io_uring() {
            Ok(()) => Ok(ChosenBackend::IoUring),
            Err(reason) => {
                warn!(%reason, "io_uring unavailable; falling back to epoll");
                Ok(ChosenBackend::Epoll)
            }
        },
    }
}

pub(crate) use gangway_proxy::gateway::release_freed_memory;

/// The plugins this build runs (the bundled ones, plus those of the edge crates it was built
/// with), with the counter stores `settings` call for: Redis (with the `quota` feature)
/// verifies TLS servers against `lua_ssl_trusted_certificate`.
pub fn catalog_for(settings: &Settings) -> Catalog {
    gangway_plugins::proxy_cache_store::declare(
        settings.mem_cache_size,
        &settings.lua_shared_dicts,
    );
    let catalog = gangway_plugins::catalog();
    #[cfg(feature = "lambda")]
    let catalog = catalog.with([&gangway_lambda::SPEC]);
    #[cfg(feature = "otel")]
    let catalog = catalog.with([&gangway_otel::SPEC]);
    let catalog = catalog.with_client_body_buffer_size(settings.client_body_buffer_size);
    let mut quotas = catalog.quotas().clone();
    quotas.local = Arc::new(
        gangway_pipeline::quota::local::LocalCounters::with_max_keys(
            settings.rate_limiting_local_max_keys,
        ),
    );
    quotas.database = settings.database != Database::Off;
    #[cfg(feature = "store")]
    if quotas.database {
        match gangway_store::quota::ClusterCounters::new(settings) {
            Ok(counters) => quotas.cluster = Some(Arc::new(counters)),
            Err(e) => warn!(error = %e, "rate-limiting: no cluster policy counters"),
        }
    }
    #[cfg(feature = "quota")]
    {
        let files = settings.trusted_certificate_files();
        let roots = RootSource::trusted(settings.trusts_system_roots(), &files).unwrap_or_else(|e| {
            warn!(error = %e, "lua_ssl_trusted_certificate: Redis TLS verifies against the system roots only");
            RootSource::trusted(true, &[])
                .expect("invariant: the system roots alone load without error")
        });
        quotas.redis = Some(Arc::new(gangway_quota::Redis::new(
            trusted_pem(settings),
            roots,
            settings.redis_connections,
            settings.rate_limiting_local_max_keys,
        )));
    }
    catalog.with_quotas(quotas)
}

/// The PEM files of `lua_ssl_trusted_certificate`, concatenated; `None` when it names only
/// `system` (the platform's roots). An unreadable file is logged and skipped.
#[cfg(feature = "quota")]
fn trusted_pem(settings: &Settings) -> Option<Vec<u8>> {
    let mut pem = Vec::new();
    for path in settings.trusted_certificate_files() {
        match std::fs::read(&path) {
            Ok(bytes) => {
                pem.extend_from_slice(&bytes);
                pem.push(b'\n');
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "lua_ssl_trusted_certificate: cannot read")
            }
        }
    }
    (!pem.is_empty()).then_some(pem)
}

/// Validates a declarative file as `start` would load it under `settings` (the shared dicts
/// it declares, for one): the schema checks, then the compile step (route regexes,
/// certificates, targets). Returns every error with its entity path.
pub fn check_config(
    path: &Path,
    settings: &Settings,
) -> Result<gangway_proxy::Snapshot, ConfigErrors> {
    let catalog = catalog_for(settings);
    let config = gangway_config::declarative::load_file(path, &catalog)?;
    gangway_proxy::compile_standalone(config, catalog)
}

/// Runs gangway in the foreground until SIGTERM/SIGINT and the drain that follows.
pub fn start(conf: Option<&Path>) -> Result<(), StartError> {
    gangway_proxy::gateway::fix_allocator_thresholds();
    let (settings, warnings) = settings::load(conf, settings::process_env())?;
    if let Some(id) = settings.node_id {
        gangway_config::node::set_node_id(id);
    }
    crate::telemetry::init(
        settings.log_level,
        settings.log_format,
        settings.log_spans,
        &settings.proxy_error_log,
        &settings.prefix,
    )
    .map_err(StartError::ErrorLog)?;
    crate::prometheus::install();
    for w in warnings {
        warn!("{w}");
    }
    set_open_file_limit(&settings)?;
    let backend = choose_backend(settings.io_backend)?;
    crate::prometheus::set_io_backend(match backend {
        ChosenBackend::IoUring => "io_uring",
        ChosenBackend::Epoll => "epoll",
    });
    let workers = settings.worker_count();
    let catalog = catalog_for(&settings);
    // A database node starts on nothing (version 0: not ready, Kong's 404 everywhere) and
    // loads from Postgres in the background, retrying until it can.
    let (config, version) = match settings.database {
        Database::Off => (control::load_config(&settings, &catalog)?, 1),
        Database::Postgres => {
            if !cfg!(feature = "store") {
                return Err(StartError::Unsupported(
                    "database = postgres, but this build has no Postgres store (feature \"store\")",
                ));
            }
            (gangway_config::Config::default(), 0)
        }
    };
    gangway_http::error_page::use_templates(error_templates(&settings)?);
    let pem_files = settings.trusted_certificate_files();
    let shared = SharedState {
        catalog: Arc::new(catalog),
        health: Arc::new(HealthRegistry::default()),
        default_cert: default_certificate(&settings.ssl_cert, &settings.ssl_cert_key)?,
        server_tls: server_tls(&settings)?,
        client_ssl: client_ssl(&settings)?,
        roots: RootSource::trusted(settings.trusts_system_roots(), &pem_files)?,
        client_configs: std::sync::Mutex::default(),
    };
    let snapshot =
        gangway_proxy::compile::compile(config, &shared.compile_inputs(&settings), version)?;
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
    gangway_proxy::upstream::active::spawn(gateway.clone())?;
    let kernel = crate::kernel::Kernel::start(&gateway)?;
    let settings = &gateway.settings;
    if let Some(sink) = gangway_proxy::access_log::AccessLogSink::start(
        &settings.proxy_access_log,
        &settings.prefix,
    )
    .map_err(StartError::AccessLog)?
    {
        let _ = gateway.access_log.set(sink);
    }
    let for_workers = gateway.clone();
    control::run(gateway, kernel, move || {
        worker::spawn_all(for_workers, backend, listeners)
    })
}
