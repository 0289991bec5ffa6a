//! The client side of a connection: read a request head, route it, hand it to the exchange,
//! and loop for keep-alive and pipelined requests.
//!
//! Buffers live for the whole connection and are reused by every request on it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tracing::debug;

use super::WorkerCtx;
use super::conn_timer::{ConnTimer, SendBounded, Within};
use super::exchange::{self, Exchange, Outcome};
use super::kernel_counters::KernelMarks;
use super::log::{self, ChainRef, RequestInfo};
use super::recorder::Recorded;
use super::reply;
use super::stop_signal::{StopSignal, UnlessStopped, unless_stopped};
use crate::Snapshot;
use gangway_config::model::{Protocol, Route};
use gangway_config::settings::{Instrumentations, LogKernelCounters};
use gangway_http::{BodyFraming, ErrorFormat, HttpError, RequestHead, ResponseHead, parse_request};
use gangway_net::{Backend, Stream};
use gangway_pipeline::context::ConnFacts;
use gangway_pipeline::trace::SpanName;
use gangway_pipeline::{AccessCtx, Chain, Flow, RequestState, Response, ResponseBody};
use gangway_router::{HeaderSource, MatchScratch, RouteMatch, RouteRequest};

/// Initial capacity of a request buffer.
pub(crate) const REQUEST_BUF: usize = 16 * 1024;

/// The buffer an idle keep-alive connection waits with for its next request. A head that
/// arrives in one segment up to this size is read in one call; a longer one takes another
/// read into the full buffers.
const IDLE_READ: usize = 1024;

/// After an error answer that ends the connection, how long one read of what the client
/// still sends may take, and how long the whole drain may (nginx's `lingering_timeout` and
/// `lingering_time`).
const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);
const LINGERING_TIME: Duration = Duration::from_secs(30);

/// What we know about the client connection.
pub struct ClientConn {
    /// The client's address.
    pub peer: SocketAddr,
    /// The port the client reached the listener through: the listener's, unless
    /// `port_maps` maps it (`X-Forwarded-Port`, host:port route matching, the log's URL).
    pub local_port: u16,
    /// The listener's own port (nginx's `$server_port`, which correlation-id's `tracker`
    /// reads even behind `port_maps`).
    pub listener_port: u16,
    /// True on TLS listeners.
    pub tls: bool,
    /// The TLS SNI the client sent.
    pub sni: Option<String>,
    /// The TLS protocol and cipher, OpenSSL-named (for the log phase's `request.tls`).
    pub tls_names: Option<(&'static str, &'static str)>,
    /// The client is in `trusted_ips`: its X-Forwarded-* headers are believed.
    pub trusted: bool,
    /// The source address of the PROXY protocol header, on `proxy_protocol` listeners; `None`
    /// without one or when the header carried no address (v1 `UNKNOWN`, v2 `LOCAL`).
    pub proxy_source: Option<SocketAddr>,
    /// The one timer that bounds the connection's reads and writes, each moving its deadline.
    pub(crate) timer: ConnTimer,
}

/// Request headers viewed by the router, without copying: the first `max`
/// (`lua_max_req_headers`), as Kong's router reads `get_headers()`.
struct HeadView<'a> {
    head: &'a RequestHead,
    buf: &'a [u8],
    max: u16,
}

impl HeaderSource for HeadView<'_> {
    /// `lower_name` comes with `-` for `_` (as routes name headers); a request's
    /// `X_Api_Version` matches it too, as Kong's `get_headers()[name]` finds either spelling
    /// (nginx keeps underscores in Kong's config).
    fn values<'s>(&'s self, lower_name: &str) -> impl Iterator<Item = &'s [u8]> {
        let buf = self.buf;
        let dashed = |b: u8| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        };
        self.head
            .headers()
            .iter()
            .take(usize::from(self.max))
            .filter(move |f| {
                let name = f.name.get(buf);
                name.len() == lower_name.len()
                    && name
                        .iter()
                        .zip(lower_name.bytes())
                        .all(|(&a, b)| dashed(a) == b)
            })
            .map(move |f| f.value.get(buf))
    }
}

