//! gangway's proxy data plane: what a worker does with a client connection, and the
//! compiled state it reads.
//!
//! - [`gateway`]: the process-wide [`Gateway`] (settings, the current [`Snapshot`], draining,
//!   counters); [`compile`] turns a validated config into a [`Snapshot`]; [`standalone`]
//!   compiles without a running process (`gangway check`, tests).
//! - [`session`] reads requests (pipelined ones in order) and runs each through Kong's phases;
//!   [`exchange`] sends a request upstream and streams the response back; [`headers`] builds
//!   the heads that go each way; [`real_ip`] finds the client address behind trusted proxies;
//!   [`buffered`] is the response path for plugins that rewrite the body.
//! - [`upstream`]: the per-worker keep-alive pool, DNS, load balancing and health checks.
//!
//! It knows how plugins run (through `gangway-pipeline`) but not which plugins exist: the
//! binary passes a [`gangway_pipeline::Catalog`]. It never reads a config source or a setting
//! file itself, and owns no thread but the active health checker's.

pub mod access_log;
mod buffer_pool;
mod buffered;
pub mod compile;
pub mod conn_policy;
mod conn_timer;
mod exchange;
mod forward;
pub mod gateway;
mod hash_facts;
mod headers;
mod kernel_counters;
mod log;
mod log_json;
pub mod log_rows;
pub mod node_status;
mod plugins;
mod real_ip;
mod recorder;
mod reply;
mod session;
pub mod snapshot;
mod spans;
mod standalone;
pub mod stop_signal;
pub mod upstream;

pub use gateway::Gateway;
pub use headers::PRODUCT;
pub use snapshot::Snapshot;
pub use standalone::{compile_standalone, standalone_gateway};

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use gangway_config::settings::ListenAddr;
use gangway_net::prefixed::Prefixed;
use gangway_net::{Backend, Stream, proxy_protocol, tls};

use crate::upstream::dns::{DnsCache, DnsSettings};
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
    /// This worker's batch of access-log lines.
    pub access: access_log::WorkerAccessLog,
    /// Idle upstream connections.
    pub pool: RefCell<Pool<UpstreamStream<B::Stream>>>,
    /// Resolved upstream names.
    pub dns: std::rc::Rc<RefCell<DnsCache>>,
    /// The realip settings (`trusted_ips`, `real_ip_header`, `real_ip_recursive`).
    pub real_ip: real_ip::RealIpConfig,
    /// `tracing_instrumentations` and `tracing_sampling_rate`.
    pub tracer: gangway_pipeline::trace::Tracer,
    /// Request buffers between requests.
    pub(crate) buffers: buffer_pool::BufferPool,
    /// Set when shutdown begins: idle keep-alive connections close.
    pub stop: stop_signal::StopSignal,
    /// The bounds of a request head (`client_header_max_bytes`, `client_header_line_max_bytes`).
    pub(crate) head_limits: gangway_http::Limits,
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
        let dns = DnsCache::new(DnsSettings {
            nameservers: s.dns_resolver.clone(),
            valid_ttl: s.dns_valid_ttl.map(Duration::from_secs),
            stale_ttl: Duration::from_secs(s.dns_stale_ttl),
            system_ttl: Duration::from_secs(s.dns_cache_ttl_s),
        })
        .sharing_answers(gateway.shared.health.answers.clone());
        let real_ip = real_ip::RealIpConfig::from_settings(s);
        let limits = gangway_pipeline::ReadLimits {
            req_headers: s.lua_max_req_headers,
            resp_headers: s.lua_max_resp_headers,
            post_args: s.lua_max_post_args,
        };
        let buffers = buffer_pool::BufferPool::new(s.lua_max_uri_args, limits);
        let head_limits = gangway_http::Limits {
            max_header_bytes: s.client_header_max_bytes,
            max_line_bytes: s.client_header_line_max_bytes,
            ..gangway_http::Limits::default()
        };
        WorkerCtx {
            id,
            real_ip,
            tracer: gangway_pipeline::trace::Tracer::from_settings(s),
            gateway,
            active: Cell::new(0),
            access: access_log::WorkerAccessLog::default(),
            pool: RefCell::new(pool),
            dns: std::rc::Rc::new(RefCell::new(dns)),
            buffers,
            stop: stop_signal::StopSignal::default(),
            head_limits,
        }
    }

    /// Frees the request buffers no request needed since the last call (see
    /// `BufferPool::release_idle`); returns how many sets were freed.
    pub fn release_idle_buffers(&self) -> usize {
        self.buffers.release_idle()
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
        if let Some(mine) = self.gateway.counters.worker_active.get(self.id) {
            mine.fetch_add(1, Ordering::Relaxed);
        }
        ConnectionGuard { ctx: self.clone() }
    }
}

impl<B: Backend> WorkerCtx<B> {
    /// Whether the response to the request at hand must close its connection: the gateway
    /// is draining, or the connection has carried `keepalive_requests` requests (nginx's
    /// `keepalive_requests`, Kong's 10,000).
    pub(crate) fn last_on_connection(&self, bufs: &session::ConnBuffers) -> bool {
        self.gateway.is_draining()
            || bufs.plugins.conn.requests >= self.gateway.settings.keepalive_requests
    }

    /// Counts a connection in nginx's reading state until the mark drops.
    pub(crate) fn mark_reading(&self) -> Option<StateMark<'_>> {
        let states = self.gateway.counters.worker_states.get(self.id)?;
        Some(StateMark::enter(&states.reading))
    }

    /// Counts a connection in nginx's writing state until the mark drops.
    pub(crate) fn mark_writing(&self) -> Option<StateMark<'_>> {
        let states = self.gateway.counters.worker_states.get(self.id)?;
        Some(StateMark::enter(&states.writing))
    }
}

