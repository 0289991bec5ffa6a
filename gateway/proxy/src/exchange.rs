//! One request/response exchange with an upstream: connect (or reuse), send the head and
//! stream the body, read the response head, stream the response body back, and return the
//! connection to the pool when it is clean.
//!
//! Retries follow nginx's `proxy_next_upstream error timeout`, which Kong keeps, up to
//! `service.retries` times, each on the next target: a failed connect always; a failed
//! write, or a failure or timeout before any byte of the response head, only when the whole
//! request is still in memory and its method is idempotent (it may have reached the
//! upstream). A reused keep-alive connection that the upstream had already closed is
//! replaced at no cost under the same condition.

use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::WorkerCtx;
use super::buffered::{self, BufferFail, BufferedResponse};
use super::forward::{
    BodyFail, Fail, HeadFail, advance_response, read_response_head, read_with_timeout,
    stream_request_body, tunnel, write_returning,
};
use super::hash_facts::RequestFacts;
use super::headers::{self, ClientHead, DebugIds, UpstreamHead};
use super::log::Source;
use super::reply::{MSG_502, MSG_503, MSG_504, Reply};
use super::session::ConnBuffers;
use crate::Snapshot;
use crate::compile::host_header;
use crate::snapshot::ServiceTarget;
use crate::upstream::balancer::{Balancer, RequestHash};
use crate::upstream::dns;
use crate::upstream::health::Observation;
use crate::upstream::pool::{PoolKey, TlsSettings};
use crate::upstream::stream::UpstreamStream;
use gangway_config::model::Route;
use gangway_config::settings::{HeaderToken, Instrumentations};
use gangway_http::{BodyFraming, BodyTracker, Version};
use gangway_net::idle_probe::{self, IdleState};
use gangway_net::{Backend, Stream, tls};
use gangway_pipeline::trace::SpanName;
use gangway_pipeline::{BodyWanted, Chain, ResponseCtx};
use gangway_router::{RouteMatch, RouterFlavor};

pub use super::headers::PRODUCT as SERVER;

/// The buffer a response body longer than this is relayed through (the usual one is 16 KiB).
const RELAY_BUF: usize = 64 * 1024;

/// Whether the client connection can carry another request.
pub enum Outcome {
    /// Yes.
    KeepAlive,
    /// No: close it.
    Close,
}

/// The routed request.
pub struct Exchange<'a> {
    /// The snapshot the request loaded.
    pub snapshot: &'a Snapshot,
    /// The client connection.
    pub conn: &'a super::session::ClientConn,
    /// The matched route.
    pub route: &'a Route,
    /// Its service.
    pub service: &'a ServiceTarget,
    /// The route's plugin chain (access already ran).
    pub chain: &'a Chain,
    /// The client address after `real_ip` resolution.
    pub client_ip: std::net::IpAddr,
    /// The router's match.
    pub matched: RouteMatch,
    /// This request's id.
    pub request_id: &'a [u8; 32],
    /// When the head was complete.
    pub received: Instant,
    /// Length of the head in `bufs.input`.
    pub head_len: usize,
}

struct Upstream<S> {
    stream: S,
    requests: u64,
    reused: bool,
}

/// The TLS server name for a Host header value: without its port (`tls::server_name` takes
/// an IPv6 literal's brackets off when connecting).
fn tls_name(host: &[u8]) -> String {
    String::from_utf8_lossy(headers::host_without_port(host)).into_owned()
}

/// A request's remaining tries (Kong's `retries`) and the targets that failed it.
struct Tries<'b> {
    left: u16,
    balancer: Option<&'b Balancer>,
    hash: Option<u64>,
    failed: Vec<usize>,
    /// The Host header follows the target (its name or `host_header`, and its port), unless
    /// the route preserves the client's.
    rename_host: bool,
    tls: bool,
}