/// The buffers and state of a request in flight, pooled per worker between requests
/// (`BufferPool`).
pub struct ConnBuffers {
    /// Bytes read from the client; a request head starts at 0.
    pub input: Vec<u8>,
    /// Head (and small body) bytes on their way out.
    pub output: Vec<u8>,
    /// Bytes read from the upstream.
    pub upstream: Vec<u8>,
    /// The parsed request head.
    pub head: RequestHead,
    /// Router scratch space.
    pub scratch: MatchScratch,
    /// The parsed upstream response head.
    pub resp: ResponseHead,
    /// The request's Accept header, kept for error pages after the input buffer moved on.
    pub accept: Vec<u8>,
    /// The upstream path being built.
    pub upstream_path: Vec<u8>,
    /// Plugin state for the current request.
    pub plugins: RequestState,
    /// What the log phase will need about the current request.
    pub txn: super::log::Transaction,
    /// What the access log will need about the current request.
    pub access: crate::access_log::AccessNote,
}

impl ConnBuffers {
    pub(crate) fn new() -> Self {
        ConnBuffers {
            input: Vec::with_capacity(REQUEST_BUF),
            output: Vec::with_capacity(4096),
            upstream: Vec::with_capacity(REQUEST_BUF),
            head: RequestHead::default(),
            scratch: MatchScratch::default(),
            resp: ResponseHead::default(),
            accept: Vec::new(),
            upstream_path: Vec::with_capacity(256),
            plugins: RequestState::default(),
            txn: super::log::Transaction::default(),
            access: crate::access_log::AccessNote::default(),
        }
    }
}

/// A 32-hex-digit request id, like nginx's `$request_id` that Kong uses.
pub fn new_request_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut v = fastrand::u128(..);
    let mut out = [0u8; 32];
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
    out
}

enum ReadHead {
    /// A head of this many bytes is parsed.
    Ready(usize),
    /// The client closed (or timed out) between requests: close quietly.
    Closed,
    /// A malformed or oversized head: answer with this error, then close.
    Bad(HttpError),
}

/// Reads until `bufs.input`, which holds the start of a request, holds its full head.
///
/// The bounds come from `ctx` rather than as arguments: this future is part of every idle
/// connection's task, where each argument is kept twice.
async fn read_head<B: Backend, S: Stream>(
    client: &S,
    timer: &ConnTimer,
    bufs: &mut ConnBuffers,
    ctx: &WorkerCtx<B>,
) -> ReadHead {
    let limits = &ctx.head_limits;
    // Most heads arrive whole with their first read: the clock is read, and the connection
    // counted as reading, only for the rest.
    let mut started = None;
    let mut reading = None;
    loop {
        match parse_request(&bufs.input, limits, &mut bufs.head) {
            Ok(Some(n)) => return ReadHead::Ready(n),
            Ok(None) => {}
            Err(e) => return ReadHead::Bad(e),
        }
        if bufs.input.len() >= limits.max_header_bytes {
            return ReadHead::Bad(HttpError::HeaderTooLarge);
        }
        if bufs.input.capacity() - bufs.input.len() < 1024 {
            bufs.input.reserve(REQUEST_BUF);
        }
        if reading.is_none() {
            reading = ctx.mark_reading();
        }
        let header_timeout = Duration::from_millis(ctx.gateway.settings.client_header_timeout_ms);
        let budget =
            header_timeout.saturating_sub(started.get_or_insert_with(Instant::now).elapsed());
        let input = std::mem::take(&mut bufs.input);
        match read_some(client, timer, input, budget, None).await {
            Some(buf) => bufs.input = buf,
            None => return ReadHead::Closed,
        }
    }
}

/// One read into `buf`'s spare capacity within `budget`; None when the client closed, the
/// read failed or timed out, or `shutdown` (given between requests) fired first.
///
/// Not an async fn: an idle connection's task waits in this future, which then holds the
/// read and its bounds and not a copy of the arguments beside them.
fn read_some<'a, S: Stream>(
    client: &'a S,
    timer: &'a ConnTimer,
    buf: Vec<u8>,
    budget: Duration,
    shutdown: Option<&'a StopSignal>,
) -> impl Future<Output = Option<Vec<u8>>> + 'a {
    bounded(timer, budget, shutdown, client.read(buf)).map(|read| match read {
        Some(Ok((Ok(n), buf))) if n > 0 => Some(buf),
        _ => None,
    })
}

