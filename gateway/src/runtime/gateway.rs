//! State shared by every thread: settings, the current snapshot, readiness and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::Snapshot;
use crate::net::tls::{CertPair, ClientConfigCache, RootSource};
use crate::settings::Settings;
use crate::upstream::balancer::HealthRegistry;

/// Connection and request counters, in the shape of Kong's `/status` `server` object.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections handled (accepted and not refused by the connection limit).
    pub handled: AtomicU64,
    /// Open client connections.
    pub active: AtomicU64,
    /// Connections idle between requests.
    pub waiting: AtomicU64,
    /// Requests read since start.
    pub total_requests: AtomicU64,
}

/// Process-wide state that outlives snapshots, built once at startup.
pub struct SharedState {
    /// Target health.
    pub health: Arc<HealthRegistry>,
    /// The default certificate.
    pub default_cert: CertPair,
    /// Upstream trust anchors.
    pub roots: RootSource,
    /// Upstream TLS configs.
    pub client_configs: std::sync::Mutex<ClientConfigCache>,
}

impl SharedState {
    /// Compile inputs borrowed from this state.
    pub fn compile_inputs<'a>(
        &'a self,
        settings: &'a Settings,
    ) -> crate::config::compile::CompileShared<'a> {
        crate::config::compile::CompileShared {
            settings,
            health: &self.health,
            default_cert: &self.default_cert,
            roots: &self.roots,
            client_configs: &self.client_configs,
        }
    }
}

/// The process-wide gateway state.
pub struct Gateway {
    /// Settings, fixed for the process lifetime.
    pub settings: Settings,
    snapshot: ArcSwap<Snapshot>,
    draining: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
    /// Counters for `/status`.
    pub counters: Counters,
    /// Target health, kept across reloads.
    pub health: Arc<HealthRegistry>,
    /// The default TLS certificate, fixed for the process lifetime.
    pub default_cert: CertPair,
    /// Trust anchors for upstream TLS.
    pub roots: RootSource,
    /// Upstream TLS configs shared by snapshots.
    pub client_configs: std::sync::Mutex<ClientConfigCache>,
}

impl Gateway {
    /// Wraps the first snapshot.
    pub fn new(settings: Settings, snapshot: Snapshot, shared: SharedState) -> Self {
        Gateway {
            health: shared.health,
            default_cert: shared.default_cert,
            roots: shared.roots,
            client_configs: shared.client_configs,
            settings,
            snapshot: ArcSwap::from_pointee(snapshot),
            draining: AtomicBool::new(false),
            shutdown_tx: watch::channel(false).0,
            counters: Counters::default(),
        }
    }

    /// The current snapshot; a request keeps the one it loaded until it ends.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new snapshot; in-flight requests finish on the old one.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// True once SIGTERM/SIGINT (or `POST /status/ready status=draining`) started a drain.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks the node as draining: `/status/ready` turns 503 but traffic is still served.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Tells workers to stop accepting and close idle connections.
    pub fn begin_shutdown(&self) {
        self.set_draining();
        self.shutdown_tx.send_replace(true);
    }

    /// Compiles a config against this process's shared state.
    pub fn compile(
        &self,
        config: crate::config::Config,
        version: u64,
    ) -> Result<Snapshot, crate::config::ConfigErrors> {
        let shared = crate::config::compile::CompileShared {
            settings: &self.settings,
            health: &self.health,
            default_cert: &self.default_cert,
            roots: &self.roots,
            client_configs: &self.client_configs,
        };
        crate::config::compile::compile(config, &shared, version)
    }

    /// A receiver that turns `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}
