//! The control runtime: status API, signals, and declarative config reloads.
//!
//! Reloads build a whole new snapshot off the data plane and publish it atomically; a bad file
//! keeps the old snapshot and logs every error with its entity path.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use super::{Gateway, StartError};
use crate::kernel::Kernel;
use gangway_config::settings::{Database, Settings};
use gangway_config::{Config, ConfigErrors, PluginSchemas, declarative};

/// The embedded default declarative config (`config/kong.yml`), used when no
/// `declarative_config` is set.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../../config/kong.yml");

/// Loads the DB-less config, as Kong picks it: the `declarative_config` file, else
/// `declarative_config_string`, else the config last posted to the Admin API's `/config`,
/// else the embedded default.
pub fn load_config(
    settings: &Settings,
    plugins: &dyn PluginSchemas,
) -> Result<Config, ConfigErrors> {
    if let Some(path) = &settings.declarative_config {
        return declarative::load_file(path, plugins);
    }
    if let Some(text) = &settings.declarative_config_string {
        return declarative::load_str(text, plugins);
    }
    let posted = settings.posted_config_path();
    if posted.exists() {
        info!(file = %posted.display(), "loading the config last posted to /config");
        return declarative::load_file(&posted, plugins);
    }
    declarative::load_str(EMBEDDED_CONFIG, plugins)
}

/// Runs the control runtime on the calling thread: binds the Status API, then starts the
/// workers (so `/status/ready` and the embedded config's upstream exist before traffic), and
/// serves until SIGTERM/SIGINT, then drains the workers.
pub fn run(
    gateway: Arc<Gateway>,
    kernel: Arc<Kernel>,
    start_workers: impl FnOnce() -> Result<Vec<JoinHandle<()>>, StartError>,
) -> Result<(), StartError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gangway-control")
        .enable_all()
        .build()?;
    let workers = rt.block_on(async {
        let store = node_store(&gateway)?;
        let node = Arc::new(crate::status::NodeView {
            gateway: gateway.clone(),
            kernel: kernel.clone(),
            store: store.clone(),
        });
        crate::status::serve(&gateway, node)
            .await
            .map_err(StartError::Status)?;
        tokio::spawn(kernel.clone().follow(gateway.clone()));
        serve_admin(&gateway, store, &kernel).await?;
        let workers = start_workers()?;
        follow_database(&gateway);
        if gateway.settings.database == Database::Off
            && gateway.settings.declarative_config.is_some()
            && gateway.settings.config_watch
        {
            tokio::spawn(watch_file(gateway.clone()));
        }
        tokio::spawn(trim_after_connections_close(gateway.clone()));
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    if gateway.settings.database == Database::Off {
                        info!("SIGHUP: reloading declarative config");
                        // Not awaited: a SIGTERM during a long reload drains at once.
                        tokio::spawn(reload_in_background(gateway.clone()));
                    } else {
                        info!("SIGHUP: ignored; the config follows the database");
                    }
                }
                _ = term.recv() => { info!("SIGTERM: draining"); break; }
                _ = int.recv() => { info!("SIGINT: draining"); break; }
                // Kong's `kong quit` and its container images stop with SIGQUIT.
                _ = quit.recv() => { info!("SIGQUIT: draining"); break; }
                // nginx's log reopen, as logrotate sends it.
                _ = usr1.recv() => {
                    info!("SIGUSR1: reopening the log files");
                    crate::telemetry::reopen();
                    if let Some(sink) = gateway.access_log.get() {
                        sink.reopen();
                    }
                    for sink in gateway.service_access_logs() {
                        sink.reopen();
                    }
                }
            }
        }
        Ok::<_, StartError>(workers)
    })?;
    gateway.begin_shutdown();
    for worker in workers {
        if worker.join().is_err() {
            error!("a worker thread panicked");
        }
    }
    kernel.stop();
    if let Some(sink) = gateway.access_log.get() {
        if !sink.flush(Duration::from_secs(5)) {
            error!("access log: lines still queued at exit were lost");
        }
    }
    for sink in gateway.service_access_logs() {
        if !sink.flush(Duration::from_secs(5)) {
            error!(
                "admin, Kong Manager or status access log: lines still queued at exit were lost"
            );
        }
    }
    if !gangway_plugins::file_log::flush(Duration::from_secs(5)) {
        error!("file-log: log lines still queued at exit were lost");
    }
    if !gangway_plugins::log_queue::flush(Duration::from_secs(5)) {
        error!("http-log, opentelemetry: entries still queued at exit were lost");
    }
    info!("gangway stopped");
    Ok(())
}

/// How often [`trim_after_connections_close`] looks at the open-connection count.
const TRIM_CHECK: Duration = Duration::from_secs(1);

/// Connections that must have closed since the last trim before freed memory is handed
/// back.
const TRIM_AFTER_CLOSED: u64 = 256;

/// Hands the memory of closed connections back to the OS once many have closed and the
/// open count is not growing: glibc keeps freed connection state resident (about 3 KiB a
/// connection, 9 MB after 3,000 clients left), and trimming takes the allocator's locks.
async fn trim_after_connections_close(gateway: Arc<Gateway>) {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = &gateway.counters;
    let closed = || {
        counters
            .handled
            .load(Relaxed)
            .saturating_sub(counters.active.load(Relaxed))
    };
    let (mut closed_at_trim, mut open_before) = (closed(), counters.active.load(Relaxed));
    let mut tick = tokio::time::interval(TRIM_CHECK);
    loop {
        tick.tick().await;
        let open = counters.active.load(Relaxed);
        let now_closed = closed();
        if now_closed - closed_at_trim >= TRIM_AFTER_CLOSED && open <= open_before {
            super::release_freed_memory();
            closed_at_trim = now_closed;
        }
        open_before = open;
    }
}