/// Runs `work` within `budget`, unless `shutdown` (given between requests: it closes an idle
/// keep-alive connection) fires first.
fn bounded<'a, F: Future>(
    timer: &'a ConnTimer,
    budget: Duration,
    shutdown: Option<&'a StopSignal>,
    work: F,
) -> UnlessStopped<'a, Within<'a, F>> {
    unless_stopped(shutdown, timer.within(budget, work))
}

/// Waits for the first bytes of the next request, then takes a buffer set from the
/// worker's pool for them. A stream that can wait for input without a buffer (epoll) holds
/// none meanwhile; others wait with the small `idle` buffer and the bytes move over. None
/// when the connection closes (or times out, or the node shuts down) first.
async fn next_request<B: Backend, S: Stream>(
    client: &S,
    timer: &ConnTimer,
    idle: &mut Vec<u8>,
    timeout: Duration,
    ctx: &WorkerCtx<B>,
) -> Option<Box<ConnBuffers>> {
    match bounded(timer, timeout, Some(&ctx.stop), client.ready_to_read()).await {
        Some(Ok(true)) => {
            let mut bufs = ctx.buffers.take();
            let mut input = std::mem::take(&mut bufs.input);
            // A set whose buffer a failed read kept comes back without one.
            input.reserve(REQUEST_BUF);
            // Input is there: this read does not wait.
            return match read_some(client, timer, input, timeout, None).await {
                Some(input) => {
                    bufs.input = input;
                    Some(bufs)
                }
                None => {
                    ctx.buffers.give(bufs);
                    None
                }
            };
        }
        Some(Ok(false)) => {}
        None | Some(Err(_)) => return None,
    }
    if idle.capacity() == 0 {
        idle.reserve_exact(IDLE_READ);
    }
    let buf = read_some(
        client,
        timer,
        std::mem::take(idle),
        timeout,
        Some(&ctx.stop),
    )
    .await?;
    let mut bufs = ctx.buffers.take();
    bufs.input.extend_from_slice(&buf);
    *idle = buf;
    idle.clear();
    Some(bufs)
}

