//! Upstream response heads: [`parse_response`] into a reusable [`ResponseHead`].

use std::mem::MaybeUninit;

use super::{Limits, MAX_HEADERS_CAP, Version, check_partial};
use crate::body::BodyFraming;
use crate::error::HttpError;
use crate::headers::{
    self, ConnectionFacts, HeaderField, Known, SEEN_CL, SEEN_TE, Span, classify, listed_in,
    name_eq, parse_content_length, scan_connection,
};

#[cfg(test)]
mod tests;

/// A parsed response head; ranges point into the buffer given to [`parse_response`]. Reuse
/// one per upstream connection: [`ResponseHead::clear`] keeps capacity.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    len: usize,
    status: u16,
    reason: Span,
    version: Version,
    headers: Vec<HeaderField>,
    framing: BodyFraming,
    keep_alive: bool,
    connection_tokens: Vec<Span>,
}

impl ResponseHead {
    /// An empty head.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the last parse, keeping allocated capacity.
    pub fn clear(&mut self) {
        let mut headers = std::mem::take(&mut self.headers);
        let mut tokens = std::mem::take(&mut self.connection_tokens);
        headers.clear();
        tokens.clear();
        *self = ResponseHead {
            headers,
            connection_tokens: tokens,
            ..ResponseHead::default()
        };
    }

    /// Length of the head in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been parsed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The status code (100..=999).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase (may be empty).
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.reason.get(buf)
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

    /// How the body is framed (RFC 9112 §6.3).
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the upstream connection can be reused after the body.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// `101 Switching Protocols`: the connection becomes a tunnel after the head.
    pub fn is_upgrade(&self) -> bool {
        self.status == 101
    }

    /// An interim 1xx response (not 101): forward it and read the next head.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// The tokens listed in `Connection` headers.
    pub fn connection_tokens(&self) -> &[Span] {
        &self.connection_tokens
    }

    /// Whether a header named `name` must not be forwarded to the client.
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

/// Parses an upstream response head from the start of `buf`. `request_method_is_head`: the
/// request was HEAD, so the response has no body whatever its headers say. `Ok(None)`: read
/// more. Every error is [`HttpError::InvalidResponse`] (502).
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_method_is_head: bool,
    head: &mut ResponseHead,
) -> Result<Option<usize>, HttpError> {
    let bad = HttpError::InvalidResponse;
    head.clear();
    let slots = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let mut res = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut raw[..slots])
        .map_err(|e| match e {
            httparse::Error::TooManyHeaders => bad("too many headers"),
            httparse::Error::HeaderName | httparse::Error::HeaderValue => bad("invalid header"),
            httparse::Error::NewLine => bad("invalid line ending"),
            httparse::Error::Version => bad("invalid HTTP version"),
            httparse::Error::Status | httparse::Error::Token => bad("invalid status line"),
        })?;
    let n = match status {
        httparse::Status::Partial => {
            return check_partial(buf, limits)
                .map(|()| None)
                .map_err(|_| bad("head too large"));
        }
        httparse::Status::Complete(n) => n,
    };
    if n > limits.max_header_bytes {
        return Err(bad("head too large"));
    }
    let (Some(minor), Some(code)) = (res.version, res.code) else {
        return Err(bad("incomplete status line"));
    };
    if code < 100 {
        return Err(bad("invalid status code"));
    }
    head.len = n;
    head.status = code;
    head.version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if let Some(r) = res.reason.filter(|r| !r.is_empty()) {
        head.reason = Span::of(buf, r.as_bytes());
    }

    let mut seen: u16 = 0;
    let mut content_length = None;
    let mut chunked = false;
    let mut conn = ConnectionFacts::default();
    for h in res.headers.iter() {
        let field = HeaderField {
            name: Span::of(buf, h.name.as_bytes()),
            value: Span::of(buf, h.value),
        };
        if field.value.end.max(field.name.end) as usize - field.name.start as usize
            > limits.max_line_bytes
        {
            return Err(bad("header line too long"));
        }
        head.headers.push(field);
        // The checks are nginx's upstream ones (ngx_http_upstream_process_content_length and
        // _transfer_encoding): any doubt about framing is a 502, never a guess.
        match classify(h.name.as_bytes()) {
            Known::ContentLength => {
                if seen & SEEN_CL != 0 {
                    return Err(bad("duplicate Content-Length"));
                }
                seen |= SEEN_CL;
                content_length =
                    Some(parse_content_length(h.value).ok_or(bad("invalid Content-Length"))?);
            }
            Known::TransferEncoding => {
                if seen & SEEN_TE != 0 {
                    return Err(bad("duplicate Transfer-Encoding"));
                }
                seen |= SEEN_TE;
                if !name_eq(h.value, b"chunked") {
                    return Err(bad("unsupported Transfer-Encoding"));
                }
                chunked = true;
            }
            Known::Connection => {
                scan_connection(buf, field.value, &mut head.connection_tokens, &mut conn)
            }
            _ => {}
        }
    }
    if chunked && content_length.is_some() {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }

    let bodiless = request_method_is_head || code < 200 || code == 204 || code == 304;
    head.framing = if bodiless {
        BodyFraming::None
    } else if chunked {
        BodyFraming::Chunked
    } else if let Some(n) = content_length {
        BodyFraming::Length(n)
    } else {
        BodyFraming::UntilClose
    };
    let http11 = head.version == Version::Http11;
    head.keep_alive = !conn.close
        && (http11 || conn.keep_alive)
        && head.framing != BodyFraming::UntilClose
        && code != 101;
    Ok(Some(n))
}
