//! Where the proxy meets the plugin pipeline: buffering the request body for plugins that
//! read it, and sending the response a plugin produced instead of the upstream's.

use std::time::Duration;

use super::WorkerCtx;
use super::conn_timer::ConnTimer;
use super::exchange::SERVER;
use super::log::{RequestInfo, Source};
use super::session::ConnBuffers;
use crate::Snapshot;
use gangway_config::settings::HeaderToken;
use gangway_http::{BodyTracker, Method, Version, error_page};
use gangway_net::{Backend, Stream};
use gangway_pipeline::edits::HeaderEdits;
use gangway_pipeline::{Chain, Response, ResponseBody, ResponseCtx};

/// Why the body could not be buffered: tell the client (when there is a status) and close.
pub struct BodyError {
    /// The status to answer with, if the client is still there.
    pub status: Option<u16>,
    /// Kong's message.
    pub message: &'static str,
}

/// Reads the whole request body (decoded from chunked framing) into `bufs.plugins.body`,
/// bounded by `client_max_body_size` and `client_body_timeout`. The head stays at
/// `bufs.input[..head_len]`; the raw body bytes are removed as they are decoded, so that
/// anything after them (a pipelined request) follows the head.
///
/// With `limit` (a plugin's [`gangway_pipeline::Plugin::chunked_body_limit`]), reading stops
/// once the body is longer than `limit` bytes: `bufs.plugins.body` stays `None`,
/// `bufs.plugins.body_over_limit` is set, and the unread rest stays in `bufs.input` (the
/// connection cannot be reused unless the whole body happens to be there).
pub async fn buffer_body<B: Backend, S: Stream>(
    client: &S,
    timer: &ConnTimer,
    bufs: &mut ConnBuffers,
    head_len: usize,
    ctx: &WorkerCtx<B>,
    limit: Option<u64>,
) -> Result<(), BodyError> {
    let settings = &ctx.gateway.settings;
    // Held in memory whole: bounded by buffered_body_max_size whatever client_max_body_size
    // allows (0 is unlimited).
    let max_size = match (
        settings.client_max_body_size,
        settings.buffered_body_max_size,
    ) {
        (0, max) | (max, 0) => max,
        (client, buffered) => client.min(buffered),
    };
    let mut tracker = BodyTracker::new(bufs.head.framing())
        .with_max_size(max_size)
        .map_err(|e| BodyError {
            status: Some(e.status()),
            message: e.message(),
        })?;
    let mut body = bufs.plugins.body.take().unwrap_or_default();
    body.clear();
    let mut pos = head_len;
    let timeout = Duration::from_millis(settings.client_body_timeout_ms);
    let mut continued = false;
    loop {
        let p = tracker
            .advance_with(&bufs.input[pos..], |chunk| body.extend_from_slice(chunk))
            .map_err(|e| BodyError {
                status: Some(e.status()),
                message: e.message(),
            })?;
        pos += p.consumed;
        // Framing and chunk extensions are not payload and count toward no limit: kept until
        // the end, a chunk of 1 byte with a 4 KiB extension held 4,000 times its payload.
        bufs.input.drain(head_len..pos);
        pos = head_len;
        if p.done {
            break;
        }
        if limit.is_some_and(|l| tracker.payload_bytes() > l) {
            bufs.plugins.body_over_limit = true;
            return Ok(());
        }
        if !continued && bufs.head.expect_continue() {
            continued = true;
            let mut out = std::mem::take(&mut bufs.output);
            out.clear();
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            let len = out.len();
            let (res, out) = client.write_all(out, 0..len).await;
            bufs.output = out;
            res.map_err(|_| BodyError {
                status: None,
                message: "",
            })?;
        }
        if bufs.input.capacity() - bufs.input.len() < 4096 {
            bufs.input.reserve(16 * 1024);
        }
        let input = std::mem::take(&mut bufs.input);
        match timer.within(timeout, client.read(input)).await {
            Ok((Ok(n), buf)) if n > 0 => bufs.input = buf,
            Ok((_, buf)) => {
                bufs.input = buf;
                return Err(BodyError {
                    status: None,
                    message: "",
                });
            }
            Err(_) => {
                return Err(BodyError {
                    status: Some(408),
                    message: "Request timeout",
                });
            }
        }
    }
    bufs.plugins.body = Some(body);
    Ok(())
}

