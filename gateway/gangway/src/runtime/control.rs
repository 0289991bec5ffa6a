//! The control runtime: status API, signals, and declarative config reloads.
//!
//! Reloads build a whole new snapshot off the data plane and publish it atomically; a bad file
//! keeps the old snapshot and logs every error with its entity path.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use super::{Gateway, StartError};
use gangway_config::settings::Settings;
use gangway_config::{Config, ConfigErrors, PluginSchemas, declarative};

/// The embedded default declarative config (`config/kong.yml`), used when no
/// `declarative_config` is set.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../../config/kong.yml");

/// Loads the declarative config named by the settings, or the embedded default.
pub fn load_config(
    settings: &Settings,
    plugins: &dyn PluginSchemas,
) -> Result<Config, ConfigErrors> {
    if let Some(path) = &settings.declarative_config {
        declarative::load_file(path, plugins)
    } else {
        declarative::load_str(EMBEDDED_CONFIG, plugins)
    }
}

/// Runs the control runtime on the calling thread: binds the Status API, then starts the
/// workers (so `/status/ready` and the embedded config's upstream exist before traffic), and
/// serves until SIGTERM/SIGINT, then drains the workers.
pub fn run(
    gateway: Arc<Gateway>,
    start_workers: impl FnOnce() -> Result<Vec<JoinHandle<()>>, StartError>,
) -> Result<(), StartError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gangway-control")
        .enable_all()
        .build()?;
    let workers = rt.block_on(async {
        crate::status::serve(&gateway.settings.status_listen, gateway.clone()).await?;
        let workers = start_workers()?;
        let version = Arc::new(AtomicU64::new(1));
        if gateway.settings.declarative_config.is_some() {
            tokio::spawn(watch_file(gateway.clone(), version.clone()));
        }
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    info!("SIGHUP: reloading declarative config");
                    reload_in_background(&gateway, &version).await;
                }
                _ = term.recv() => { info!("SIGTERM: draining"); break; }
                _ = int.recv() => { info!("SIGINT: draining"); break; }
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
    if !gangway_plugins::file_log::flush(Duration::from_secs(5)) {
        error!("file-log: log lines still queued at exit were lost");
    }
    if !gangway_plugins::http_log::flush(Duration::from_secs(5)) {
        error!("http-log: entries still queued at exit were lost");
    }
    info!("gangway stopped");
    Ok(())
}

/// Runs [`reload`] on the blocking pool: a large config takes seconds to parse, and the
/// control runtime must keep answering status checks meanwhile.
async fn reload_in_background(gateway: &Arc<Gateway>, version: &Arc<AtomicU64>) {
    let (gateway, version) = (gateway.clone(), version.clone());
    let _ = tokio::task::spawn_blocking(move || reload(&gateway, &version)).await;
}

/// Re-reads the declarative config and publishes it, or keeps the old one on error.
pub fn reload(gateway: &Gateway, version: &AtomicU64) -> bool {
    // SIGHUP and the file watcher can fire together.
    let _one_at_a_time = gateway
        .config_writes
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let next = version.load(Ordering::Relaxed) + 1;
    let compiled = load_config(&gateway.settings, &gateway.catalog)
        .and_then(|config| gateway.compile(config, next));
    match compiled {
        Ok(snapshot) => {
            let hash = snapshot.hash.clone();
            gateway.publish(snapshot);
            super::release_freed_memory();
            version.store(next, Ordering::Relaxed);
            info!(config.version = next, config.hash = %hash, "config reloaded");
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
async fn watch_file(gateway: Arc<Gateway>, version: Arc<AtomicU64>) {
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
            reload_in_background(&gateway, &version).await;
        }
    }
}