/// Serves requests on one client connection until it closes.
pub async fn serve<B: Backend, S: Stream>(client: S, conn: &ClientConn, ctx: &WorkerCtx<B>) {
    let settings = &ctx.gateway.settings;
    let client = Recorded::new(SendBounded {
        inner: client,
        timer: &conn.timer,
        send: Duration::from_millis(settings.send_timeout_ms),
    });
    // Set when an error answer ends the connection: the client may still be sending.
    let mut linger = false;
    let mut conn_facts =
        ConnFacts::new_connection(SocketAddr::from(([0, 0, 0, 0], conn.listener_port)));
    // The full buffers while a request is in flight or pipelined bytes wait; between
    // requests the connection holds only `idle`.
    let mut held: Option<Box<ConnBuffers>> = None;
    let mut idle = Vec::new();
    // Boxed: off by default, and every idle connection's task would carry room for it.
    let mut kernel = match settings.log_kernel_counters {
        LogKernelCounters::Off => None,
        LogKernelCounters::On => Some(Box::new(KernelMarks::new(false))),
        LogKernelCounters::Sizes => Some(Box::new(KernelMarks::new(true))),
    };
    let mut first = true;
    loop {
        // Read: the next request head (the first one under client_header_timeout, later
        // ones under keepalive_timeout).
        let first_timeout = Duration::from_millis(if first {
            settings.client_header_timeout_ms
        } else {
            settings.keepalive_timeout_ms
        });
        first = false;
        let mut bufs = match held.take() {
            Some(bufs) => bufs,
            None => match next_request(&client, &conn.timer, &mut idle, first_timeout, ctx).await {
                Some(bufs) => bufs,
                None => break,
            },
        };
        bufs.plugins.conn = conn_facts;
        let head_len = match read_head(&client, &conn.timer, &mut bufs, ctx).await {
            ReadHead::Ready(n) => n,
            ReadHead::Closed => {
                ctx.buffers.give(bufs);
                break;
            }
            ReadHead::Bad(err) => {
                let access_log = ctx.gateway.access_log.get();
                if access_log.is_some() {
                    client.begin();
                    client.track_status();
                }
                // Boxed, as the rare paths below: a task is as large as its largest state,
                // and every idle connection holds one.
                let id = Box::pin(reply::refuse_head(
                    &client,
                    &mut bufs,
                    &err,
                    &settings.error_default_type,
                ))
                .await;
                if let Some(sink) = access_log {
                    // As nginx logs a request it refused: the line as read, the TCP peer.
                    note_refused_head(&mut bufs, conn.peer.ip(), id);
                    ctx.access
                        .append(sink, &bufs.access, client.status(), client.body_bytes());
                }
                ctx.buffers.give(bufs);
                linger = true;
                break;
            }
        };
        note_request(&mut bufs, ctx);
        let writing = ctx.mark_writing();
        // A request keeps the snapshot it loaded until its log phase ends.
        let snapshot = ctx.gateway.snapshot();
        client.begin();
        let access_log = ctx.gateway.access_log.get();
        if access_log.is_some() {
            note_for_access_log(&mut bufs);
            client.track_status();
        }
        // Rewrite, route, access, forward; header_filter and body_filter run as the answer
        // is written. Boxed: the request's state machine is large (12 KB), and an idle
        // connection's task should not carry it.
        let keep_going = Box::pin(handle_request(
            &client, conn, &mut bufs, head_len, &snapshot, ctx,
        ))
        .await;
        // Log, once the answer is sent.
        let reading = kernel
            .as_mut()
            .zip(client.socket_fd())
            .and_then(|(marks, fd)| marks.read(fd));
        super::log::finish(&client, &mut bufs, &snapshot, reading.as_ref());
        if let Some(sink) = access_log {
            ctx.access
                .append(sink, &bufs.access, client.status(), client.body_bytes());
        }
        drop(writing);
        conn_facts = bufs.plugins.conn;
        linger = !keep_going && client_may_still_send(&bufs, head_len);
        let stop = !keep_going || ctx.stop.is_stopped();
        if stop || bufs.input.is_empty() {
            ctx.buffers.give(bufs);
        } else {
            held = Some(bufs);
        }
        if stop {
            break;
        }
    }
    let _ = client.shutdown().await;
    if linger {
        Box::pin(drain_before_close(&client, &conn.timer, &ctx.stop)).await;
    }
}

/// Whether the client may still be sending when an answer ends its connection: after
/// gangway's own error, or a plugin's answer given before the request body was all read. The
/// upstream's answer leaves nothing behind, and an answer to a complete request needs no
/// lingering close: waiting for the client's FIN there costs a read and a wakeup on every
/// `Connection: close` request.
fn client_may_still_send(bufs: &ConnBuffers, head_len: usize) -> bool {
    match bufs.txn.source {
        log::Source::Error => true,
        log::Source::Exit => super::reply::request_end(bufs, head_len).is_none(),
        log::Source::Service => false,
    }
}

/// Reads and drops what the client still sends after the answer that ends its connection,
/// until it closes its side (bounded by [`LINGERING_TIMEOUT`] and [`LINGERING_TIME`], or the
/// gateway's shutdown), as nginx's lingering close does. Closing a socket with unread bytes
/// resets the connection, and a client still writing a refused body (a 413, say) would see
/// "connection reset" instead of the answer.
async fn drain_before_close<S: Stream>(client: &S, timer: &ConnTimer, shutdown: &StopSignal) {
    let deadline = Instant::now() + LINGERING_TIME;
    let mut buf = Vec::with_capacity(REQUEST_BUF);
    loop {
        let budget = LINGERING_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        if budget.is_zero() {
            return;
        }
        buf.clear();
        match read_some(client, timer, buf, budget, Some(shutdown)).await {
            Some(read) => buf = read,
            None => return,
        }
    }
}

