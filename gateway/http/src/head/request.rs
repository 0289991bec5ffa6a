//! Request heads: [`parse_request`] into a reusable [`RequestHead`].

use std::mem::MaybeUninit;

use super::{Limits, MAX_HEADERS_CAP, Method, Overflow, Version, check_partial, version_error};
use crate::body::BodyFraming;
use crate::error::HttpError;
use crate::headers::{
    self, ConnectionFacts, HeaderField, Known, SEEN_CL, SEEN_EXPECT, SEEN_HOST, SEEN_TE, Span,
    classify, listed_in, name_eq, parse_content_length, scan_connection, valid_host,
};

#[cfg(test)]
mod tests;

/// A parsed request head. Every range points into the buffer given to [`parse_request`];
/// pass that same slice to the accessors. Reuse one per connection: [`RequestHead::clear`]
/// keeps the vectors' capacity, so steady-state parsing does not allocate.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    len: usize,
    method: Span,
    method_kind: Method,
    target: Span,
    path: Span,
    query: Option<Span>,
    authority: Option<Span>,
    version: Version,
    headers: Vec<HeaderField>,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    host_index: Option<usize>,
    upgrade_index: Option<usize>,
    connection_tokens: Vec<Span>,
}

impl RequestHead {
    /// An empty head; the vectors grow on first use and are then reused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the last parse, keeping allocated capacity.
    pub fn clear(&mut self) {
        let mut headers = std::mem::take(&mut self.headers);
        let mut tokens = std::mem::take(&mut self.connection_tokens);
        headers.clear();
        tokens.clear();
        *self = RequestHead {
            headers,
            connection_tokens: tokens,
            ..RequestHead::default()
        };
    }

    /// Length of the head in bytes, body excluded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been parsed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The method token.
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.method.get(buf)
    }

    /// The method, classified.
    pub fn method_kind(&self) -> Method {
        self.method_kind
    }

    /// The request-target exactly as sent (origin- or absolute-form).
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.target.get(buf)
    }

    /// The path, without query; `/` for an absolute-form target with no path.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.path.get(buf)
    }

    /// The query after `?` (without it), `Some(b"")` for a bare `?`, `None` without `?`.
    pub fn query<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.query.map(|q| q.get(buf))
    }

    /// The path and query as they would appear in an origin-form target (`/p?q`).
    pub fn path_and_query_span(&self) -> Span {
        match self.query {
            Some(q) if q.start == self.path.end + 1 => Span {
                start: self.path.start,
                end: q.end,
            },
            _ => self.path,
        }
    }

    /// `host[:port]` from an absolute-form target, if the target was one.
    pub fn authority<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.authority.map(|a| a.get(buf))
    }

    /// The host the request is for: the absolute-form authority when present (as nginx),
    /// else the `Host` header value. May carry a port; see [`headers::split_host_port`].
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.authority(buf)
            .or_else(|| self.host_index.map(|i| self.headers[i].value.get(buf)))
    }

    /// The `Host` header value alone, which Kong routes on and `preserve_host` forwards
    /// (`get_header("host")`), where nginx's `$host` ([`RequestHead::host`]) takes an
    /// absolute-form target's authority first.
    pub fn host_header<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host_index.map(|i| self.headers[i].value.get(buf))
    }

    /// Index of the `Host` field in [`RequestHead::headers`].
    pub fn host_index(&self) -> Option<usize> {
        self.host_index
    }

    /// HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// All header fields in order.
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        headers::find(&self.headers, buf, name)
    }

    /// Every value of header `name`, in order.
    pub fn header_values<'a, 'b: 'a>(
        &'a self,
        buf: &'b [u8],
        name: &'a str,
    ) -> impl Iterator<Item = &'b [u8]> + 'a {
        headers::values(&self.headers, buf, name)
    }

    /// How the body is framed.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the client connection may stay open after this exchange (per version and
    /// `Connection`).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether an HTTP/1.1 client sent `Expect: 100-continue`.
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }

    /// Whether this is an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade`).
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The `Upgrade` header value of an upgrade request (e.g. `websocket`).
    pub fn upgrade_protocol<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.upgrade_index
            .filter(|_| self.upgrade)
            .map(|i| self.headers[i].value.get(buf))
    }

    /// The tokens listed in `Connection` headers (names of extra hop-by-hop headers).
    pub fn connection_tokens(&self) -> &[Span] {
        &self.connection_tokens
    }

    /// Whether a header named `name` must not be forwarded: a standard hop-by-hop header or
    /// one listed in `Connection`.
    pub fn is_hop_by_hop(&self, buf: &[u8], name: &[u8]) -> bool {
        headers::is_hop_by_hop(name) || listed_in(&self.connection_tokens, buf, name)
    }

    /// The fields to forward end to end, hop-by-hop ones left out.
    pub fn end_to_end_headers<'a>(
        &'a self,
        buf: &'a [u8],
    ) -> impl Iterator<Item = &'a HeaderField> + 'a {
        self.headers
            .iter()
            .filter(move |f| !self.is_hop_by_hop(buf, f.name.get(buf)))
    }
}

