//! State shared by every thread: settings, the current snapshot, readiness and counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use tokio::sync::watch;

use gangway_config::settings::Settings;
use gangway_config::{Config, ConfigErrors};
use gangway_net::tls::{CertPair, CertifiedKey, ClientConfigCache, RootSource, ServerTls};
use gangway_pipeline::Catalog;
use gangway_pipeline::identity::Identities;

use crate::compile::CompileShared;
use crate::snapshot::Snapshot;
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
    /// Requests read since start.
    pub total_requests: AtomicU64,
    /// Open client connections per worker thread (empty until [`Gateway::new`] sizes it).
    pub worker_active: Box<[AtomicU64]>,
    /// Each worker's connections in nginx's reading and writing states, on a cache line of
    /// its own (the worker writes them twice per request; empty until [`Gateway::new`]).
    pub worker_states: Box<[CachePadded<WorkerStates>]>,
    /// Each worker thread's Linux thread id, 0 until it starts (its CPU time is read from
    /// `/proc` at scrape: the worker's busy time, at no cost to it).
    pub worker_tid: Box<[std::sync::atomic::AtomicI32]>,
    /// Config replacements published (reloads, `POST /config`, database changes).
    pub reloads: AtomicU64,
    /// Config replacements refused (a bad file or document; the old config stays).
    pub reload_failures: AtomicU64,
}

/// One worker's connections in nginx's busy states. Only that worker writes them (a load
/// and a store, no locked instruction); `/status` and `/metrics` read them.
#[derive(Debug, Default)]
pub struct WorkerStates {
    /// Connections whose request head has started to arrive but is not complete.
    pub reading: AtomicU64,
    /// Connections with a request being served, from its full head to its log phase.
    pub writing: AtomicU64,
}

/// nginx's open-connection states (`stub_status`): every open connection is reading a
/// request head, writing (serving a request) or waiting (idle, before its first request or
/// between two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenStates {
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

impl Counters {
    /// The open connections by state, as `/status` and `/metrics` report them. The counts
    /// are read apart, so reading and writing are capped to keep their sum within active.
    pub fn open_states(&self) -> OpenStates {
        let active = self.active.load(Ordering::Relaxed);
        let sum = |pick: fn(&WorkerStates) -> &AtomicU64| -> u64 {
            self.worker_states
                .iter()
                .map(|w| pick(w).load(Ordering::Relaxed))
                .sum()
        };
        let reading = sum(|w| &w.reading).min(active);
        let writing = sum(|w| &w.writing).min(active - reading);
        OpenStates {
            active,
            reading,
            writing,
            waiting: active - reading - writing,
        }
    }
}

/// Process-wide state that outlives snapshots, built once at startup.
pub struct SharedState {
    /// The plugins this process can run.
    pub catalog: Arc<Catalog>,
    /// Target health.
    pub health: Arc<HealthRegistry>,
    /// The default certificate.
    pub default_cert: CertPair,
    /// The TLS versions, ciphers and resumption the proxy serves.
    pub server_tls: ServerTls,
    /// The certificate upstreams get when a service names none (`client_ssl`).
    pub client_ssl: Option<Arc<CertifiedKey>>,
    /// Upstream trust anchors.
    pub roots: RootSource,
    /// Upstream TLS configs.
    pub client_configs: std::sync::Mutex<ClientConfigCache>,
}

impl SharedState {
    /// Compile inputs borrowed from this state.
    pub fn compile_inputs<'a>(&'a self, settings: &'a Settings) -> CompileShared<'a> {
        CompileShared {
            settings,
            catalog: &self.catalog,
            health: &self.health,
            default_cert: &self.default_cert,
            server_tls: &self.server_tls,
            client_ssl: self.client_ssl.as_ref(),
            roots: &self.roots,
            client_configs: &self.client_configs,
            previous: None,
        }
    }
}