/// What the access log can say of a head that did not parse: its first line as read (up to
/// 2 KiB), no headers.
fn note_refused_head(bufs: &mut ConnBuffers, peer: std::net::IpAddr, request_id: [u8; 32]) {
    const MAX_LINE: usize = 2048;
    let input = &bufs.input[..bufs.input.len().min(MAX_LINE)];
    let line_end = input
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(input.len());
    let note = &mut bufs.access;
    note.request_line.clear();
    note.request_line.extend_from_slice(&input[..line_end]);
    note.referer.clear();
    note.user_agent.clear();
    note.client_ip = Some(peer);
    note.request_id = request_id;
}

/// Keeps what the access log needs of the request before its body moves the input on.
fn note_for_access_log(bufs: &mut ConnBuffers) {
    let (buf, head, note) = (&bufs.input, &bufs.head, &mut bufs.access);
    note.request_line.clear();
    note.request_line.extend_from_slice(head.method(buf));
    note.request_line.push(b' ');
    note.request_line.extend_from_slice(head.target(buf));
    note.request_line.extend_from_slice(match head.version() {
        gangway_http::Version::Http10 => b" HTTP/1.0",
        gangway_http::Version::Http11 => b" HTTP/1.1",
    });
    for (name, out) in [
        ("referer", &mut note.referer),
        ("user-agent", &mut note.user_agent),
    ] {
        out.clear();
        if let Some(value) = head.header(buf, name) {
            out.extend_from_slice(value);
        }
    }
    note.client_ip = None;
}

/// Counts a request whose head was read and keeps what error pages need of it.
fn note_request<B: Backend>(bufs: &mut ConnBuffers, ctx: &WorkerCtx<B>) {
    ctx.gateway
        .counters
        .total_requests
        .fetch_add(1, Ordering::Relaxed);
    bufs.plugins.conn.requests += 1;
    // Until someone answers, the answer is gangway's own; the session reads who answered
    // to choose how to close, for every request, logged or not (the buffers are pooled).
    bufs.txn.source = log::Source::Error;
    bufs.accept.clear();
    if let Some(accept) = bufs.head.header(&bufs.input, "accept") {
        bufs.accept.extend_from_slice(accept);
    }
}

/// What a phase decided: go on to the next phase with its result, or the request has been
/// answered (by a plugin or with an error page), and the connection may (`true`) carry
/// another request.
enum Phase<T> {
    Next(T),
    Answered(bool),
}

/// Which route matched, and what it leads to.
struct Routed<'s> {
    matched: RouteMatch,
    route: &'s Route,
    /// Index of the route's service in the snapshot, unless it has none or it is disabled.
    service: Option<usize>,
    chain: &'s Chain,
}

/// Runs one request whose head is `bufs.input[..head_len]` through Kong's phases: rewrite
/// (global plugins), routing, access (the route's plugins), then forwarding to the service.
/// header_filter and body_filter run as the answer is written, whoever wrote it; the caller
/// runs the log phase. Returns whether the connection may carry another request.
async fn handle_request<B: Backend, S: Stream>(
    client: &Recorded<S>,
    conn: &ClientConn,
    bufs: &mut ConnBuffers,
    head_len: usize,
    snapshot: &Snapshot,
    ctx: &WorkerCtx<B>,
) -> bool {
    let request_id = new_request_id();
    let facts = RequestInfo {
        conn,
        head_len,
        client_ip: client_address(conn, bufs, head_len, ctx),
        request_id: &request_id,
        received: Instant::now(),
    };
    bufs.access.client_ip = Some(facts.client_ip);
    bufs.access.request_id = request_id;
    bufs.plugins.reset(0);
    super::spans::begin(&ctx.tracer, snapshot.pipeline.tracing, bufs, &facts);
    if let Phase::Answered(keep) = rewrite(client, bufs, &facts, snapshot, ctx).await {
        return keep;
    }
    let routed = match route(client, bufs, &facts, snapshot, ctx).await {
        Phase::Next(routed) => routed,
        Phase::Answered(keep) => return keep,
    };
    if let Phase::Answered(keep) = access(client, bufs, &facts, snapshot, &routed, ctx).await {
        return keep;
    }
    forward(client, bufs, &facts, snapshot, routed, ctx).await
}

