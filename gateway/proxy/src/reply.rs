//! gangway's own answers to a request: Kong's error pages for upstream failures and for
//! requests it refuses, with the headers of the plugins that ran.

use std::time::Instant;

use super::WorkerCtx;
use super::exchange::SERVER;
use super::log::Source;
use super::plugins::plugin_headers;
use super::session::{ConnBuffers, error_format, new_request_id};
use crate::Snapshot;
use gangway_config::settings::HeaderToken;
use gangway_http::{BodyTracker, HttpError, Method, TooLargeStatus, Version, error_page};
use gangway_net::{Backend, Stream};
use gangway_pipeline::{Chain, ResponseCtx};

/// Kong's bodies for upstream failures (`kong/error_handlers.lua`).
pub(super) const MSG_502: &str = "An invalid response was received from the upstream server";
pub(super) const MSG_503: &str = "The upstream server is currently unavailable";
pub(super) const MSG_504: &str = "The upstream server is timing out";

/// What a Kong error page for this request needs besides the status and message.
pub(super) struct Reply<'a, B: Backend> {
    pub(super) ctx: &'a WorkerCtx<B>,
    pub(super) request_id: &'a [u8; 32],
    pub(super) received: Instant,
    pub(super) snapshot: &'a Snapshot,
    pub(super) chain: &'a Chain,
    /// header_filter already ran (the upstream's head had arrived).
    pub(super) filtered: std::cell::Cell<bool>,
}

impl<B: Backend> Reply<'_, B> {
    /// Kong's 503 when the balancer has no target left to try; the connection closes.
    pub(super) async fn no_target<S: Stream>(
        &self,
        client: &S,
        bufs: &mut ConnBuffers,
    ) -> super::exchange::Outcome {
        self.error(client, bufs, 503, MSG_503, true).await;
        super::exchange::Outcome::Close
    }

    /// Sends the gateway's own error (the upstream failed). As in Kong, the plugins that ran
    /// in access still filter its headers (cors, correlation-id).
    pub(super) async fn error<S: Stream>(
        &self,
        client: &S,
        bufs: &mut ConnBuffers,
        status: u16,
        message: &str,
        close: bool,
    ) {
        if self.chain.filters_headers && !self.filtered.replace(true) {
            filter_headers(bufs, self.snapshot, self.chain, status, false);
        }
        bufs.txn.source = Source::Error;
        if bufs.txn.upstream_latency.is_none() {
            bufs.txn.upstream_latency = bufs.txn.upstream_started.map(|s| s.elapsed());
        }
        let added = plugin_headers(&bufs.plugins.response_headers);
        let plugin_headers: Vec<(&str, &str)> = added
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        write_error_with(
            client,
            bufs,
            self.ctx,
            self.request_id,
            self.received,
            status,
            message,
            close,
            &plugin_headers,
        )
        .await;
    }
}