/// The process-wide gateway state.
pub struct Gateway {
    /// Settings, fixed for the process lifetime.
    pub settings: Settings,
    snapshot: ArcSwap<Snapshot>,
    published: watch::Sender<u64>,
    published_at: std::sync::Mutex<std::time::Instant>,
    draining: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
    /// Counters for `/status`.
    pub counters: Counters,
    /// The accept-time connection policy check (live counts per source, refusals).
    pub accept_check: gangway_net::conn_policy::AcceptCheck,
    /// The access log's writer, when `proxy_access_log` is not `off` (set once at start).
    pub access_log: std::sync::OnceLock<crate::access_log::AccessLogSink>,
    /// The access log writers of the Admin API, Kong Manager and the Status API (those not
    /// `off`), kept as each server starts, to be reopened on SIGUSR1 and flushed at exit.
    service_access_logs: std::sync::Mutex<Vec<Arc<crate::access_log::AccessLogSink>>>,
    /// What every compile uses besides the config, kept across reloads: the plugin catalog
    /// (the loader validates against its schemas), target health, the TLS material.
    pub shared: SharedState,
    /// Held while a new snapshot is being made (a reload, an identity write): one at a time,
    /// so no change is lost to a concurrent one.
    pub config_writes: std::sync::Mutex<()>,
}

impl Gateway {
    /// Wraps the first snapshot.
    pub fn new(settings: Settings, snapshot: Snapshot, shared: SharedState) -> Self {
        let workers = settings.worker_count();
        Gateway {
            shared,
            config_writes: std::sync::Mutex::new(()),
            settings,
            published: watch::channel(snapshot.version).0,
            snapshot: ArcSwap::from_pointee(snapshot),
            draining: AtomicBool::new(false),
            shutdown_tx: watch::channel(false).0,
            counters: Counters {
                worker_active: (0..workers).map(|_| AtomicU64::new(0)).collect(),
                worker_states: (0..workers).map(|_| CachePadded::default()).collect(),
                worker_tid: (0..workers)
                    .map(|_| std::sync::atomic::AtomicI32::new(0))
                    .collect(),
                ..Counters::default()
            },
            published_at: std::sync::Mutex::new(std::time::Instant::now()),
            accept_check: Default::default(),
            access_log: std::sync::OnceLock::new(),
            service_access_logs: std::sync::Mutex::default(),
        }
    }

    /// The current snapshot; a request keeps the one it loaded until it ends.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new snapshot; in-flight requests finish on the old one.
    pub fn publish(&self, snapshot: Snapshot) {
        let version = snapshot.version;
        self.snapshot.store(Arc::new(snapshot));
        *self.published_at.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        self.published.send_replace(version);
    }