/// The rewrite phase: global plugins with a rewrite handler, before routing.
async fn rewrite<B: Backend, S: Stream>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    facts: &RequestInfo<'_>,
    snapshot: &Snapshot,
    ctx: &WorkerCtx<B>,
) -> Phase<()> {
    let global = &snapshot.pipeline.global;
    if !global.rewrites {
        return Phase::Next(());
    }
    let mut rewrite = AccessCtx {
        head: &bufs.head,
        buf: &bufs.input[..facts.head_len],
        captures: &bufs.scratch,
        client_ip: facts.client_ip,
        tls: facts.conn.tls,
        identities: &snapshot.identities,
        route: None,
        route_match: None,
        service: None,
        request_id: facts.request_id,
        state: &mut bufs.plugins,
        step: 0,
    };
    let Flow::Respond(response) = gangway_pipeline::run_rewrite(&snapshot.pipeline, &mut rewrite)
    else {
        return Phase::Next(());
    };
    log::begin(client, bufs, snapshot, ChainRef::Global, facts);
    let keep = super::plugins::respond(client, bufs, ctx, facts, snapshot, global, response).await;
    Phase::Answered(keep)
}

/// Routing: Kong's router picks the route; no match is Kong's 404 (filtered and logged by
/// the global plugins), and plain http on an https-only route is refused or redirected.
async fn route<'s, B: Backend, S: Stream>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    facts: &RequestInfo<'_>,
    snapshot: &'s Snapshot,
    ctx: &WorkerCtx<B>,
) -> Phase<Routed<'s>> {
    let conn = facts.conn;
    let matched = {
        let buf = &bufs.input[..facts.head_len];
        let head = &bufs.head;
        let max = bufs.plugins.limits.req_headers;
        if head.headers().len() > usize::from(max) && snapshot.router.matches_headers() {
            // Kong's words, at Kong's level.
            tracing::error!(
                "router: not all request headers were read in order to determine the route as \
                 the request contains more than {max} headers, route selection may be \
                 inaccurate, consider increasing the 'lua_max_req_headers' configuration value \
                 (currently at {max})"
            );
        }
        let view = HeadView { head, buf, max };
        // Kong routes on the Host header: an absolute-form target's host must not pick a
        // route that a filter in front of gangway judged by the header. A Host that is not
        // UTF-8 matches nothing (Kong's router refuses the value, and answers 404); read
        // as no Host, it would have matched every route without hosts.
        let host = std::str::from_utf8(head.host_header(buf).unwrap_or(b""));
        let req = RouteRequest {
            method: std::str::from_utf8(head.method(buf)).unwrap_or(""),
            host: host.unwrap_or(""),
            port: conn.local_port,
            path: std::str::from_utf8(head.path(buf)).unwrap_or(""),
            headers: &view,
            sni: conn.sni.as_deref(),
            https: conn.tls,
        };
        let span = bufs
            .plugins
            .trace
            .open(Instrumentations::ROUTER, SpanName::Router);
        let matched = host
            .ok()
            .and_then(|_| snapshot.router.find(&req, &mut bufs.scratch));
        bufs.plugins.trace.close(span);
        matched
    };
    let Some(matched) = matched else {
        debug!(path = %String::from_utf8_lossy(bufs.head.path(&bufs.input)), "no route matched");
        let keep = global_error(
            client,
            bufs,
            facts,
            snapshot,
            ctx,
            (404, "no Route matched with those values", &[]),
        )
        .await;
        return Phase::Answered(keep);
    };
    let route = &snapshot.config.routes[matched.route];
    let https_only =
        route.protocols.contains(&Protocol::Https) && !route.protocols.contains(&Protocol::Http);
    if https_only && !https_request(conn, bufs) {
        let keep = match route.https_redirect_status_code {
            426 => {
                let upgrade: &[_] = &[("Connection", "Upgrade"), ("Upgrade", "TLS/1.2, HTTP/1.1")];
                let refusal = (426, "Please use HTTPS protocol", upgrade);
                global_error(client, bufs, facts, snapshot, ctx, refusal).await
            }
            code => {
                let location = reply::https_location(bufs, conn.trusted);
                let response =
                    Response::exit(code, ResponseBody::Empty).with_header("Location", location);
                let global = begin_global_answer(client, bufs, facts, snapshot);
                super::plugins::respond(client, bufs, ctx, facts, snapshot, global, response).await
            }
        };
        return Phase::Answered(keep);
    }
    if let Some(refusal) = grpc_mismatch(route, bufs) {
        // Kong's answers for an HTTP/1.x request on a gRPC route (gangway speaks no HTTP/2).
        let keep = global_error(client, bufs, facts, snapshot, ctx, refusal).await;
        return Phase::Answered(keep);
    }
    let service = snapshot.route_service[matched.route].filter(|&i| snapshot.services[i].enabled);
    let chain = &snapshot.pipeline.routes[matched.route];
    Phase::Next(Routed {
        matched,
        route,
        service,
        chain,
    })
}

