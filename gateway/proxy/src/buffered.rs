//! The buffered response path, taken only when a plugin's `wants_body` asked for this
//! response (response-transformer on a JSON body, proxy-cache storing it): read the whole
//! upstream body (chunked framing decoded), run body_filter, then send the head with the new
//! `Content-Length` and the body. Everything else streams through `exchange.rs` untouched,
//! and so does a body that outgrows what every plugin that asked wants of it
//! ([`BodyWanted::UpTo`]).

use std::time::Duration;

use super::conn_timer::ConnTimer;
use super::forward::{Fail, read_with_timeout};
use super::headers::{self, ClientHead};
use super::session::ConnBuffers;
use crate::Snapshot;
use gangway_http::{BodyFraming, BodyTracker, HttpError};
use gangway_net::Stream;
use gangway_pipeline::{BodyWanted, Chain, ResponseCtx};

/// The largest upstream body gangway buffers for a body filter that must see the whole body
/// ([`BodyWanted::Whole`], 64 MiB). A larger body fails the request with 502 rather than
/// growing without bound.
pub const MAX_BUFFERED_BODY: u64 = 64 * 1024 * 1024;

/// Why the body could not be buffered; nothing was sent to the client yet.
pub(super) enum BufferFail {
    /// The upstream timed out.
    Timeout,
    /// The upstream failed, cut the body short, framed it badly, or sent too much.
    Invalid,
}

/// What the buffered exchange needs besides the connection buffers.
pub(super) struct BufferedResponse<'a> {
    /// Length of the response head in `bufs.upstream`.
    pub(super) resp_len: usize,
    /// The upstream's body framing.
    pub(super) framing: BodyFraming,
    /// The service's read timeout, per read.
    pub(super) read_timeout: Duration,
    /// The connection's timer.
    pub(super) timer: &'a ConnTimer,
    /// The snapshot the request loaded.
    pub(super) snapshot: &'a Snapshot,
    /// The route's chain.
    pub(super) chain: &'a Chain,
}

impl BufferedResponse<'_> {
    /// Asks the plugins that ran whether they want this response's body (after every
    /// header_filter ran).
    pub(super) fn wanted(&self, bufs: &mut ConnBuffers) -> BodyWanted {
        let mut ctx = ResponseCtx {
            status: bufs.resp.status(),
            upstream: Some((&bufs.resp, &bufs.upstream[..self.resp_len])),
            request: None,
            state: &mut bufs.plugins,
            step: 0,
        };
        gangway_pipeline::wants_body(&self.snapshot.pipeline, self.chain, &mut ctx)
    }
}

/// Buffers the upstream body, filters it and writes the response. `Err` means nothing was
/// written yet: the caller answers with an error.
pub(super) async fn respond<S: Stream, U: Stream>(
    client: &S,
    upstream: &U,
    bufs: &mut ConnBuffers,
    head: &mut ClientHead<'_>,
    r: BufferedResponse<'_>,
    wanted: BodyWanted,
) -> Result<Sent, BufferFail> {
    let invalid = |_: HttpError| BufferFail::Invalid;
    let give_up_past = match wanted {
        BodyWanted::UpTo(n) => Some(n),
        BodyWanted::Whole | BodyWanted::No => None,
    };
    let mut tracker = BodyTracker::new(r.framing);
    if give_up_past.is_none() {
        tracker = tracker.with_max_size(MAX_BUFFERED_BODY).map_err(invalid)?;
    }
    let outgrown = |body: &[u8]| give_up_past.is_some_and(|n| body.len() as u64 > n);
    let mut body = Vec::new();
    let first = &bufs.upstream[r.resp_len..];
    let p = tracker
        .advance_with(first, |c| body.extend_from_slice(c))
        .map_err(invalid)?;
    let mut clean = p.consumed == first.len();
    let mut done = p.done;
    // The head stays in `bufs.upstream` (the filters and the head writer read it), so the
    // rest of the body is read into a buffer of its own.
    let mut raw = Vec::with_capacity(16 * 1024);
    while !done && !outgrown(&body) {
        raw.clear();
        match read_with_timeout(r.timer, upstream, raw, r.read_timeout).await {
            Ok((0, _)) => {
                tracker.finish_eof().map_err(invalid)?;
                clean = false;
                done = true;
                raw = Vec::new();
            }
            Ok((n, buf)) => {
                raw = buf;
                let p = tracker
                    .advance_with(&raw[..n], |c| body.extend_from_slice(c))
                    .map_err(invalid)?;
                clean &= p.consumed == n;
                done = p.done;
            }
            Err(Fail::Timeout) => return Err(BufferFail::Timeout),
            Err(Fail::Io(_)) => return Err(BufferFail::Invalid),
        }
    }
    if outgrown(&body) {
        let unfiltered = Unfiltered {
            tracker,
            body,
            raw,
            done,
            clean,
        };
        return stream_unfiltered(client, upstream, bufs, head, &r, unfiltered).await;
    }
    {
        let mut ctx = ResponseCtx {
            status: bufs.resp.status(),
            upstream: Some((&bufs.resp, &bufs.upstream[..r.resp_len])),
            request: None,
            state: &mut bufs.plugins,
            step: 0,
        };
        gangway_pipeline::run_body_filter(&r.snapshot.pipeline, r.chain, &mut ctx, &mut body);
    }
    head.body_length = Some(body.len() as u64);
    bufs.output.clear();
    headers::write_client_response(
        &mut bufs.output,
        &bufs.resp,
        &bufs.upstream,
        head,
        &bufs.plugins.response_headers,
    );
    let reusable = clean && !matches!(r.framing, BodyFraming::UntilClose);
    // Small bodies go out with the head in one write.
    let out = if body.len() <= 16 * 1024 {
        bufs.output.extend_from_slice(&body);
        body = Vec::new();
        std::mem::take(&mut bufs.output)
    } else {
        std::mem::take(&mut bufs.output)
    };
    let len = out.len();
    let (res, out) = client.write_all(out, 0..len).await;
    bufs.output = out;
    if res.is_err() {
        return Ok(Sent {
            reusable,
            close: true,
        });
    }
    if !body.is_empty() {
        let len = body.len();
        let (res, _) = client.write_all(body, 0..len).await;
        if res.is_err() {
            return Ok(Sent {
                reusable,
                close: true,
            });
        }
    }
    Ok(Sent {
        reusable,
        close: false,
    })
}