    /// How long the current snapshot has been published.
    pub fn config_age(&self) -> std::time::Duration {
        self.published_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Counts a config replacement's outcome.
    fn count_reload<T, E>(&self, outcome: Result<T, E>) -> Result<T, E> {
        let counter = match outcome {
            Ok(_) => &self.counters.reloads,
            Err(_) => &self.counters.reload_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// A receiver that sees the version of each snapshot published from now on (what keeps
    /// state outside the snapshot, such as the kernel's IP guard, in step with it).
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Applies one write to consumers, keys or ACL groups (see [`Identities::with_credential`]
    /// and friends) and publishes it at once. The new snapshot shares the current one's
    /// routes, services and plugin chains: nothing is recompiled. A refused write publishes
    /// nothing.
    pub fn write_identities<E>(
        &self,
        write: impl FnOnce(&Identities) -> Result<Identities, E>,
    ) -> Result<(), E> {
        let _one_at_a_time = self.config_writes.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot();
        let next = write(&current.identities)?;
        self.publish(current.with_identities(next));
        Ok(())
    }

    /// Keeps a server's access log writer (see `service_access_logs`).
    pub fn keep_service_access_log(&self, sink: Arc<crate::access_log::AccessLogSink>) {
        self.service_access_logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sink);
    }

    /// The access log writers of the servers beside the proxy, as kept so far.
    pub fn service_access_logs(&self) -> Vec<Arc<crate::access_log::AccessLogSink>> {
        self.service_access_logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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
    pub fn compile(&self, config: Config, version: u64) -> Result<Snapshot, ConfigErrors> {
        crate::compile::compile(config, &self.compile_shared(), version)
    }

    fn compile_shared(&self) -> CompileShared<'_> {
        CompileShared {
            previous: Some(self.snapshot().compiled.clone()),
            ..self.shared.compile_inputs(&self.settings)
        }
    }

    /// Loads a config with `load` and publishes it as the next version, one replacement at
    /// a time (a reload, `POST /config`): the load runs under the lock, so replacements land
    /// in the order they were asked for. A config that does not load or compile publishes
    /// nothing. Returns the published snapshot.
    pub fn replace_config(
        &self,
        load: impl FnOnce() -> Result<Config, ConfigErrors>,
    ) -> Result<Arc<Snapshot>, ConfigErrors> {
        let _one_at_a_time = self.config_writes.lock().unwrap_or_else(|p| p.into_inner());
        let next = self.snapshot().version + 1;
        let snapshot = self.count_reload(load().and_then(|config| self.compile(config, next)))?;
        self.publish(snapshot);
        Ok(self.snapshot())
    }

    /// Like [`Self::replace_config`], but keeps the current consumers, keys and ACL groups
    /// (a database node changes those by delta): `load`'s config brings only routes,
    /// services, upstreams, certificates and plugins.
    pub fn replace_keeping_identities(
        &self,
        load: impl FnOnce(&Identities) -> Result<Config, ConfigErrors>,
    ) -> Result<Arc<Snapshot>, ConfigErrors> {
        let _one_at_a_time = self.config_writes.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot();
        let shared = self.compile_shared();
        let snapshot = self.count_reload(load(&current.identities).and_then(|config| {
            crate::compile::compile_keeping_identities(
                config,
                current.identities.clone(),
                &shared,
                current.version + 1,
            )
        }))?;
        self.publish(snapshot);
        Ok(self.snapshot())
    }

    /// A receiver that turns `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

/// Blocks at least this large get their own mapping (glibc's `M_MMAP_THRESHOLD`).
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Free memory at the top of a heap beyond this goes back to the OS as soon as it is freed
/// (glibc's `M_TRIM_THRESHOLD`).
const TRIM_THRESHOLD: libc::c_int = 2 << 20;

/// Fixes glibc's mmap and trim thresholds, unless the operator set malloc tunables
/// (`GLIBC_TUNABLES`). Left alone, glibc raises both to the size of the largest mapped block
/// freed so far (up to 32 and 64 MiB), and a thread's heap then keeps that much free memory
/// at its top: `malloc_trim` returns free blocks inside a heap but never a thread heap's
/// top. A burst of connections frees such blocks (io_uring's table of operations in flight
/// grows with the burst). Measured with io_uring, rounds of 3,000 concurrent clients through
/// an upstream that closes each connection: RSS after the clients left crept from 15 to
/// 27 MB over 20 rounds; with fixed thresholds it stays flat.
pub fn fix_allocator_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        // SAFETY: mallopt only sets allocator parameters; any value is accepted or refused.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

/// Hands freed heap pages back to the OS. glibc only trims the top of its heaps by itself:
/// the parse of a big declarative file or of a whole database, or a config replaced by a
/// reload (allocated below the new one), otherwise stays resident. Measured with a million
/// consumers: about 90 MB after each reload; with 100,000 per-consumer plugin instances
/// loaded from Postgres, about 1 GB.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gangway_config::model::{ForeignKey, KeyauthCredential};
    use gangway_pipeline::identity::{IdentityError, KeyLookup};

    #[test]
    fn an_identity_write_publishes_a_key_without_recompiling_routes() {
        let catalog = gangway_pipeline::Catalog::default();
        let config = gangway_config::declarative::load_str(
            "_format_version: \"3.0\"\nconsumers:\n  - username: alice\nservices:\n  - name: s\n    url: http://x\n    routes:\n      - paths: [\"/\"]\n",
            &catalog,
        )
        .expect("config");
        let gateway = crate::standalone_gateway(config, catalog).expect("gateway");
        let before = gateway.snapshot();
        let alice = before
            .identities
            .consumer_by_username("alice")
            .expect("alice");
        let cred = KeyauthCredential {
            id: uuid::Uuid::from_u128(7),
            consumer: ForeignKey::from(before.identities.consumer(alice).id),
            key: "new-key".into(),
            expires_at: None,
            tags: None,
            created_at: 0,
        };
        gateway
            .write_identities(|ids| ids.with_credential(cred.clone()))
            .expect("written");
        let after = gateway.snapshot();
        assert!(
            Arc::ptr_eq(&before.compiled, &after.compiled),
            "routes shared"
        );
        assert_eq!(
            after.identities.find_key(b"new-key", 0),
            KeyLookup::Found(0, alice)
        );
        assert_eq!(
            before.identities.find_key(b"new-key", 0),
            KeyLookup::Unknown
        );

        // A refused write leaves the published snapshot alone.
        let err = gateway
            .write_identities(|ids| ids.with_credential(cred.clone()))
            .expect_err("the key is taken");
        assert!(matches!(err, IdentityError::Unique { field: "key", .. }));
        assert!(Arc::ptr_eq(&gateway.snapshot(), &after));
    }
}