/// The access phase: the route's plugins, each resolved for the consumer authenticated so
/// far, with the request body read first when one of them needs it.
async fn access<B: Backend, S: Stream>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    facts: &RequestInfo<'_>,
    snapshot: &Snapshot,
    routed: &Routed<'_>,
    ctx: &WorkerCtx<B>,
) -> Phase<()> {
    let chain = routed.chain;
    bufs.plugins.begin_chain(chain.steps.len());
    if chain.is_empty() {
        return Phase::Next(());
    }
    // A plugin that only measures the body (request-size-limiting) needs it buffered when
    // its size is not announced, and then only up to its limit.
    let limit = chain
        .chunked_body_limit
        .filter(|_| !chain.needs_body && bufs.head.framing() == BodyFraming::Chunked);
    if chain.needs_body || limit.is_some() {
        if let Err(e) =
            super::plugins::buffer_body(client, &facts.conn.timer, bufs, facts.head_len, ctx, limit)
                .await
        {
            if let Some(status) = e.status {
                reply::respond_error_closing(
                    client,
                    bufs,
                    ctx,
                    facts.request_id,
                    facts.received,
                    status,
                    e.message,
                )
                .await;
            }
            return Phase::Answered(false);
        }
    }
    let mut access = AccessCtx {
        head: &bufs.head,
        buf: &bufs.input[..facts.head_len],
        captures: &bufs.scratch,
        client_ip: facts.client_ip,
        tls: facts.conn.tls,
        identities: &snapshot.identities,
        route: Some(routed.route),
        route_match: Some(routed.matched),
        service: routed.service.map(|i| &snapshot.config.services[i]),
        request_id: facts.request_id,
        state: &mut bufs.plugins,
        step: 0,
    };
    let flow = match gangway_pipeline::run_access(&snapshot.pipeline, chain, &mut access).await {
        // No plugin instance that applies claimed the oversized body: refuse it rather
        // than proxy a body that was only partly read.
        Flow::Continue if bufs.plugins.body_over_limit => {
            Flow::error(413, "Request size limit exceeded")
        }
        flow => flow,
    };
    log::begin(
        client,
        bufs,
        snapshot,
        ChainRef::Route(routed.matched.route),
        facts,
    );
    match flow {
        // run_access has already awaited every wait.
        Flow::Continue | Flow::Await(_) => Phase::Next(()),
        Flow::Respond(response) => Phase::Answered(
            super::plugins::respond(client, bufs, ctx, facts, snapshot, chain, response).await,
        ),
    }
}

/// Forwarding: the request goes to the route's service and its response streams back
/// (through header_filter, and body_filter when a plugin wants the body). A route without
/// an enabled service is Kong's 503.
async fn forward<B: Backend, S: Stream>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    facts: &RequestInfo<'_>,
    snapshot: &Snapshot,
    routed: Routed<'_>,
    ctx: &WorkerCtx<B>,
) -> bool {
    let Some(service) = routed.service.map(|i| &snapshot.services[i]) else {
        return reply::respond_error(
            client,
            bufs,
            facts.head_len,
            ctx,
            facts.request_id,
            facts.received,
            503,
            "no Service found with those values",
            Some((snapshot, routed.chain)),
            &[],
        )
        .await;
    };
    let exchange = Exchange {
        snapshot,
        conn: facts.conn,
        route: routed.route,
        service,
        chain: routed.chain,
        client_ip: facts.client_ip,
        matched: routed.matched,
        request_id: facts.request_id,
        received: facts.received,
        head_len: facts.head_len,
    };
    match exchange::run(client, bufs, exchange, ctx).await {
        Outcome::KeepAlive => true,
        Outcome::Close => false,
    }
}

