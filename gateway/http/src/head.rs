//! Request and response heads parsed with `httparse` into reusable structs that hold byte
//! ranges into the caller's connection buffer, plus the framing and connection facts the proxy
//! needs, computed in the same pass.
//!
//! Request checks follow nginx 1.25 (what Kong 3.x runs on), so a client sees the same
//! verdicts from gangway as from Kong:
//! - duplicate `Host`, `Content-Length`, `Transfer-Encoding`, `Expect`, `Authorization`,
//!   `Content-Range` and `If-*` headers: 400 (nginx rejects even identical duplicates);
//! - `Content-Length` other than plain digits up to `i64::MAX`: 400;
//! - `Transfer-Encoding` on HTTP/1.0: 400; with `Content-Length`: 400; any value other than
//!   exactly `chunked`: 501;
//! - HTTP/1.1 without `Host`, or an invalid host: 400; TRACE and CONNECT: 405;
//! - HTTP versions other than 1.0/1.1: 505 (nginx would take 1.2+ as 1.1; we refuse them);
//! - obs-fold, bytes outside the field grammar, space before the colon: 400 (stricter than
//!   nginx, which skips header names with odd bytes instead of refusing them);
//! - request line over `max_line_bytes`: 414; header line over it, whole head over
//!   `max_header_bytes`, or more than `max_headers` fields: 494.
//!
//! Upstream response heads get the same duplicate and framing checks nginx's proxy module
//! applies; every failure there is [`HttpError::InvalidResponse`] (502).

use super::error::HttpError;

mod request;
mod response;

pub use request::{RequestHead, parse_request};
pub use response::{ResponseHead, parse_response};

/// Hard cap on header slots per parse; they live on the stack, uninitialised, for the call
/// (16 KiB). nginx counts no headers, only their bytes (`max_header_bytes` here): the cap
/// sits where 32 KiB of short header lines would end.
pub const MAX_HEADERS_CAP: usize = 512;

/// Size limits applied while parsing a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line or header line, like nginx's `large_client_header_buffers` buffer
    /// size. Default: 8192.
    pub max_line_bytes: usize,
    /// Largest whole head, like nginx's 4 × 8k `large_client_header_buffers`. Default: 32768.
    pub max_header_bytes: usize,
    /// Most header fields; capped at [`MAX_HEADERS_CAP`]. Default: the cap. It was 100, so a
    /// request or an upstream response with 101 short headers (many `Set-Cookie` lines)
    /// failed where nginx takes it.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: MAX_HEADERS_CAP,
        }
    }
}

/// HTTP version of a parsed head. Default: HTTP/1.1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    #[default]
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// The request method, classified once so callers compare enums, not bytes. Methods are
/// case-sensitive. Default: GET.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// PATCH.
    Patch,
    /// OPTIONS.
    Options,
    /// CONNECT (refused with 405).
    Connect,
    /// TRACE (refused with 405).
    Trace,
    /// Any other token; read its bytes with `RequestHead::method`.
    Other,
}

impl Method {
    /// Classifies a method token.
    pub fn from_bytes(m: &[u8]) -> Self {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }
}

/// Where an incomplete head broke a limit.
enum Overflow {
    FirstLine,
    HeaderLine,
    Total,
}

/// Checks an incomplete head against the limits, so a peer cannot make us buffer forever.
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), Overflow> {
    let line_start = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if buf.len() - line_start > limits.max_line_bytes {
        let lead = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len());
        return Err(if line_start <= lead {
            Overflow::FirstLine
        } else {
            Overflow::HeaderLine
        });
    }
    if buf.len() >= limits.max_header_bytes {
        return Err(Overflow::Total);
    }
    Ok(())
}

/// Tells a well-formed but unsupported version (505) from garbage (400) after httparse
/// refused the version token of a request line.
fn version_error(buf: &[u8]) -> HttpError {
    let malformed = HttpError::MalformedHead("invalid HTTP version");
    let lead = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[lead..];
    let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(p) => (&rest[..p], true),
        None => (rest, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let token = &line[line.iter().rposition(|&b| b == b' ').map_or(0, |p| p + 1)..];
    let Some(v) = token.strip_prefix(b"HTTP/") else {
        return malformed;
    };
    let (major, minor) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], Some(&v[dot + 1..])),
        None => (v, None),
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(major) {
        return malformed;
    }
    match minor {
        Some(m) if digits(m) && (major != b"1" || (complete && m != b"0" && m != b"1")) => {
            HttpError::UnsupportedVersion
        }
        Some(m) if !complete && m.iter().all(u8::is_ascii_digit) && major != b"1" => {
            HttpError::UnsupportedVersion
        }
        None if !complete && major != b"1" => HttpError::UnsupportedVersion,
        _ => malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_errors_split_505_from_400() {
        for v in [
            &b"GET / HTTP/2.0\r\n"[..],
            b"GET / HTTP/3.0\r\n\r\n",
            b"GET / HTTP/1.2\r\n",
            b"GET / HTTP/2",
            b"GET / HTTP/10.1\r\n",
        ] {
            assert_eq!(version_error(v), HttpError::UnsupportedVersion, "{v:?}");
        }
        for v in [
            &b"GET / FOO/1.1\r\n"[..],
            b"GET / HTTP/x\r\n",
            b"GET / HTTP/1.1x\r\n",
            b"GET / http/1.1\r\n",
        ] {
            assert!(
                matches!(version_error(v), HttpError::MalformedHead(_)),
                "{v:?}"
            );
        }
    }

    #[test]
    fn method_classification_is_case_sensitive() {
        assert_eq!(Method::from_bytes(b"GET"), Method::Get);
        assert_eq!(Method::from_bytes(b"get"), Method::Other);
        assert_eq!(Method::from_bytes(b"TRACE"), Method::Trace);
    }
}