/// Parses a request head from the start of `buf` into `head`. `Ok(None)`: incomplete, read
/// more and call again with the grown buffer. `Ok(Some(n))`: the head is `buf[..n]`; the body
/// or the next pipelined request starts at `n`. Errors carry the status nginx would answer.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<Option<usize>, HttpError> {
    head.clear();
    let slots = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let mut req = httparse::Request::new(&mut []);
    let status = req
        .parse_with_uninit_headers(buf, &mut raw[..slots])
        .map_err(|e| match e {
            httparse::Error::Version => version_error(buf),
            httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
            httparse::Error::HeaderName => HttpError::MalformedHead("invalid header name"),
            httparse::Error::HeaderValue => HttpError::MalformedHead("invalid header value"),
            httparse::Error::NewLine => HttpError::MalformedHead("invalid line ending"),
            httparse::Error::Token => HttpError::MalformedHead("invalid request line"),
            httparse::Error::Status => HttpError::MalformedHead("invalid request line"),
        })?;
    let n = match status {
        httparse::Status::Partial => {
            return match check_partial(buf, limits) {
                Ok(()) => Ok(None),
                Err(Overflow::FirstLine) => Err(HttpError::UriTooLong),
                Err(Overflow::HeaderLine | Overflow::Total) => Err(HttpError::HeaderTooLarge),
            };
        }
        httparse::Status::Complete(n) => n,
    };
    if n > limits.max_header_bytes {
        return Err(HttpError::HeaderTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::MalformedHead("incomplete request line"));
    };
    head.len = n;
    head.method = Span::of(buf, method.as_bytes());
    head.method_kind = Method::from_bytes(method.as_bytes());
    head.target = Span::of(buf, target.as_bytes());
    head.version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if head.target.end as usize - head.method.start as usize > limits.max_line_bytes {
        return Err(HttpError::UriTooLong);
    }
    if head.method_kind == Method::Connect {
        // Refused before the target is read: authority-form is not a form we parse.
        return Err(HttpError::MethodNotAllowed("CONNECT"));
    }
    split_target(buf, head)?;

    let mut seen: u16 = 0;
    let mut content_length = None;
    let mut transfer_encoding = None;
    let mut expect = None;
    let mut conn = ConnectionFacts::default();
    for (i, h) in req.headers.iter().enumerate() {
        let field = HeaderField {
            name: Span::of(buf, h.name.as_bytes()),
            value: Span::of(buf, h.value),
        };
        if field.value.end.max(field.name.end) as usize - field.name.start as usize
            > limits.max_line_bytes
        {
            return Err(HttpError::HeaderTooLarge);
        }
        head.headers.push(field);
        let mut once = |bit: u16, name: &'static str| {
            if seen & bit != 0 {
                return Err(HttpError::DuplicateHeader(name));
            }
            seen |= bit;
            Ok(())
        };
        match classify(h.name.as_bytes()) {
            Known::Host => {
                once(SEEN_HOST, "Host")?;
                if !valid_host(h.value) {
                    return Err(HttpError::InvalidHost);
                }
                head.host_index = Some(i);
            }
            Known::ContentLength => {
                once(SEEN_CL, "Content-Length")?;
                content_length = Some(h.value);
            }
            Known::TransferEncoding => {
                once(SEEN_TE, "Transfer-Encoding")?;
                transfer_encoding = Some(h.value);
            }
            Known::Expect => {
                once(SEEN_EXPECT, "Expect")?;
                expect = Some(h.value);
            }
            Known::Unique(bit, name) => once(bit, name)?,
            Known::Connection => {
                scan_connection(buf, field.value, &mut head.connection_tokens, &mut conn)
            }
            Known::Upgrade => {
                head.upgrade_index.get_or_insert(i);
            }
            Known::Other => {}
        }
    }

    // The order of the remaining checks is nginx's (ngx_http_process_request_header).
    let http11 = head.version == Version::Http11;
    if http11 && head.host_index.is_none() {
        return Err(HttpError::MissingHost);
    }
    if let Some(cl) = content_length {
        let n = parse_content_length(cl).ok_or(HttpError::InvalidContentLength)?;
        head.framing = BodyFraming::Length(n);
    }
    if let Some(te) = transfer_encoding {
        if !http11 {
            return Err(HttpError::TransferEncodingOnHttp10);
        }
        if !name_eq(te, b"chunked") {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if content_length.is_some() {
            return Err(HttpError::LengthAndChunked);
        }
        head.framing = BodyFraming::Chunked;
    }
    if head.method_kind == Method::Trace {
        return Err(HttpError::MethodNotAllowed("TRACE"));
    }
    head.keep_alive = !conn.close && (http11 || conn.keep_alive);
    // Kong passes an upgrade on only for `Upgrade: websocket`; any other protocol (h2c)
    // would open a tunnel past routing and every plugin.
    head.upgrade = http11
        && conn.upgrade
        && head
            .upgrade_index
            .is_some_and(|i| name_eq(head.headers[i].value.get(buf), b"websocket"));
    head.expect_continue = http11 && expect.is_some_and(|e| name_eq(e, b"100-continue"));
    Ok(Some(n))
}

