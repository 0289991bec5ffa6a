//! Worker threads: each runs one single-threaded runtime of the chosen backend with its own
//! SO_REUSEPORT listeners, accepts, and serves its connections to completion. Nothing crosses
//! threads after startup except the snapshot pointer and the shutdown signal.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{ChosenBackend, Gateway, StartError};
use gangway_config::settings::ListenAddr;
use gangway_net::listener::bind_reuseport;
use gangway_net::{Backend, epoll::Epoll, uring::Uring};
use gangway_proxy::WorkerCtx;

/// One worker's listening sockets, each with the listen spec it came from.
pub type WorkerListeners = Vec<(std::net::TcpListener, ListenAddr)>;

/// Binds every proxy listen address once per worker. A port 0 is resolved by the first bind
/// and reused by the others, so all workers share one kernel-assigned port.
pub fn bind_all(specs: &[ListenAddr], workers: usize) -> Result<Vec<WorkerListeners>, StartError> {
    let mut per_worker: Vec<WorkerListeners> = (0..workers).map(|_| Vec::new()).collect();
    for spec in specs {
        let mut addr = spec.addr;
        for listeners in per_worker.iter_mut() {
            let socket = bind_reuseport(addr, spec.backlog)
                .map_err(|source| StartError::Listen { addr, source })?;
            addr = socket.local_addr()?;
            let mut resolved = spec.clone();
            resolved.addr = addr;
            listeners.push((socket, resolved));
        }
        info!(listen = %addr, ssl = spec.ssl, "proxy listener bound");
    }
    Ok(per_worker)
}

/// Starts one thread per worker.
pub fn spawn_all(
    gateway: Arc<Gateway>,
    backend: ChosenBackend,
    listeners: Vec<WorkerListeners>,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut handles = Vec::with_capacity(listeners.len());
    for (id, own) in listeners.into_iter().enumerate() {
        let gateway = gateway.clone();
        let handle = std::thread::Builder::new()
            .name(format!("gangway-worker-{id}"))
            .spawn(move || match backend {
                ChosenBackend::IoUring => run::<Uring>(id, gateway, own),
                ChosenBackend::Epoll => run::<Epoll>(id, gateway, own),
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

fn run<B: Backend>(id: usize, gateway: Arc<Gateway>, listeners: WorkerListeners) {
    if let Some(tid) = gateway.counters.worker_tid.get(id) {
        // SAFETY: gettid has no preconditions.
        tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
    }
    B::block_on(async move {
        #[cfg(feature = "quota")]
        gangway_quota::install::<B>();
        let ctx = Rc::new(WorkerCtx::<B>::new(id, gateway.clone()));
        for (socket, spec) in listeners {
            match B::listener(socket) {
                Ok(listener) => {
                    tokio::task::spawn_local(accept_loop::<B>(listener, spec, ctx.clone()));
                }
                Err(e) => warn!(worker = id, error = %e, "cannot adopt listener"),
            }
        }
        if gateway.access_log.get().is_some() {
            tokio::task::spawn_local(flush_access_log(ctx.clone()));
        }
        tokio::task::spawn_local(release_idle_buffers(ctx.clone()));
        let mut shutdown = gateway.shutdown_signal();
        let _ = shutdown.wait_for(|stop| *stop).await;
        ctx.stop.stop();
        let grace = Duration::from_millis(gateway.settings.shutdown_grace_period_ms);
        let deadline = Instant::now() + grace;
        while ctx.active_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if ctx.active_connections() > 0 {
            warn!(
                worker = id,
                open = ctx.active_connections(),
                "grace period over; closing"
            );
        }
        if let Some(sink) = gateway.access_log.get() {
            ctx.access.flush(sink);
        }
        debug!(worker = id, "worker stopped");
    });
}

/// Hands the worker's partial batch of access-log lines to the writer a quarter of a second
/// after its first line, so a quiet worker's lines do not wait for a full batch, and an
/// idle worker is not woken at all.
async fn flush_access_log<B: Backend>(ctx: Rc<WorkerCtx<B>>) {
    let mut shutdown = ctx.gateway.shutdown_signal();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = ctx.access.lines_waiting() => {}
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if let Some(sink) = ctx.gateway.access_log.get() {
            ctx.access.flush(sink);
        }
    }
}

/// How often a worker frees the request buffers no request needed meanwhile.
const BUFFER_RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// Freed buffer sets (about 18 KiB each) worth handing back to the OS at once.
const BUFFER_SETS_TO_TRIM: usize = 64;

/// Gives back, every second, the request buffers a burst left in the worker's pool, and
/// hands the memory of the freed ones to the OS (with clients still connected, the trim
/// after connections close never comes).
async fn release_idle_buffers<B: Backend>(ctx: Rc<WorkerCtx<B>>) {
    let mut shutdown = ctx.gateway.shutdown_signal();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(BUFFER_RELEASE_INTERVAL) => {}
        }
        if ctx.release_idle_buffers() >= BUFFER_SETS_TO_TRIM {
            super::release_freed_memory();
        }
    }
}

async fn accept_loop<B: Backend>(listener: B::Listener, spec: ListenAddr, ctx: Rc<WorkerCtx<B>>) {
    let mut shutdown = ctx.gateway.shutdown_signal();
    let spec = Rc::new(spec);
    let backoff = Cell::new(Duration::from_millis(5));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = B::accept(&listener) => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.set(Duration::from_millis(5));
                spawn_connection(stream, peer, spec.clone(), ctx.clone());
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff.get()).await;
                backoff.set((backoff.get() * 2).min(Duration::from_secs(1)));
            }
        }
    }
}

fn spawn_connection<B: Backend>(
    stream: B::Stream,
    peer: SocketAddr,
    spec: Rc<ListenAddr>,
    ctx: Rc<WorkerCtx<B>>,
) {
    let counters = &ctx.gateway.counters;
    counters
        .accepted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The kernel's IP guard drops these before accept where it runs; this is the same policy
    // without it, and a backstop on interfaces it is not attached to.
    let snapshot = ctx.gateway.snapshot();
    let place = match ctx.gateway.accept_check.admit(
        &snapshot.conn_policy,
        spec.addr.port(),
        peer.ip(),
    ) {
        Ok(place) => place,
        Err(reason) => {
            debug!(%peer, reason = reason.as_str(), "connection refused by the connection policy");
            return;
        }
    };
    drop(snapshot);
    if ctx.active_connections() >= ctx.gateway.settings.max_connections {
        warn!(%peer, limit = ctx.gateway.settings.max_connections, "connection limit reached");
        return;
    }
    counters
        .handled
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let guard = ctx.connection_guard();
    tokio::task::spawn_local(async move {
        gangway_proxy::serve_connection(stream, peer, &spec, &ctx).await;
        // Held to the end (the guard counts the connection, the place is its per-address
        // slot), and not moved into locals first: the task would hold both copies.
        drop((guard, place));
    });
}