impl Tries<'_> {
    /// Takes a try and moves it off the target that failed (Kong's balancer retry), starting
    /// over once every target failed, and renames the target in the Host header at
    /// `host_at` in `output`. `None` when no try is left, `Some(false)` when no target is:
    /// Kong's 503. A service without an upstream entity retries its one host.
    fn next(
        &mut self,
        target: &mut Option<usize>,
        output: &mut Vec<u8>,
        host_at: &mut std::ops::Range<usize>,
    ) -> Option<bool> {
        self.left = self.left.checked_sub(1)?;
        let (Some(b), Some(failed)) = (self.balancer, *target) else {
            return Some(true);
        };
        self.failed.push(failed);
        *target = b.pick(self.hash, &self.failed).or_else(|| {
            self.failed.clear();
            b.pick(self.hash, &self.failed)
        });
        let Some(i) = *target else {
            return Some(false);
        };
        if self.rename_host {
            let name = b.host_header.as_deref().unwrap_or(&b.targets[i].host);
            let name = host_header(name, b.targets[i].port, self.tls);
            output.splice(host_at.clone(), name.bytes());
            *host_at = host_at.start..host_at.start + name.len();
        }
        Some(true)
    }
}

async fn connect<B: Backend>(
    ctx: &WorkerCtx<B>,
    key: &PoolKey,
    tls_config: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Upstream<UpstreamStream<B::Stream>>, Fail> {
    loop {
        let Some(idle) = ctx.pool.borrow_mut().take(key) else {
            break;
        };
        let state = if idle.stream.holds_input() {
            IdleState::Unsolicited
        } else {
            idle.stream
                .socket_fd()
                .map_or(IdleState::Quiet, idle_probe::probe)
        };
        if state == IdleState::Quiet {
            return Ok(Upstream {
                stream: idle.stream,
                requests: idle.requests,
                reused: true,
            });
        }
        debug!(?state, addr = %key.addr, "idle upstream connection not reused");
    }
    let open = async {
        let tcp = B::connect(key.addr).await?;
        match (tls_config, &key.tls_name) {
            (Some(config), Some(name)) => {
                let name = tls::server_name(name)?;
                Ok(UpstreamStream::Tls(Box::new(
                    tls::connect(tcp, config.clone(), name).await?,
                )))
            }
            _ => Ok(UpstreamStream::Plain(tcp)),
        }
    };
    match tokio::time::timeout(timeout, open).await {
        Ok(Ok(stream)) => Ok(Upstream {
            stream,
            requests: 0,
            reused: false,
        }),
        Ok(Err(e)) => Err(Fail::Io(e)),
        Err(_) => Err(Fail::Timeout),
    }
}

/// Runs the exchange and writes the response (or a Kong error) to the client.
pub async fn run<B: Backend, S: Stream>(
    client: &S,
    bufs: &mut ConnBuffers,
    ex: Exchange<'_>,
    ctx: &WorkerCtx<B>,
) -> Outcome {
    let settings = &ctx.gateway.settings;
    let reply = Reply {
        ctx,
        request_id: ex.request_id,
        received: ex.received,
        snapshot: ex.snapshot,
        chain: ex.chain,
        filtered: std::cell::Cell::new(false),
    };
    let service = ex.service;
    let head_len = ex.head_len;
    let buffered = bufs.plugins.body.as_ref().map(|b| b.len() as u64);
    let framing = match buffered {
        Some(len) => BodyFraming::Length(len),
        None => bufs.head.framing(),
    };
    let max_body = settings.client_max_body_size;

    // The part of the body that already arrived with the head.
    let tracked = if buffered.is_some() {
        BodyFraming::None
    } else {
        framing
    };
    let mut body = match BodyTracker::new(tracked).with_max_size(max_body) {
        Ok(t) => t,
        Err(e) => {
            let status = e.status();
            reply.error(client, bufs, status, e.message(), true).await;
            return Outcome::Close;
        }
    };
    let first = match body.advance(&bufs.input[head_len..]) {
        Ok(p) => p,
        Err(e) => {
            reply
                .error(client, bufs, e.status(), e.message(), true)
                .await;
            return Outcome::Close;
        }
    };
    let body_done = first.done;
    let body_in_buf = first.consumed;
    // A chunked body's size is known once it is read; this one came with the head.
    if body_done && bufs.txn.active && matches!(tracked, BodyFraming::Chunked) {
        bufs.txn
            .count_chunked_body(head_len as u64 + body_in_buf as u64);
    }

    if !body_done && buffered.is_none() && bufs.head.expect_continue() {
        let mut out = std::mem::take(&mut bufs.output);
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let len = out.len();
        let (res, out) = client.write_all(out, 0..len).await;
        bufs.output = out;
        if res.is_err() {
            return Outcome::Close;
        }
    }

    // Build the upstream head (and the body bytes we have) in the output buffer.
    let mut path = std::mem::take(&mut bufs.upstream_path);
    path.clear();
    match &bufs.plugins.path {
        Some(p) => path.extend_from_slice(p),
        None => gangway_router::upstream_path(
            service.path.as_deref(),
            ex.route.strip_path,
            ex.route.path_handling,
            RouterFlavor::TraditionalCompatible,
            bufs.scratch.normalized_path(),
            ex.matched.matched_len,
            &mut path,
        ),
    }
    let target = bufs.head.target(&bufs.input);
    let raw_query = target.iter().position(|&b| b == b'?').map(|i| &target[i..]);
    let edited_query;
    let query = if bufs.plugins.query.is_untouched() {
        raw_query
    } else {
        let mut q = Vec::new();
        bufs.plugins.query.write(raw_query.map(|q| &q[1..]), &mut q);
        edited_query = q;
        (!edited_query.is_empty()).then_some(&edited_query[..])
    };
    let stripped = ex
        .matched
        .matched_path(&bufs.scratch)
        .filter(|p| ex.route.strip_path && *p != "/")
        .map(str::as_bytes);
    // Where it goes: the service's host, or a target of the upstream entity it names.
    let balancer: Option<&Balancer> = service.balancer.map(|i| &*ex.snapshot.balancers[i]);
    let placed = balancer.map_or_else(RequestHash::default, |b| {
        let identities = &ex.snapshot.identities;
        let consumer = (bufs.plugins.consumer.map(|c| identities.consumer(c).id))
            .or_else(|| bufs.plugins.credential.map(|c| identities.credential(c).id));
        b.request_hash(&RequestFacts {
            head: &bufs.head,
            buf: &bufs.input,
            scratch: &bufs.scratch,
            peer: std::net::SocketAddr::new(ex.client_ip, ex.conn.peer.port()),
            consumer,
        })
    });
    let hash = placed.hash;
    let mut target = match balancer {
        Some(b) => match b.pick(hash, &[]) {
            Some(i) => Some(i),
            None => {
                warn!(upstream = %b.name, "failure to get a peer from the ring-balancer");
                return reply.no_target(client, bufs).await;
            }
        },
        None => None,
    };
    let target_host;
    let host: &[u8] = if ex.route.preserve_host {
        bufs.head
            .host_header(&bufs.input)
            .unwrap_or(service.host_header.as_bytes())
    } else if let (Some(b), Some(i)) = (balancer, target) {
        // Kong's `set_host_header`: the upstream's host_header, else the target's name, with
        // the target's port unless it is the scheme's default.
        let name = b.host_header.as_deref().unwrap_or(&b.targets[i].host);
        target_host = host_header(name, b.targets[i].port, service.tls);
        target_host.as_bytes()
    } else {
        service.host_header.as_bytes()
    };
    let upgrade = bufs.head.is_upgrade();
    let up = UpstreamHead {
        method: bufs
            .plugins
            .method
            .as_deref()
            .map_or(bufs.head.method(&bufs.input), str::as_bytes),
        edits: &bufs.plugins.headers,
        path: &path,
        query,
        host,
        client: ex.conn.peer,
        real_ip: ex.client_ip,
        trusted: ex.conn.trusted,
        scheme: if ex.conn.tls { "https" } else { "http" },
        local_port: ex.conn.local_port,
        stripped_prefix: stripped,
        request_id: settings
            .headers_upstream
            .contains(HeaderToken::RequestId)
            .then_some(&ex.request_id[..]),
        framing,
        upgrade,
    };
    bufs.output.clear();
    let mut host_at =
        headers::write_upstream_request(&mut bufs.output, &bufs.head, &bufs.input, &up);
    if bufs.txn.active {
        let uri = &mut bufs.txn.upstream_uri;
        uri.clear();
        uri.push_str(&String::from_utf8_lossy(&path));
        if let Some(q) = query {
            uri.push_str(&String::from_utf8_lossy(q));
        }
    }
    bufs.upstream_path = path;
    // A client's chunked trailers are dropped, as nginx drops them.
    let body_bytes = &bufs.input[head_len..head_len + body_in_buf];
    match first.trailer {
        Some((start, end)) => {
            bufs.output.extend_from_slice(&body_bytes[..start]);
            bufs.output.extend_from_slice(&body_bytes[end..]);
        }
        None => bufs.output.extend_from_slice(body_bytes),
    }
    if let Some(b) = &bufs.plugins.body {
        bufs.output.extend_from_slice(b);
    }
    let is_head = bufs.head.method(&bufs.input) == b"HEAD";
    // A plugin may change the method (request-transformer `http_method`): the upstream's
    // framing follows the method it received. An upstream body a HEAD client will not get
    // leaves the connection unusable.
    let upstream_head = bufs
        .plugins
        .method
        .as_deref()
        .map_or(is_head, |m| m == "HEAD");
    // The method the upstream receives decides whether a replay is safe: a GET that a
    // plugin turned into a POST is not sent twice.
    let method_idempotent = matches!(
        bufs.plugins
            .method
            .as_deref()
            .map_or(bufs.head.method(&bufs.input), str::as_bytes),
        b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
    );
    let keep_alive_requested = bufs.head.keep_alive();
    let debug = settings.allow_debug_header
        && bufs
            .head
            .header(&bufs.input, "kong-debug")
            .is_some_and(|v| v == b"1");
    let http10 = bufs.head.version() == Version::Http10;
    // Everything of this request is now in `output` or still to come from the client.
    let consumed_from_input = head_len + body_in_buf;
    if body_done {
        bufs.input.drain(..consumed_from_input);
    } else {
        bufs.input.clear();
    }

    let replayable = body_done;
    let sent_at;
    let observe = |target: Option<usize>, ip: Option<IpAddr>, what: Observation| {
        if let (Some(b), Some(i), Some(ip)) = (balancer, target, ip) {
            if b.targets[i].health.observe(ip, &b.passive, what) {
                warn!(upstream = %b.name, target = %format!("{}:{}", b.targets[i].host, b.targets[i].port), address = %ip, "target address marked unhealthy");
            }
        }
    };
    let mut try_count = 0u16;
    // The Host header names the target unless the route preserves it or the upstream sets
    // one: a retry on another target renames it.
    let mut tries = Tries {
        left: service.retries,
        balancer,
        hash,
        failed: Vec::new(),
        rename_host: balancer.is_some() && !ex.route.preserve_host,
        tls: service.tls,
    };
    // Held to the end of the exchange: least-connections counts the request until then.
    let mut _in_flight = None;
    if bufs.txn.active {
        let now = Instant::now();
        bufs.txn.upstream_started = Some(now);
        bufs.txn.proxy_latency = Some(now.duration_since(ex.received));
    }
    let (upstream, resp_len, key) = loop {
        bufs.txn.begin_try();
        let mut balancer_span = None;
        let picked = balancer.zip(target);
        _in_flight = picked.and_then(|(b, i)| b.begin(i));
        let try_started = picked
            .is_some_and(|(b, _)| b.weighs_latency())
            .then(Instant::now);
        let (host, port) = match (balancer, target) {
            (Some(b), Some(i)) => (b.targets[i].host.as_str(), b.targets[i].port),
            _ => (service.host.as_str(), service.port),
        };
        let mut unresolved = false;
        let resolved = match (balancer, target) {
            (Some(b), Some(i)) => {
                let health = &b.targets[i].health;
                dns::resolve_healthy(&ctx.dns, host, port, |ip| health.is_address_healthy(ip)).await
            }
            _ => dns::resolve(&ctx.dns, host, port).await.map(Some),
        };
        bufs.txn.try_balanced();
        let mut tried: Option<SocketAddr> = None;
        let attempt = match resolved {
            Ok(None) => {
                warn!(%host, "every address of the target is unhealthy");
                unresolved = true;
                Err(Fail::Io(std::io::Error::other("no healthy address")))
            }
            Ok(Some(addr)) => {
                tried = Some(addr);
                try_count = try_count.saturating_add(1);
                let trace = &mut bufs.plugins.trace;
                balancer_span = trace.open_balancer(try_count, addr);
                let connect_span =
                    trace.open(Instrumentations::BALANCER, SpanName::UpstreamConnect);
                // nginx's `proxy_ssl_name $upstream_host`, Kong's: the name in the Host
                // header the upstream gets (the target's, `host_header`, or the client's
                // with `preserve_host`), without its port.
                let tls_name =
                    (service.tls_client.as_ref()).map(|_| tls_name(&bufs.output[host_at.clone()]));
                let tls_config = service.tls_client.clone().map(TlsSettings);
                let key = PoolKey {
                    addr,
                    tls_name,
                    tls_config,
                };
                let connected = connect(
                    ctx,
                    &key,
                    service.tls_client.as_ref(),
                    service.connect_timeout,
                )
                .await;
                match &connected {
                    // A pooled connection cost no connect.
                    Ok(up) if up.reused => bufs.plugins.trace.discard(connect_span),
                    _ => bufs.plugins.trace.close(connect_span),
                }
                connected.map(|up| (up, key))
            }
            Err(e) => {
                warn!(%host, error = %e, "name resolution failed");
                unresolved = true;
                Err(Fail::Io(e))
            }
        };
        let (mut up, key) = match attempt {
            Ok(pair) => pair,
            Err(fail) => {
                let status = if matches!(fail, Fail::Timeout) {
                    504
                } else {
                    502
                };
                bufs.plugins.trace.fail_balancer(balancer_span, status);
                if let Some(addr) = tried {
                    note_failed_try(bufs, addr, status);
                }
                observe(
                    target,
                    tried.map(|a| a.ip()),
                    if matches!(fail, Fail::Timeout) {
                        Observation::Timeout
                    } else {
                        Observation::TcpFailure
                    },
                );
                match tries.next(&mut target, &mut bufs.output, &mut host_at) {
                    Some(true) => continue,
                    Some(false) => return reply.no_target(client, bufs).await,
                    None => {}
                }
                // As Kong: a name that does not resolve leaves no peer to try (503).
                let (status, msg) = if unresolved {
                    (503, MSG_503)
                } else {
                    fail.answer()
                };
                debug!(%host, port, status, "upstream connect failed");
                reply.error(client, bufs, status, msg, true).await;
                return Outcome::Close;
            }
        };
        let out = std::mem::take(&mut bufs.output);
        let len = out.len();
        let attempt_at = Instant::now();
        let response_span = bufs
            .plugins
            .trace
            .open(Instrumentations::BALANCER, SpanName::UpstreamResponse);
        let written = write_returning(
            &ex.conn.timer,
            &up.stream,
            out,
            0..len,
            service.write_timeout,
        )
        .await;
        match written {
            Ok(out) => bufs.output = out,
            Err((fail, out)) => {
                let (status, msg) = fail.answer();
                bufs.plugins.trace.fail_balancer(balancer_span, status);
                // The request is still whole in `out` unless the write timed out.
                let replay = out.filter(|_| replayable && method_idempotent);
                let can_replay = replay.is_some();
                if let Some(out) = replay {
                    bufs.output = out;
                }
                // A pooled connection the upstream had reset is replaced at no cost.
                if can_replay && up.reused {
                    continue;
                }
                let what = match fail {
                    Fail::Timeout => Observation::Timeout,
                    Fail::Io(_) => Observation::TcpFailure,
                };
                note_failed_try(bufs, key.addr, status);
                observe(target, Some(key.addr.ip()), what);
                if can_replay {
                    match tries.next(&mut target, &mut bufs.output, &mut host_at) {
                        Some(true) => continue,
                        Some(false) => return reply.no_target(client, bufs).await,
                        None => {}
                    }
                }
                reply.error(client, bufs, status, msg, true).await;
                return Outcome::Close;
            }
        }
        if !body_done {
            match stream_request_body(
                &ex.conn.timer,
                client,
                &up.stream,
                bufs,
                &mut body,
                service,
                settings.client_body_timeout_ms,
            )
            .await
            {
                Ok(read) => {
                    // A chunked body's size is known only now.
                    if bufs.txn.active && matches!(tracked, BodyFraming::Chunked) {
                        bufs.txn
                            .count_chunked_body(head_len as u64 + body_in_buf as u64 + read);
                    }
                }
                Err(BodyFail::Client(status, msg)) => {
                    if let Some(status) = status {
                        reply.error(client, bufs, status, msg, true).await;
                    }
                    return Outcome::Close;
                }
                Err(BodyFail::Upstream(fail)) => {
                    let (status, msg) = fail.answer();
                    reply.error(client, bufs, status, msg, true).await;
                    return Outcome::Close;
                }
            }
        }
        let head_read = read_response_head(
            &ex.conn.timer,
            &up.stream,
            bufs,
            upstream_head,
            service.read_timeout,
        )
        .await;
        bufs.plugins.trace.close(response_span);
        match head_read {
            Ok(n) => {
                up.requests += 1;
                sent_at = attempt_at;
                if let (Some((b, i)), Some(started)) = (picked, try_started) {
                    b.observe_latency(i, started.elapsed());
                }
                observe(
                    target,
                    Some(key.addr.ip()),
                    Observation::Status(bufs.resp.status()),
                );
                break (up, n, key);
            }
            Err(HeadFail::ClosedEarly) if up.reused && replayable && method_idempotent => {
                bufs.plugins.trace.fail_balancer(balancer_span, 502);
                debug!(%host, port, "reused upstream connection was closed; retrying on a new one");
                continue;
            }
            Err(fail) => {
                let (status, msg) = match fail {
                    HeadFail::Timeout => (504, MSG_504),
                    _ => (502, MSG_502),
                };
                bufs.plugins.trace.fail_balancer(balancer_span, status);
                note_failed_try(bufs, key.addr, status);
                observe(
                    target,
                    Some(key.addr.ip()),
                    if status == 504 {
                        Observation::Timeout
                    } else {
                        Observation::TcpFailure
                    },
                );
                // nginx's `proxy_next_upstream error timeout`, which Kong keeps: a failure
                // before any response byte goes to the next try, unless the request was not
                // idempotent (it reached the upstream) or is no longer in memory. A response
                // that is not HTTP is not retried.
                if !matches!(fail, HeadFail::Invalid) && replayable && method_idempotent {
                    match tries.next(&mut target, &mut bufs.output, &mut host_at) {
                        Some(true) => continue,
                        Some(false) => return reply.no_target(client, bufs).await,
                        None => {}
                    }
                }
                reply.error(client, bufs, status, msg, true).await;
                return Outcome::Close;
            }
        }
    };
    let upstream_latency = sent_at.elapsed();
    let proxy_latency = sent_at.duration_since(ex.received);
    bufs.txn.source = Source::Service;
    if bufs.txn.active {
        let txn = &mut bufs.txn;
        txn.proxy_latency = Some(proxy_latency);
        txn.upstream_latency = Some(upstream_latency);
        txn.end_try(key.addr, bufs.resp.status());
    }

    // Response head to the client, then the body.
    let resp_framing = bufs.resp.framing();
    let switching = bufs.resp.status() == 101 && upgrade;
    // HTTP/1.0 clients cannot read chunked framing: decode it and end the body by closing.
    let dechunk = http10 && !is_head && matches!(resp_framing, BodyFraming::Chunked);
    let close = !keep_alive_requested
        || dechunk
        || ctx.last_on_connection(bufs)
        || matches!(resp_framing, BodyFraming::UntilClose)
        || (bufs.resp.status() == 101 && !upgrade);
    let tokens = settings.headers;
    let mut client_head = ClientHead {
        via: tokens.contains(HeaderToken::Via),
        upstream_latency: tokens
            .contains(HeaderToken::UpstreamLatency)
            .then_some(upstream_latency),
        proxy_latency: tokens
            .contains(HeaderToken::ProxyLatency)
            .then_some(proxy_latency),
        upstream_status: tokens.contains(HeaderToken::UpstreamStatus),
        request_id: tokens
            .contains(HeaderToken::RequestId)
            .then_some(&ex.request_id[..]),
        close,
        http10_keep_alive: http10 && keep_alive_requested,
        dechunked: dechunk,
        body_length: None,
        hash_cookie: placed.set_cookie.as_deref(),
        debug: debug.then_some(DebugIds {
            route_id: &ex.route.id,
            route_name: ex.route.name.as_deref(),
            service_id: &service.id,
            service_name: service.name.as_deref(),
        }),
    };
    if ex.chain.filters_headers {
        let mut filter = ResponseCtx {
            status: bufs.resp.status(),
            upstream: Some((&bufs.resp, &bufs.upstream[..resp_len])),
            request: None,
            state: &mut bufs.plugins,
            step: 0,
        };
        gangway_pipeline::run_header_filter(&ex.snapshot.pipeline, ex.chain, &mut filter);
        reply.filtered.set(true);
    }
    if ex.chain.filters_body && !is_head && !switching && resp_framing.has_body() {
        let job = BufferedResponse {
            resp_len,
            framing: resp_framing,
            read_timeout: service.read_timeout,
            timer: &ex.conn.timer,
            snapshot: ex.snapshot,
            chain: ex.chain,
        };
        let wanted = job.wanted(bufs);
        if wanted != BodyWanted::No {
            let sent = match buffered::respond(
                client,
                &upstream.stream,
                bufs,
                &mut client_head,
                job,
                wanted,
            )
            .await
            {
                Ok(sent) => sent,
                Err(fail) => {
                    let (status, msg) = match fail {
                        BufferFail::Timeout => (504, MSG_504),
                        BufferFail::Invalid => (502, MSG_502),
                    };
                    reply.error(client, bufs, status, msg, true).await;
                    return Outcome::Close;
                }
            };
            if sent.reusable && bufs.resp.keep_alive() {
                ctx.pool
                    .borrow_mut()
                    .put(key, upstream.stream, upstream.requests);
            }
            return if close || sent.close {
                Outcome::Close
            } else {
                Outcome::KeepAlive
            };
        }
    }
    bufs.output.clear();
    headers::write_client_response(
        &mut bufs.output,
        &bufs.resp,
        &bufs.upstream,
        &client_head,
        &bufs.plugins.response_headers,
    );
    let mut resp_body = BodyTracker::new(if is_head {
        BodyFraming::None
    } else {
        resp_framing
    });
    let progress = match advance_response(
        &mut resp_body,
        &bufs.upstream[resp_len..],
        dechunk,
        &mut bufs.output,
    ) {
        Ok(p) => p,
        Err(_) => {
            reply.error(client, bufs, 502, MSG_502, true).await;
            return Outcome::Close;
        }
    };
    if !dechunk {
        bufs.output
            .extend_from_slice(&bufs.upstream[resp_len..resp_len + progress.consumed]);
    }
    let leftover = bufs.upstream.len() > resp_len + progress.consumed;
    let out = std::mem::take(&mut bufs.output);
    let len = out.len();
    let (res, out) = client.write_all(out, 0..len).await;
    bufs.output = out;
    if res.is_err() {
        return Outcome::Close;
    }
    if switching {
        // Bytes the upstream sent right after its 101 belong to the new protocol.
        let early = std::mem::take(&mut bufs.upstream);
        let early_len = early.len();
        if client
            .write_all(early, resp_len..early_len)
            .await
            .0
            .is_err()
        {
            return Outcome::Close;
        }
        tunnel(client, &upstream.stream, bufs, service.read_timeout).await;
        return Outcome::Close;
    }
    let mut done = progress.done;
    let mut clean = !leftover;
    // A large body moves in fewer, larger reads and writes: each one is a ring operation (or a
    // syscall) whatever its size. The buffer pool shrinks the buffer back when the request
    // is done, so an idle connection does not keep it.
    if let BodyFraming::Length(n) = resp_framing
        && !done
        && n > RELAY_BUF as u64
        && bufs.upstream.capacity() < RELAY_BUF
    {
        bufs.upstream.clear();
        bufs.upstream.reserve_exact(RELAY_BUF);
    }
    while !done {
        bufs.upstream.clear();
        let buf = std::mem::take(&mut bufs.upstream);
        match read_with_timeout(&ex.conn.timer, &upstream.stream, buf, service.read_timeout).await {
            Ok((0, buf)) => {
                bufs.upstream = buf;
                if matches!(resp_framing, BodyFraming::UntilClose) {
                    done = true;
                    clean = false;
                } else {
                    // Truncated response: the client sees the connection close.
                    return Outcome::Close;
                }
            }
            Ok((_, buf)) => {
                bufs.upstream = buf;
                bufs.output.clear();
                let p = match advance_response(
                    &mut resp_body,
                    &bufs.upstream,
                    dechunk,
                    &mut bufs.output,
                ) {
                    Ok(p) => p,
                    Err(_) => return Outcome::Close,
                };
                done = p.done;
                if p.consumed < bufs.upstream.len() {
                    clean = false;
                }
                // Raw bytes are forwarded as they are; decoded ones were gathered in `output`.
                let (source, len) = if dechunk {
                    let len = bufs.output.len();
                    (&mut bufs.output, len)
                } else {
                    (&mut bufs.upstream, p.consumed)
                };
                let buf = std::mem::take(source);
                let (res, buf) = client.write_all(buf, 0..len).await;
                *source = buf;
                if res.is_err() {
                    return Outcome::Close;
                }
            }
            Err(_) => {
                bufs.upstream = Vec::with_capacity(16 * 1024);
                return Outcome::Close;
            }
        }
    }
    if clean
        && is_head == upstream_head
        && bufs.resp.keep_alive()
        && !matches!(resp_framing, BodyFraming::UntilClose)
    {
        ctx.pool
            .borrow_mut()
            .put(key, upstream.stream, upstream.requests);
    }
    if bufs.upstream.capacity() == 0 {
        bufs.upstream = Vec::with_capacity(16 * 1024);
    }
    if close {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}

/// Notes, for the log phase, a try that got no response: Kong's `tries` entry and nginx's
/// `$upstream_status` for it.
fn note_failed_try(bufs: &mut ConnBuffers, addr: SocketAddr, status: u16) {
    bufs.txn.end_try(addr, status);
}