/// Splits the target into path, query and (absolute-form) authority.
fn split_target(buf: &[u8], head: &mut RequestHead) -> Result<(), HttpError> {
    let t = head.target.get(buf);
    let base = head.target.start as usize;
    let rest_at = if t.first() == Some(&b'/') {
        0
    } else {
        // absolute-form: scheme "://" authority [path-abempty] ["?" query]
        let scheme_len = t
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b"+-.".contains(&b)))
            .filter(|&n| n > 0 && t[0].is_ascii_alphabetic() && t[n..].starts_with(b"://"))
            .ok_or(HttpError::MalformedHead("invalid request target"))?;
        let auth_start = scheme_len + 3;
        let auth_len = t[auth_start..]
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(t.len() - auth_start);
        let authority = &t[auth_start..auth_start + auth_len];
        if authority.contains(&b'@') || !valid_host(authority) {
            return Err(HttpError::InvalidHost);
        }
        head.authority = Some(Span::new(base + auth_start, base + auth_start + auth_len));
        let rest_at = auth_start + auth_len;
        if t.get(rest_at) != Some(&b'/') {
            // No path: use the first '/' of "://" so `path` reads "/", as nginx does.
            let slash = base + scheme_len + 1;
            head.path = Span::new(slash, slash + 1);
            split_query(base, t, rest_at, head);
            return Ok(());
        }
        rest_at
    };
    let path_len = t[rest_at..]
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(t.len() - rest_at);
    head.path = Span::new(base + rest_at, base + rest_at + path_len);
    split_query(base, t, rest_at + path_len, head);
    Ok(())
}

/// Sets the query from `t[at..]`, which is empty or starts with `?` or `#`.
fn split_query(base: usize, t: &[u8], at: usize, head: &mut RequestHead) {
    if t.get(at) == Some(&b'?') {
        let q = at + 1;
        let q_len = t[q..]
            .iter()
            .position(|&b| b == b'#')
            .unwrap_or(t.len() - q);
        head.query = Some(Span::new(base + q, base + q + q_len));
    }
}
