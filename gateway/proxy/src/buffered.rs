//! The buffered response path, taken only when a plugin's `wants_body` asked for this
//! response (response-transformer on a JSON body): read the whole upstream body (chunked
//! framing decoded), run body_filter, then send the head with the new `Content-Length` and
//! the body. Everything else streams through `exchange.rs` untouched.

use std::time::Duration;

use super::conn_timer::ConnTimer;
use super::forward::{Fail, read_with_timeout};
use super::headers::{self, ClientHead};
use super::session::ConnBuffers;
use crate::Snapshot;
use gangway_http::{BodyFraming, BodyTracker, HttpError};
use gangway_net::Stream;
use gangway_pipeline::{Chain, ResponseCtx};

/// The largest upstream body gangway buffers for body filters (64 MiB). A larger body fails
/// the request with 502 rather than growing without bound.
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
    pub(super) fn wanted(&self, bufs: &mut ConnBuffers) -> bool {
        let mut ctx = ResponseCtx {
            status: bufs.resp.status(),
            upstream: Some((&bufs.resp, &bufs.upstream[..self.resp_len])),
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
) -> Result<Sent, BufferFail> {
    let invalid = |_: HttpError| BufferFail::Invalid;
    let mut tracker = BodyTracker::new(r.framing)
        .with_max_size(MAX_BUFFERED_BODY)
        .map_err(invalid)?;
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
    while !done {
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
    {
        let mut ctx = ResponseCtx {
            status: bufs.resp.status(),
            upstream: Some((&bufs.resp, &bufs.upstream[..r.resp_len])),
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
            client_failed: true,
        });
    }
    if !body.is_empty() {
        let len = body.len();
        let (res, _) = client.write_all(body, 0..len).await;
        if res.is_err() {
            return Ok(Sent {
                reusable,
                client_failed: true,
            });
        }
    }
    Ok(Sent {
        reusable,
        client_failed: false,
    })
}

/// The outcome of a buffered response that was written (or whose write was attempted).
pub(super) struct Sent {
    /// The upstream connection ended cleanly after the body and may go back to the pool.
    pub(super) reusable: bool,
    /// Writing to the client failed: close the connection.
    pub(super) client_failed: bool,
}