/// The client's address: the TCP peer, or what `real_ip_header` from a trusted peer says.
fn client_address<B: Backend>(
    conn: &ClientConn,
    bufs: &ConnBuffers,
    head_len: usize,
    ctx: &WorkerCtx<B>,
) -> std::net::IpAddr {
    let buf = &bufs.input[..head_len];
    let proxy_source = conn.proxy_source.map(|s| s.ip());
    match ctx.real_ip.header_name() {
        Some(name) => ctx.real_ip.resolve(
            conn.peer.ip(),
            proxy_source,
            bufs.head
                .headers()
                .iter()
                .filter(|f| gangway_http::headers::name_eq(f.name.get(buf), name.as_bytes()))
                .map(|f| f.value.get(buf)),
        ),
        None => ctx
            .real_ip
            .resolve(conn.peer.ip(), proxy_source, std::iter::empty()),
    }
}

/// True if the request arrived over TLS, or a trusted proxy says the client used https.
fn https_request(conn: &ClientConn, bufs: &ConnBuffers) -> bool {
    conn.tls
        || (conn.trusted
            && bufs
                .head
                .header(&bufs.input, "x-forwarded-proto")
                .is_some_and(|v| v == b"https"))
}

/// A status, Kong's message and the headers that go with it.
type Refusal = (u16, &'static str, &'static [(&'static str, &'static str)]);

/// Starts an answer given before the route's plugins run (Kong's access.before: no route,
/// plain http on an https-only route, HTTP/1.x on a gRPC route): as in Kong, the global
/// plugins filter and log it. Returns their chain.
fn begin_global_answer<'s, S: Stream>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    facts: &RequestInfo<'_>,
    snapshot: &'s Snapshot,
) -> &'s Chain {
    let global = &snapshot.pipeline.global;
    global.resolve_defaults(&mut bufs.plugins.resolved);
    log::begin(client, bufs, snapshot, ChainRef::Global, facts);
    global
}

/// Kong's error for `refusal`, given before the route's plugins run
/// ([`begin_global_answer`]). Returns whether the connection may carry another request.
async fn global_error<B: Backend, S: Stream>(
    client: &Recorded<S>,
    bufs: &mut ConnBuffers,
    facts: &RequestInfo<'_>,
    snapshot: &Snapshot,
    ctx: &WorkerCtx<B>,
    (status, message, extra): Refusal,
) -> bool {
    let global = begin_global_answer(client, bufs, facts, snapshot);
    reply::respond_error(
        client,
        bufs,
        facts.head_len,
        ctx,
        facts.request_id,
        facts.received,
        status,
        message,
        Some((snapshot, global)),
        extra,
    )
    .await
}

/// Kong's refusal of a request on a gRPC route: 426 for a gRPC request that is not HTTP/2
/// (none is here), 415 for one that is not gRPC at all.
fn grpc_mismatch(route: &Route, bufs: &ConnBuffers) -> Option<Refusal> {
    if !route
        .protocols
        .iter()
        .any(|p| matches!(p, Protocol::Grpc | Protocol::Grpcs))
    {
        return None;
    }
    let grpc = bufs
        .head
        .header(&bufs.input, "content-type")
        .is_some_and(|t| t.starts_with(b"application/grpc"));
    Some(if grpc {
        (
            426,
            "Please use HTTP2 protocol",
            &[("Connection", "Upgrade"), ("Upgrade", "HTTP/2")],
        )
    } else {
        (415, "Non-gRPC request matched gRPC route", &[])
    })
}

/// The configured `error_default_type` as a format (validated by the settings loader).
pub fn error_format(default_type: &str) -> ErrorFormat {
    ErrorFormat::from_config(default_type).unwrap_or(ErrorFormat::Plain)
}
