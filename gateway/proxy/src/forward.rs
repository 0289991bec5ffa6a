//! Moving bytes: reads and writes with timeouts, the request body to the upstream, the
//! upstream's response head, and upgrade tunnels.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use super::conn_timer::ConnTimer;
use super::reply::{MSG_502, MSG_504};
use super::session::ConnBuffers;
use crate::snapshot::ServiceTarget;
use gangway_http::{BodyTracker, parse_response};
use gangway_net::Stream;
use tracing::debug;

pub(super) enum Fail {
    Timeout,
    Io(io::Error),
}

impl Fail {
    /// Kong's status and message for an upstream failure.
    pub(super) fn answer(&self) -> (u16, &'static str) {
        match self {
            Fail::Timeout => (504, MSG_504),
            Fail::Io(_) => (502, MSG_502),
        }
    }
}

pub(super) async fn read_with_timeout<S: Stream>(
    timer: &ConnTimer,
    s: &S,
    buf: Vec<u8>,
    limit: Duration,
) -> Result<(usize, Vec<u8>), Fail> {
    match timer.within(limit, s.read(buf)).await {
        Ok((Ok(n), buf)) => Ok((n, buf)),
        Ok((Err(e), _)) => Err(Fail::Io(e)),
        Err(_) => Err(Fail::Timeout),
    }
}

pub(super) async fn write_with_timeout<S: Stream>(
    timer: &ConnTimer,
    s: &S,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    limit: Duration,
) -> Result<Vec<u8>, Fail> {
    write_returning(timer, s, buf, range, limit)
        .await
        .map_err(|(fail, _)| fail)
}

/// [`write_with_timeout`] that hands the buffer back when the write failed (not when it
/// timed out: the write still owned it), so the request can go to another target.
pub(super) async fn write_returning<S: Stream>(
    timer: &ConnTimer,
    s: &S,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    limit: Duration,
) -> Result<Vec<u8>, (Fail, Option<Vec<u8>>)> {
    match timer.within(limit, s.write_all(buf, range)).await {
        Ok((Ok(()), buf)) => Ok(buf),
        Ok((Err(e), buf)) => Err((Fail::Io(e), Some(buf))),
        Err(_) => Err((Fail::Timeout, None)),
    }
}

/// Advances the response tracker; with `dechunk`, the decoded payload is appended to `out`.
pub(super) fn advance_response(
    tracker: &mut BodyTracker,
    data: &[u8],
    dechunk: bool,
    out: &mut Vec<u8>,
) -> Result<gangway_http::Progress, gangway_http::HttpError> {
    if dechunk {
        tracker.advance_with(data, |payload| out.extend_from_slice(payload))
    } else {
        tracker.advance(data)
    }
}