/// The outcome of a buffered response that was written (or whose write was attempted).
pub(super) struct Sent {
    /// The upstream connection ended cleanly after the body and may go back to the pool.
    pub(super) reusable: bool,
    /// The client connection must close: a write to it failed, or the upstream failed
    /// after the head went out.
    pub(super) close: bool,
}

/// Where the buffering stopped when the body outgrew what the plugins wanted.
struct Unfiltered {
    tracker: BodyTracker,
    /// The body decoded so far.
    body: Vec<u8>,
    /// The read buffer, reused.
    raw: Vec<u8>,
    done: bool,
    clean: bool,
}

/// Every plugin that wanted the body gave up on it (it outgrew [`BodyWanted::UpTo`]): sends
/// the head as the streaming path frames it, the body read so far, and streams the rest,
/// re-chunked when the client gets chunked framing. Once the head is out no error can be
/// answered: an upstream failure closes the client connection, as when streaming.
async fn stream_unfiltered<S: Stream, U: Stream>(
    client: &S,
    upstream: &U,
    bufs: &mut ConnBuffers,
    head: &mut ClientHead<'_>,
    r: &BufferedResponse<'_>,
    mut at: Unfiltered,
) -> Result<Sent, BufferFail> {
    let chunked = matches!(r.framing, BodyFraming::Chunked) && !head.dechunked;
    let until_close = matches!(r.framing, BodyFraming::UntilClose);
    let failed = Sent {
        reusable: false,
        close: true,
    };
    head.body_length = None;
    let mut out = std::mem::take(&mut bufs.output);
    out.clear();
    headers::write_client_response(
        &mut out,
        &bufs.resp,
        &bufs.upstream,
        head,
        &bufs.plugins.response_headers,
    );
    push_piece(&mut out, &at.body, chunked);
    at.body = Vec::new();
    loop {
        if at.done && chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        let len = out.len();
        let (res, written) = client.write_all(out, 0..len).await;
        out = written;
        if res.is_err() {
            bufs.output = out;
            return Ok(failed);
        }
        if at.done {
            bufs.output = out;
            return Ok(Sent {
                reusable: at.clean && !until_close,
                close: false,
            });
        }
        out.clear();
        at.raw.clear();
        let raw = std::mem::take(&mut at.raw);
        match read_with_timeout(r.timer, upstream, raw, r.read_timeout).await {
            Ok((0, raw)) => {
                at.raw = raw;
                if at.tracker.finish_eof().is_err() {
                    // Cut short: the client sees the connection close.
                    bufs.output = out;
                    return Ok(failed);
                }
                at.done = true;
                at.clean = false;
            }
            Ok((n, raw)) => {
                at.raw = raw;
                let p = at
                    .tracker
                    .advance_with(&at.raw[..n], |piece| push_piece(&mut out, piece, chunked));
                match p {
                    Ok(p) => {
                        at.clean &= p.consumed == n;
                        at.done = p.done;
                    }
                    Err(_) => {
                        bufs.output = out;
                        return Ok(failed);
                    }
                }
            }
            Err(_) => {
                bufs.output = out;
                return Ok(failed);
            }
        }
    }
}

/// Appends decoded body bytes for the client, as a chunk when it gets chunked framing (an
/// empty piece is skipped: a chunk of size 0 would end the body).
fn push_piece(out: &mut Vec<u8>, piece: &[u8], chunked: bool) {
    if piece.is_empty() {
        return;
    }
    if chunked {
        use std::io::Write as _;
        let _ = write!(out, "{:x}\r\n", piece.len());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(piece);
    }
}