/// One connection counted in one of its worker's state counts, until dropped. Only the
/// worker's own thread writes its counts, so a load and a store do instead of a locked
/// add on every request.
pub(crate) struct StateMark<'a> {
    count: &'a AtomicU64,
}

impl<'a> StateMark<'a> {
    fn enter(count: &'a AtomicU64) -> Self {
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        StateMark { count }
    }
}

impl Drop for StateMark<'_> {
    fn drop(&mut self) {
        let count = self.count;
        count.store(count.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    }
}

/// Decrements the open-connection counts on drop.
pub struct ConnectionGuard<B: Backend> {
    ctx: Rc<WorkerCtx<B>>,
}

impl<B: Backend> Drop for ConnectionGuard<B> {
    fn drop(&mut self) {
        self.ctx.active.set(self.ctx.active.get() - 1);
        let counters = &self.ctx.gateway.counters;
        counters.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(mine) = counters.worker_active.get(self.ctx.id) {
            mine.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Serves one accepted client connection until it closes.
///
/// On a `proxy_protocol` listener the PROXY header comes first, before TLS; a missing,
/// malformed or late header closes the connection without a response. The header and the TLS
/// handshake share one `client_header_timeout`.
///
/// Not an async fn: every idle connection's task holds this future, which then keeps the
/// connection's facts once instead of also the arguments they were made from.
pub fn serve_connection<'a, B: Backend>(
    stream: B::Stream,
    peer: SocketAddr,
    listen: &'a ListenAddr,
    ctx: &'a WorkerCtx<B>,
) -> impl Future<Output = ()> + 'a {
    let conn = session::ClientConn {
        peer,
        local_port: ctx.gateway.settings.host_port(listen.addr.port()),
        listener_port: listen.addr.port(),
        tls: false,
        sni: None,
        tls_names: None,
        trusted: ctx.real_ip.is_trusted(peer.ip()),
        proxy_source: None,
        timer: conn_timer::ConnTimer::default(),
    };
    async move {
        if listen.ssl || listen.proxy_protocol {
            // Boxed: the PROXY header and the TLS state (several KB) are for these listeners
            // only, and a plain connection's task, which every idle connection holds, should
            // not carry room for them.
            Box::pin(serve_wrapped(stream, conn, listen, ctx)).await;
        } else {
            session::serve(stream, &conn, ctx).await;
        }
    }
}

/// [`serve_connection`] on a `proxy_protocol` or `ssl` listener: the PROXY header, then
/// TLS, then the session.
async fn serve_wrapped<B: Backend>(
    stream: B::Stream,
    mut conn: session::ClientConn,
    listen: &ListenAddr,
    ctx: &WorkerCtx<B>,
) {
    let peer = conn.peer;
    let deadline =
        Instant::now() + Duration::from_millis(ctx.gateway.settings.client_header_timeout_ms);
    let prefix = if listen.proxy_protocol {
        let read = proxy_protocol::read_header(&stream);
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok((header, rest))) => {
                conn.proxy_source = header.source;
                rest
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "PROXY protocol header rejected");
                let _ = stream.shutdown().await;
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "PROXY protocol header timed out");
                // The FIN tells the client now: with io_uring the cancelled read keeps the
                // socket open until the client sends or closes.
                let _ = stream.shutdown().await;
                return;
            }
        }
    } else {
        Vec::new()
    };
    if listen.ssl {
        serve_tls(stream, conn, prefix, deadline, ctx).await;
    } else {
        // The bytes read past the header are the start of the first request.
        session::serve(Prefixed::new(stream, prefix), &conn, ctx).await;
    }
}

/// The TLS half of [`serve_connection`]: the handshake (under the deadline the PROXY header
/// started), then the session.
async fn serve_tls<B: Backend>(
    stream: B::Stream,
    mut conn: session::ClientConn,
    prefix: Vec<u8>,
    deadline: Instant,
    ctx: &WorkerCtx<B>,
) {
    let config = ctx.gateway.snapshot().tls.clone();
    let handshake = tls::accept_with_prefix(stream, config, prefix);
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(tls)) => {
            conn.tls = true;
            conn.sni = tls.sni();
            conn.tls_names = tls.openssl_names();
            session::serve(tls, &conn, ctx).await;
        }
        Ok(Err(e)) => tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(peer = %conn.peer, "TLS handshake timed out"),
    }
}

#[cfg(test)]
mod task_size_tests {
    use super::*;
    use gangway_net::{epoll::Epoll, uring::Uring};

    /// The size of the future `serve` returns, without making one.
    fn future_size<'a, B: Backend, Fut: Future>(
        _serve: impl FnOnce(B::Stream, SocketAddr, &'a ListenAddr, &'a WorkerCtx<B>) -> Fut,
    ) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every connection's task holds a plain connection's state for as long as it is open,
    /// idle or not: its largest wait, not the request in flight (boxed), the TLS or PROXY
    /// state (boxed), or a future argument held twice. `cargo xtask bench connections`
    /// measures the whole connection; this keeps the task from growing unnoticed.
    #[test]
    fn a_plain_connection_task_stays_small() {
        const BUDGET: usize = 1536;
        for (backend, size) in [
            (
                "io_uring",
                future_size::<Uring, _>(serve_connection::<Uring>),
            ),
            ("epoll", future_size::<Epoll, _>(serve_connection::<Epoll>)),
        ] {
            assert!(
                size <= BUDGET,
                "{backend}: a connection's task takes {size} bytes (budget {BUDGET})"
            );
        }
    }
}