/// Sends a plugin's response, after the header_filter phase (and body_filter, when a
/// plugin wants this body). Returns whether the client connection may carry another
/// request.
#[allow(clippy::too_many_arguments)]
pub async fn respond<B: Backend, S: Stream>(
    client: &S,
    bufs: &mut ConnBuffers,
    ctx: &WorkerCtx<B>,
    facts: &RequestInfo<'_>,
    snapshot: &Snapshot,
    chain: &Chain,
    response: Response,
) -> bool {
    let settings = &ctx.gateway.settings;
    let id = std::str::from_utf8(facts.request_id).unwrap_or_default();
    bufs.txn.source = Source::Exit;
    bufs.txn.upstream_latency = response.waited;
    // The body is rendered first so that header and body filters see its type and bytes.
    let (content_type, mut body) = match response.body {
        ResponseBody::Error(message) => {
            // The PDK's `kong.response.error`: the format follows Accept, JSON without one.
            let accept = (!bufs.accept.is_empty()).then_some(&bufs.accept[..]);
            let format = error_page::negotiate(accept);
            let mut body = Vec::new();
            error_page::write_error_body(&mut body, format, response.status, Some(&message), id);
            (format.content_type().map(str::to_string), body)
        }
        ResponseBody::Json(value) => (
            Some("application/json; charset=utf-8".to_string()),
            serde_json::to_vec(&value).unwrap_or_default(),
        ),
        ResponseBody::Raw { content_type, body } => (content_type, body),
        ResponseBody::Empty => (None, Vec::new()),
    };
    if let Some(ct) = &content_type {
        bufs.plugins
            .response_headers
            .set("Content-Type", ct.as_bytes());
    }
    for (i, (name, value)) in response.headers.iter().enumerate() {
        let repeated = response.headers[..i]
            .iter()
            .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name));
        if repeated {
            bufs.plugins.response_headers.add(&**name, value.as_bytes());
        } else {
            bufs.plugins.response_headers.set(&**name, value.as_bytes());
        }
    }
    let mut rctx = ResponseCtx {
        status: response.status,
        upstream: None,
        // Every caller answers before the request went upstream: its head is intact.
        request: Some((&bufs.head, &bufs.input[..])),
        state: &mut bufs.plugins,
        step: 0,
    };
    gangway_pipeline::run_header_filter(&snapshot.pipeline, chain, &mut rctx);
    if (response.proxied || response.via) && settings.headers.contains(HeaderToken::Via) {
        let via = format!("1.1 {SERVER}");
        rctx.state.response_headers.set("Via", via.as_bytes());
    }
    // The body is in memory already: whatever its size, every plugin that asks sees it.
    let wanted = gangway_pipeline::wants_body(&snapshot.pipeline, chain, &mut rctx);
    if wanted != gangway_pipeline::BodyWanted::No {
        gangway_pipeline::run_body_filter(&snapshot.pipeline, chain, &mut rctx, &mut body);
    }

    // The connection survives only if the request body is behind us.
    let used = super::reply::request_end(bufs, facts.head_len);
    let keep = used.is_some() && bufs.head.keep_alive() && !ctx.last_on_connection(bufs);
    let is_head = bufs.head.method_kind() == Method::Head;

    let tokens = settings.headers;
    // Kong's aws-lambda takes the time it waited on the function out of the response latency.
    let latency = facts
        .received
        .elapsed()
        .saturating_sub(response.waited.unwrap_or_default())
        .as_millis()
        .to_string();
    let added = plugin_headers(&bufs.plugins.response_headers);
    let mut extra: Vec<(&str, &str)> = Vec::with_capacity(added.len() + 3);
    if tokens.contains(HeaderToken::ResponseLatency) && !response.proxied {
        extra.push(("X-Kong-Response-Latency", &latency));
    }
    if tokens.contains(HeaderToken::RequestId) {
        extra.push(("X-Kong-Request-Id", id));
    }
    for (n, v) in &added {
        extra.push((n, v));
    }
    if !keep {
        extra.push(("Connection", "close"));
    } else if bufs.head.version() == Version::Http10 && bufs.head.keep_alive() {
        // An HTTP/1.0 client closes unless told the connection stays (nginx says so too).
        extra.push(("Connection", "keep-alive"));
    }
    let server = tokens.contains(HeaderToken::Server).then_some(SERVER);
    let mut out = std::mem::take(&mut bufs.output);
    out.clear();
    write_response(&mut out, response.status, &body, &extra, server, is_head);
    let len = out.len();
    let (res, out) = client.write_all(out, 0..len).await;
    bufs.output = out;
    match used {
        Some(used) if keep && res.is_ok() => {
            bufs.input.drain(..used);
            true
        }
        _ => false,
    }
}

/// The response headers plugins added, as owned text (for the error and response writers).
pub fn plugin_headers(edits: &HeaderEdits) -> Vec<(String, String)> {
    edits
        .added()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// Writes a complete response; a HEAD answer carries the head only (with the body's
/// length). A 204, a 304 (or a 1xx) has no body, and so, as nginx sends it, no
/// `Content-Length` and no `Content-Type` either: a client reads no body after them, and
/// one sent anyway would be read as the next response.
fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    extra: &[(&str, &str)],
    server: Option<&str>,
    head_only: bool,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\n",
        error_page::reason_phrase(status)
    );
    let bodiless = status == 204 || status == 304 || status < 200;
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    if let Some(server) = server {
        let _ = write!(out, "Server: {server}\r\n");
    }
    for (n, v) in extra {
        if bodiless && n.eq_ignore_ascii_case("content-type") {
            continue;
        }
        let _ = write!(out, "{n}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodiless {
        out.extend_from_slice(body);
    }
}
