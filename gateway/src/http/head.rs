//! Request and response heads (TEMPORARY lean version until the http branch merges).

use std::ops::Range;

use super::HttpError;
use super::body::BodyFraming;

/// Head size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes in a head; default 32 KiB.
    pub max_header_bytes: usize,
    /// Most header lines; default 100.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
        }
    }
}

type Pair = (Range<usize>, Range<usize>);

fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// True for hop-by-hop headers.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

macro_rules! common_accessors {
    () => {
        /// Header pairs in order.
        pub fn iter<'b>(
            &'b self,
            buf: &'b [u8],
        ) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + 'b {
            self.headers
                .iter()
                .map(move |(n, v)| (&buf[n.clone()], &buf[v.clone()]))
        }

        /// Every value of `name` (case-insensitive).
        pub fn values<'b>(&'b self, buf: &'b [u8], name: &[u8]) -> impl Iterator<Item = &'b [u8]> {
            self.iter(buf)
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        }

        /// The first value of `name`.
        pub fn header<'b>(&'b self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
            self.iter(buf)
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        }

        /// True if the Connection header lists `name`.
        pub fn connection_lists(&self, buf: &[u8], name: &[u8]) -> bool {
            self.values(buf, b"connection")
                .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name)))
        }
    };
}

/// A parsed request head: ranges into the connection buffer.
#[derive(Debug, Default, Clone)]
pub struct RequestHead {
    method: Range<usize>,
    target: Range<usize>,
    path: Range<usize>,
    /// Minor version: 0 or 1.
    pub version: u8,
    headers: Vec<Pair>,
    /// Body framing.
    pub framing: BodyFraming,
    /// Keep-alive after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Connection upgrade requested.
    pub upgrade: bool,
    host: Option<usize>,
}

impl RequestHead {
    common_accessors!();

    /// Method bytes.
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.method.clone()]
    }
    /// Request target (path and query).
    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.target.clone()]
    }
    /// Path without query.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.path.clone()]
    }
    /// Host header value.
    pub fn host<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.host.map(|i| &buf[self.headers[i].1.clone()])
    }
}

fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn content_length(values: &mut dyn Iterator<Item = &[u8]>) -> Result<Option<u64>, HttpError> {
    let mut found: Option<u64> = None;
    for v in values {
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::BadRequest);
        }
        let n: u64 = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(HttpError::BadRequest)?;
        if found.is_some_and(|f| f != n) {
            return Err(HttpError::BadRequest);
        }
        found = Some(n);
    }
    Ok(found)
}

/// Parses a request head from `buf`: `Ok(None)` needs more bytes.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<Option<usize>, HttpError> {
    let mut storage = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut storage);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version)
            if buf.starts_with(b"HTTP/")
                || buf.windows(7).any(|w| w == b" HTTP/2" || w == b" HTTP/3") =>
        {
            return Err(HttpError::Version);
        }
        Err(_) => return Err(HttpError::BadRequest),
    };
    if n > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = req.method.ok_or(HttpError::BadRequest)?;
    let target = req.path.ok_or(HttpError::BadRequest)?;
    head.version = req.version.ok_or(HttpError::BadRequest)?;
    head.method = offset(buf, method.as_bytes());
    head.target = offset(buf, target.as_bytes());
    let path_len = target.find('?').unwrap_or(target.len());
    head.path = head.target.start..head.target.start + path_len;
    head.headers.clear();
    head.host = None;
    for h in req.headers.iter() {
        if !valid_value(h.value) {
            return Err(HttpError::BadRequest);
        }
        if h.name.eq_ignore_ascii_case("host") {
            if head.host.is_some() {
                return Err(HttpError::BadRequest);
            }
            head.host = Some(head.headers.len());
        }
        head.headers
            .push((offset(buf, h.name.as_bytes()), offset(buf, h.value)));
    }
    if head.version == 1 && head.host.is_none() {
        return Err(HttpError::BadRequest);
    }
    let te: Vec<&[u8]> = head.values(buf, b"transfer-encoding").collect();
    let cl = content_length(&mut head.values(buf, b"content-length"))?;
    head.framing = if !te.is_empty() {
        if cl.is_some() || head.version == 0 {
            return Err(HttpError::BadRequest);
        }
        let last = te.iter().flat_map(|v| tokens(v)).last();
        if !last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")) {
            return Err(HttpError::NotImplemented);
        }
        BodyFraming::Chunked
    } else {
        match cl {
            Some(0) | None => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        }
    };
    let conn_close = head
        .values(buf, b"connection")
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"close")));
    let conn_keep = head
        .values(buf, b"connection")
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"keep-alive")));
    head.keep_alive = if head.version == 1 {
        !conn_close
    } else {
        conn_keep
    };
    head.expect_continue = head
        .header(buf, b"expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    head.upgrade = head.header(buf, b"upgrade").is_some()
        && head
            .values(buf, b"connection")
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"upgrade")));
    Ok(Some(n))
}

/// A parsed response head.
#[derive(Debug, Default, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    reason: Range<usize>,
    headers: Vec<Pair>,
    /// Body framing.
    pub framing: BodyFraming,
    /// The upstream allows reuse.
    pub keep_alive: bool,
}

impl ResponseHead {
    common_accessors!();

    /// Reason phrase.
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.reason.clone()]
    }
}

/// Parses a response head.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_was_head: bool,
    head: &mut ResponseHead,
) -> Result<Option<usize>, HttpError> {
    let mut storage = [httparse::EMPTY_HEADER; 100];
    let mut resp = httparse::Response::new(&mut storage);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HttpError::BadRequest),
    };
    if n > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    head.status = resp.code.ok_or(HttpError::BadRequest)?;
    let version = resp.version.ok_or(HttpError::BadRequest)?;
    head.reason = offset(buf, resp.reason.unwrap_or("").as_bytes());
    if resp.reason.is_none_or(str::is_empty) {
        head.reason = 0..0;
    }
    head.headers.clear();
    for h in resp.headers.iter() {
        head.headers
            .push((offset(buf, h.name.as_bytes()), offset(buf, h.value)));
    }
    let chunked = head
        .values(buf, b"transfer-encoding")
        .flat_map(tokens)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
    let cl = content_length(&mut head.values(buf, b"content-length"))?;
    head.framing =
        if request_was_head || head.status < 200 || head.status == 204 || head.status == 304 {
            BodyFraming::None
        } else if chunked {
            BodyFraming::Chunked
        } else if let Some(n) = cl {
            if n == 0 {
                BodyFraming::None
            } else {
                BodyFraming::Length(n)
            }
        } else {
            BodyFraming::UntilClose
        };
    let close = head
        .values(buf, b"connection")
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"close")));
    head.keep_alive = version == 1 && !close;
    Ok(Some(n))
}
