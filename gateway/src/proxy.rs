//! The proxy data plane: one task per client connection, on the worker that accepted it.
//!
//! [`session`] reads requests (pipelined ones in order), routes them, and answers errors;
//! [`exchange`] sends a request upstream and streams the response back; [`headers`] builds the
//! heads that go each way; [`buffered`] is the response path for plugins that rewrite the
//! body.

mod buffered;
pub mod exchange;
mod forward;
mod hash_facts;
pub mod headers;
mod plugins;
pub mod session;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::net::{Backend, tls};
use crate::runtime::Gateway;
use crate::settings::ListenAddr;
use crate::upstream::dns::DnsCache;
use crate::upstream::pool::Pool;
use crate::upstream::stream::UpstreamStream;

/// Per-worker state: shared by every connection task of one worker thread, never by two
/// threads.
pub struct WorkerCtx<B: Backend> {
    /// Worker index.
    pub id: usize,
    /// Process-wide state.
    pub gateway: Arc<Gateway>,
    active: Cell<usize>,
    /// Idle upstream connections.
    pub pool: RefCell<Pool<UpstreamStream<B::Stream>>>,
    /// Resolved upstream names.
    pub dns: RefCell<DnsCache>,
}

impl<B: Backend> WorkerCtx<B> {
    /// Fresh worker state.
    pub fn new(id: usize, gateway: Arc<Gateway>) -> Self {
        let s = &gateway.settings;
        let pool = Pool::new(
            s.upstream_keepalive_pool_size,
            Duration::from_secs(s.upstream_keepalive_idle_timeout),
            s.upstream_keepalive_max_requests,
        );
        let dns = DnsCache::new(
            Duration::from_secs(s.dns_cache_ttl_s),
            Duration::from_secs(s.dns_stale_ttl),
        );
        WorkerCtx {
            id,
            gateway,
            active: Cell::new(0),
            pool: RefCell::new(pool),
            dns: RefCell::new(dns),
        }
    }

    /// Open client connections on this worker.
    pub fn active_connections(&self) -> usize {
        self.active.get()
    }

    /// Counts a connection as open until the guard drops. Taken at accept time, so a burst of
    /// accepts is counted before any of their tasks runs.
    pub fn connection_guard(self: &Rc<Self>) -> ConnectionGuard<B> {
        self.active.set(self.active.get() + 1);
        self.gateway.counters.active.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard { ctx: self.clone() }
    }
}

/// Decrements the open-connection counts on drop.
pub struct ConnectionGuard<B: Backend> {
    ctx: Rc<WorkerCtx<B>>,
}

impl<B: Backend> Drop for ConnectionGuard<B> {
    fn drop(&mut self) {
        self.ctx.active.set(self.ctx.active.get() - 1);
        self.ctx
            .gateway
            .counters
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted client connection until it closes.
pub async fn serve_connection<B: Backend>(
    stream: B::Stream,
    peer: SocketAddr,
    listen: &ListenAddr,
    ctx: &WorkerCtx<B>,
) {
    let local_port = listen.addr.port();
    let trusted = ctx
        .gateway
        .settings
        .trusted_ips
        .iter()
        .any(|net| net.contains(&peer.ip()));
    if !listen.ssl {
        let conn = session::ClientConn {
            peer,
            local_port,
            tls: false,
            sni: None,
            trusted,
        };
        session::serve(stream, conn, ctx).await;
        return;
    }
    let config = ctx.gateway.snapshot().tls.clone();
    let handshake_timeout = Duration::from_millis(ctx.gateway.settings.client_header_timeout_ms);
    match tokio::time::timeout(handshake_timeout, tls::accept(stream, config)).await {
        Ok(Ok(tls)) => {
            let conn = session::ClientConn {
                peer,
                local_port,
                tls: true,
                sni: tls.sni(),
                trusted,
            };
            session::serve(tls, conn, ctx).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