/// Sends a Kong-shaped error for the request in `bufs` and drops its body from the buffer.
/// Keeps the connection only when the request body was fully read. With `filter`, the
/// chain's plugins that ran (see [`gangway_pipeline::RequestState::resolved`]) filter the
/// error's headers first.
#[allow(clippy::too_many_arguments)]
pub async fn respond_error<B: Backend, S: Stream>(
    client: &S,
    bufs: &mut ConnBuffers,
    head_len: usize,
    ctx: &WorkerCtx<B>,
    request_id: &[u8; 32],
    received: Instant,
    status: u16,
    message: &str,
    filter: Option<(&Snapshot, &Chain)>,
    extra: &[(&str, &str)],
) -> bool {
    let done = request_end(bufs, head_len);
    let keep = done.is_some() && bufs.head.keep_alive() && !ctx.last_on_connection(bufs);
    let mut added = Vec::new();
    if let Some((snapshot, chain)) = filter.filter(|(_, c)| c.filters_headers) {
        // Nothing went upstream: the request's head is still at the start of the input.
        filter_headers(bufs, snapshot, chain, status, true);
        added = plugin_headers(&bufs.plugins.response_headers);
    }
    let headers: Vec<(&str, &str)> = extra
        .iter()
        .copied()
        .chain(added.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .collect();
    write_error_with(
        client, bufs, ctx, request_id, received, status, message, !keep, &headers,
    )
    .await;
    match done {
        Some(used) if keep => {
            bufs.input.drain(..used);
            true
        }
        _ => false,
    }
}

/// Where the request in `bufs` ends once its body is all in the input (or was read out by
/// a plugin): the connection can then carry another request. `None` while body bytes are
/// still to come.
pub(super) fn request_end(bufs: &ConnBuffers, head_len: usize) -> Option<usize> {
    if bufs.plugins.body.is_some() {
        // A plugin already read the body out of the input.
        return Some(head_len);
    }
    match BodyTracker::new(bufs.head.framing()).advance(&bufs.input[head_len..]) {
        Ok(p) if p.done => Some(head_len + p.consumed),
        _ => None,
    }
}

/// Runs header_filter for the plugins of `chain` that ran, on gangway's own answer; the
/// client's request head is shown to them when nothing went upstream (`request_intact`), as
/// its buffer is reused once something did.
fn filter_headers(
    bufs: &mut ConnBuffers,
    snapshot: &Snapshot,
    chain: &Chain,
    status: u16,
    request_intact: bool,
) {
    let mut rctx = ResponseCtx {
        status,
        upstream: None,
        request: request_intact.then_some((&bufs.head, &bufs.input[..])),
        state: &mut bufs.plugins,
        step: 0,
    };
    gangway_pipeline::run_header_filter(&snapshot.pipeline, chain, &mut rctx);
}

/// Sends a Kong-shaped error and marks the connection for closing.
pub async fn respond_error_closing<B: Backend, S: Stream>(
    client: &S,
    bufs: &mut ConnBuffers,
    ctx: &WorkerCtx<B>,
    request_id: &[u8; 32],
    received: Instant,
    status: u16,
    message: &str,
) {
    write_error_with(
        client,
        bufs,
        ctx,
        request_id,
        received,
        status,
        message,
        true,
        &[],
    )
    .await;
}

/// Writes a Kong-shaped error with the gateway's headers and `plugin_headers`.
#[allow(clippy::too_many_arguments)]
async fn write_error_with<B: Backend, S: Stream>(
    client: &S,
    bufs: &mut ConnBuffers,
    ctx: &WorkerCtx<B>,
    request_id: &[u8; 32],
    received: Instant,
    status: u16,
    message: &str,
    close: bool,
    plugin_headers: &[(&str, &str)],
) {
    let settings = &ctx.gateway.settings;
    let latency = received.elapsed().as_millis().to_string();
    let id = std::str::from_utf8(request_id).unwrap_or_default();
    let tokens = settings.headers;
    let mut extra: Vec<(&str, &str)> = Vec::with_capacity(3);
    if tokens.contains(HeaderToken::ResponseLatency) {
        extra.push(("X-Kong-Response-Latency", &latency));
    }
    if tokens.contains(HeaderToken::RequestId) {
        extra.push(("X-Kong-Request-Id", id));
    }
    extra.extend_from_slice(plugin_headers);
    if close {
        extra.push(("Connection", "close"));
    } else if bufs.head.version() == Version::Http10 && bufs.head.keep_alive() {
        // An HTTP/1.0 client closes unless told the connection stays (nginx says so too).
        extra.push(("Connection", "keep-alive"));
    }
    bufs.output.clear();
    error_page::write_error_response(
        &mut bufs.output,
        status,
        Some(message),
        id,
        (!bufs.accept.is_empty()).then_some(&bufs.accept[..]),
        error_format(&settings.error_default_type),
        &extra,
        tokens.contains(HeaderToken::Server).then_some(SERVER),
    );
    // By kind, not by text: the input may have been drained past the head by now.
    if bufs.head.method_kind() == Method::Head {
        // The GET answer's head, with no body: the client reads none, and would take it
        // for the next response on the connection.
        if let Some(end) = bufs.output.windows(4).position(|w| w == b"\r\n\r\n") {
            bufs.output.truncate(end + 4);
        }
    }
    let out = std::mem::take(&mut bufs.output);
    let len = out.len();
    let (_, out) = client.write_all(out, 0..len).await;
    bufs.output = out;
}

/// Answers a malformed or oversized request head with nginx's status and Kong's body; the
/// connection then closes.
pub(super) async fn refuse_head<S: Stream>(
    client: &S,
    bufs: &mut ConnBuffers,
    err: &HttpError,
    error_default_type: &str,
) -> [u8; 32] {
    let request_id = new_request_id();
    bufs.output.clear();
    error_page::write_error_response(
        &mut bufs.output,
        err.response_status(TooLargeStatus::Nginx494),
        Some(err.message()),
        std::str::from_utf8(&request_id).unwrap_or_default(),
        None,
        error_format(error_default_type),
        &[("Connection", "close")],
        Some(SERVER),
    );
    let out = std::mem::take(&mut bufs.output);
    let len = out.len();
    let _ = client.write_all(out, 0..len).await;
    request_id
}

/// The https URL a redirect of an https-only route names, as Kong builds it:
/// `"https://" .. forwarded_host .. request_uri`, the forwarded host being a trusted proxy's
/// X-Forwarded-Host, else nginx's `$host` (lower case, no port), and the URI the origin-form
/// target even when the request line had an absolute one.
pub(super) fn https_location(bufs: &ConnBuffers, trusted: bool) -> String {
    let forwarded = trusted
        .then(|| bufs.head.header(&bufs.input, "x-forwarded-host"))
        .flatten();
    let host = match forwarded {
        Some(h) => String::from_utf8_lossy(h).into_owned(),
        None => {
            let host = bufs.head.host(&bufs.input).unwrap_or(b"");
            String::from_utf8_lossy(super::headers::host_without_port(host)).to_ascii_lowercase()
        }
    };
    let uri = bufs.head.path_and_query_span().get(&bufs.input);
    format!("https://{host}{}", String::from_utf8_lossy(uri))
}