/// With `database = postgres`, loads the config from Postgres and follows its change log in
/// the background.
#[cfg(feature = "store")]
fn follow_database(gateway: &Arc<Gateway>) {
    if gateway.settings.database == Database::Postgres {
        let settings = gateway.settings.clone();
        tokio::spawn(gangway_store::sync::follow(settings, gateway.clone()));
    }
}

#[cfg(not(feature = "store"))]
fn follow_database(_gateway: &Arc<Gateway>) {}

/// The Admin API's store: Postgres when configured (and built), else the snapshot.
#[cfg(feature = "admin")]
fn admin_store(
    gateway: &Arc<Gateway>,
) -> Result<Arc<dyn gangway_config::store::ConfigStore>, StartError> {
    #[cfg(feature = "store")]
    if gateway.settings.database == Database::Postgres {
        let pool = gangway_store::connect::pool(&gateway.settings)
            .map_err(|e| StartError::Admin(e.to_string()))?;
        let replica = match gateway.settings.read_replica() {
            Some(replica) => Some(
                gangway_store::connect::pool(&replica)
                    .map_err(|e| StartError::Admin(format!("pg_ro_*: {e}")))?,
            ),
            None => None,
        };
        let plugins: Arc<dyn gangway_config::PluginSchemas + Send + Sync> =
            gateway.shared.catalog.clone();
        return Ok(Arc::new(gangway_store::dao::PgStore::new(
            pool, replica, plugins,
        )));
    }
    Ok(Arc::new(gangway_admin::memory::MemoryStore::new(
        gateway.clone(),
    )))
}

/// The node's config store (Postgres, or the running config), when this build has an
/// Admin API to serve it; the Status API's `/metrics` asks it whether the database answers.
#[cfg(feature = "admin")]
fn node_store(
    gateway: &Arc<Gateway>,
) -> Result<Option<Arc<dyn gangway_config::store::ConfigStore>>, StartError> {
    admin_store(gateway).map(Some)
}

#[cfg(not(feature = "admin"))]
fn node_store(
    _gateway: &Arc<Gateway>,
) -> Result<Option<Arc<dyn gangway_config::store::ConfigStore>>, StartError> {
    Ok(None)
}

/// Starts the Admin API on `admin_listen`, when this build has it.
#[cfg(feature = "admin")]
async fn serve_admin(
    gateway: &Arc<Gateway>,
    store: Option<Arc<dyn gangway_config::store::ConfigStore>>,
    kernel: &Arc<Kernel>,
) -> Result<(), StartError> {
    if gateway.settings.admin_listen.is_empty() {
        return Ok(());
    }
    let store = match store {
        Some(store) => store,
        None => admin_store(gateway)?,
    };
    let store = Arc::new(gangway_admin::shorthands::EchoShorthands::new(
        store,
        gateway.shared.catalog.clone(),
    ));
    let (for_metrics, kernel) = (gateway.clone(), kernel.clone());
    let state = Arc::new(gangway_admin::AdminState {
        gateway: gateway.clone(),
        store,
        metrics: Some(Arc::new(move |reachable| {
            crate::prometheus::scrape(&for_metrics, &kernel, reachable)
        })),
    });
    // Kong Manager is bound first: once the Admin API accepts, everything it serves (the
    // GUI included) does, which is what a readiness check on the Admin port expects.
    gangway_admin::gui::serve(&gateway.settings, gateway)
        .await
        .map_err(|e| StartError::Admin(format!("Kong Manager: {e}")))?;
    gangway_admin::listen::serve(&gateway.settings.admin_listen, state)
        .await
        .map_err(|e| StartError::Admin(e.to_string()))?;
    Ok(())
}

/// Without the `admin` feature there is no Admin API; a configured listener is ignored with
/// a warning rather than refused, so a build for data planes starts on Kong's defaults.
#[cfg(not(feature = "admin"))]
async fn serve_admin(
    gateway: &Arc<Gateway>,
    _store: Option<Arc<dyn gangway_config::store::ConfigStore>>,
    _kernel: &Arc<Kernel>,
) -> Result<(), StartError> {
    if !gateway.settings.admin_listen.is_empty() {
        warn!("admin_listen is set, but this build has no Admin API (feature \"admin\")");
    }
    Ok(())
}

/// Runs [`reload`] on the blocking pool: a large config takes seconds to parse, and the
/// control runtime must keep answering status checks meanwhile.
async fn reload_in_background(gateway: Arc<Gateway>) {
    let _ = tokio::task::spawn_blocking(move || reload(&gateway)).await;
}

/// Re-reads the declarative config and publishes it, or keeps the old one on error.
pub fn reload(gateway: &Gateway) -> bool {
    let loaded =
        gateway.replace_config(|| load_config(&gateway.settings, gateway.shared.catalog.as_ref()));
    match loaded {
        Ok(snapshot) => {
            super::release_freed_memory();
            info!(config.version = snapshot.version, config.hash = %snapshot.hash, "config reloaded");
            true
        }
        Err(errors) => {
            error!(
                count = errors.0.len(),
                "new config rejected; keeping the current one"
            );
            for e in &errors.0 {
                error!("  {e}");
            }
            false
        }
    }
}

fn file_stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Polls the declarative file's mtime and size once a second: cheap, and works on every
/// filesystem (including bind mounts where inotify misses writes).
async fn watch_file(gateway: Arc<Gateway>) {
    let Some(path) = gateway.settings.declarative_config.clone() else {
        return;
    };
    let mut last = file_stamp(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = file_stamp(&path);
        if now != last && now.is_some() {
            last = now;
            warn!(file = %path.display(), "declarative config changed on disk; reloading");
            reload_in_background(gateway.clone()).await;
        }
    }
}