pub(super) enum BodyFail {
    /// The client misbehaved or went away; `Some` status means it should be told.
    Client(Option<u16>, &'static str),
    /// Writing to the upstream failed.
    Upstream(Fail),
}

/// Streams the rest of the request body from the client to the upstream; returns the bytes
/// read for it. Bytes after the body (a pipelined request) stay in `bufs.input`.
pub(super) async fn stream_request_body<S: Stream, U: Stream>(
    timer: &ConnTimer,
    client: &S,
    upstream: &U,
    bufs: &mut ConnBuffers,
    body: &mut BodyTracker,
    service: &ServiceTarget,
    body_timeout_ms: u64,
) -> Result<u64, BodyFail> {
    let timeout = Duration::from_millis(body_timeout_ms);
    // The bytes read from the client, framing and trailers included (nginx's
    // `$request_length` counts them).
    let mut read = 0;
    loop {
        bufs.input.clear();
        let buf = std::mem::take(&mut bufs.input);
        let buf = match read_with_timeout(timer, client, buf, timeout).await {
            Ok((0, _)) => return Err(BodyFail::Client(None, "")),
            Ok((_, buf)) => buf,
            Err(Fail::Timeout) => return Err(BodyFail::Client(Some(408), "Request timeout")),
            Err(Fail::Io(_)) => return Err(BodyFail::Client(None, "")),
        };
        bufs.input = buf;
        let p = match body.advance(&bufs.input) {
            Ok(p) => p,
            Err(e) => return Err(BodyFail::Client(Some(e.status()), e.message())),
        };
        let mut consumed = p.consumed;
        read += consumed as u64;
        // A client's chunked trailers are dropped, as nginx drops them.
        if let Some((start, end)) = p.trailer {
            bufs.input.drain(start..end);
            consumed -= end - start;
        }
        let buf = std::mem::take(&mut bufs.input);
        let buf = write_with_timeout(timer, upstream, buf, 0..consumed, service.write_timeout)
            .await
            .map_err(BodyFail::Upstream)?;
        bufs.input = buf;
        if p.done {
            bufs.input.drain(..consumed);
            return Ok(read);
        }
    }
}

pub(super) enum HeadFail {
    Timeout,
    /// EOF or reset before any byte of a response.
    ClosedEarly,
    Io,
    Invalid,
}

/// Reads the upstream's response head into `bufs.upstream`/`bufs.resp`, skipping interim
/// 1xx responses (as nginx 1.22 does). Returns the head length.
pub(super) async fn read_response_head<U: Stream>(
    timer: &ConnTimer,
    upstream: &U,
    bufs: &mut ConnBuffers,
    is_head: bool,
    timeout: Duration,
) -> Result<usize, HeadFail> {
    bufs.upstream.clear();
    let limits = gangway_http::Limits::default();
    loop {
        if !bufs.upstream.is_empty() {
            match parse_response(&bufs.upstream, &limits, is_head, &mut bufs.resp) {
                Ok(Some(n)) if bufs.resp.is_interim() => {
                    bufs.upstream.drain(..n);
                    continue;
                }
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(_) => return Err(HeadFail::Invalid),
            }
            if bufs.upstream.len() >= limits.max_header_bytes {
                return Err(HeadFail::Invalid);
            }
        }
        if bufs.upstream.capacity() - bufs.upstream.len() < 1024 {
            bufs.upstream.reserve(16 * 1024);
        }
        let was_empty = bufs.upstream.is_empty();
        let buf = std::mem::take(&mut bufs.upstream);
        match read_with_timeout(timer, upstream, buf, timeout).await {
            Ok((0, buf)) => {
                bufs.upstream = buf;
                return Err(if was_empty {
                    HeadFail::ClosedEarly
                } else {
                    HeadFail::Invalid
                });
            }
            Ok((_, buf)) => bufs.upstream = buf,
            Err(Fail::Timeout) => {
                bufs.upstream = Vec::with_capacity(16 * 1024);
                return Err(HeadFail::Timeout);
            }
            Err(Fail::Io(e)) => {
                bufs.upstream = Vec::with_capacity(16 * 1024);
                let reset = matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                );
                return Err(if was_empty && reset {
                    HeadFail::ClosedEarly
                } else {
                    HeadFail::Io
                });
            }
        }
    }
}

/// Copies bytes both ways after a `101 Switching Protocols` until either side closes, or
/// until nothing has passed either way for `idle` (the service's `read_timeout`, as nginx
/// bounds an upgraded connection: a WebSocket must ping within it).
pub(super) async fn tunnel<S: Stream, U: Stream>(
    client: &S,
    upstream: &U,
    bufs: &mut ConnBuffers,
    idle: Duration,
) {
    // Bytes the client sent after its upgrade request go up first.
    let early = std::mem::take(&mut bufs.input);
    let early_len = early.len();
    if early_len > 0 && upstream.write_all(early, 0..early_len).await.0.is_err() {
        return;
    }
    let last_seen = Cell::new(tokio::time::Instant::now());
    let copies = async {
        tokio::join!(
            copy_until_closed(client, upstream, &last_seen),
            copy_until_closed(upstream, client, &last_seen)
        )
    };
    let quiet = async {
        loop {
            let due = last_seen.get() + idle;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    };
    tokio::select! {
        _ = copies => {}
        () = quiet => debug!(?idle, "upgraded connection idle past read_timeout; closed"),
    }
}

/// Copies bytes from `from` to `to` until `from` closes or either side fails, then sends FIN
/// on `to`. Notes in `last_seen` when bytes last came.
async fn copy_until_closed<A: Stream, B: Stream>(
    from: &A,
    to: &B,
    last_seen: &Cell<tokio::time::Instant>,
) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = from.read(buf).await;
        match res {
            Ok(n) if n > 0 => {
                last_seen.set(tokio::time::Instant::now());
                let (res, b) = to.write_all(b, 0..n).await;
                if res.is_err() {
                    break;
                }
                buf = b;
            }
            _ => break,
        }
    }
    let _ = to.shutdown().await;
}
