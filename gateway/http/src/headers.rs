//! Header fields as byte ranges into a connection buffer, and the allocation-free lookups the
//! proxy needs: case-insensitive names, comma-list tokens, hop-by-hop classification and the
//! nginx-compatible `Content-Length` / `Host` value checks.

/// A byte range `start..end` into the buffer a head was parsed from. `u32` keeps header
/// tables small (heads are capped far below 4 GiB). Default: the empty range `0..0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte (inclusive). Default: 0.
    pub start: u32,
    /// One past the last byte. Default: 0.
    pub end: u32,
}

impl Span {
    /// The span covering `start..end`.
    #[inline]
    pub const fn new(start: usize, end: usize) -> Self {
        // Heads are bounded by `Limits::max_header_bytes`, far below u32::MAX.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span of `part`, which must be a sub-slice of `buf`.
    #[inline]
    pub(crate) fn of(buf: &[u8], part: &[u8]) -> Self {
        let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        Span::new(start, start + part.len())
    }

    /// The bytes of this span in `buf`; empty when `buf` is not the buffer it was made from
    /// and the range does not fit.
    #[inline]
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// Length in bytes.
    #[inline]
    pub const fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// One header field: its name and value (value without surrounding whitespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name as sent (case preserved).
    pub name: Span,
    /// The field value, leading and trailing whitespace removed.
    pub value: Span,
}

/// Case-insensitive (ASCII) comparison of header names.
#[inline]
pub fn name_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `name` is a hop-by-hop header that a proxy must not forward (RFC 9110 §7.6.1 plus
/// the legacy `Keep-Alive`/`Proxy-Connection` and the proxy auth pair, as nginx does).
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
    HOP.iter()
        .any(|h| h.len() == name.len() && name_eq(h, name))
}

/// The first value of header `name` among `fields`.
pub fn find<'b>(fields: &[HeaderField], buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
    fields
        .iter()
        .find(|f| name_eq(f.name.get(buf), name.as_bytes()))
        .map(|f| f.value.get(buf))
}

/// Every value of header `name` among `fields`, in order.
pub fn values<'f, 'b>(
    fields: &'f [HeaderField],
    buf: &'b [u8],
    name: &'f str,
) -> impl Iterator<Item = &'b [u8]> + 'f
where
    'b: 'f,
{
    fields
        .iter()
        .filter(move |f| name_eq(f.name.get(buf), name.as_bytes()))
        .map(move |f| f.value.get(buf))
}

/// The elements of a comma-separated list value (RFC 9110 §5.6.1), whitespace-trimmed, empty
/// elements skipped.
pub fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').filter_map(|t| {
        let t = t.trim_ascii();
        (!t.is_empty()).then_some(t)
    })
}

/// Whether comma-list `value` contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    list_tokens(value).any(|t| name_eq(t, token.as_bytes()))
}

/// Parses a `Content-Length` value as nginx's `ngx_atoof` does: ASCII digits only (no sign,
/// no inner spaces, not empty), at most `i64::MAX`.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if n > i64::MAX as u64 {
            return None;
        }
    }
    Some(n)
}

/// Validates a host (`Host` header or absolute-form authority) by nginx's rules
/// (`ngx_http_validate_host`): no `..`, no `/`, no control bytes or spaces, not empty once a
/// trailing dot and the port are removed.
pub fn valid_host(host: &[u8]) -> bool {
    let mut dot_pos = usize::MAX - 1;
    let mut host_len = host.len();
    let mut literal = false;
    let mut rest = false;
    for (i, &ch) in host.iter().enumerate() {
        match ch {
            b'.' => {
                if dot_pos.wrapping_add(1) == i {
                    return false;
                }
                dot_pos = i;
            }
            b':' if !literal && !rest => {
                host_len = i;
                rest = true;
            }
            b':' => {}
            b'[' if i == 0 => literal = true,
            b']' if literal && !rest => {
                host_len = i + 1;
                literal = false;
                rest = true;
            }
            b'/' => return false,
            c if c <= 0x20 || c == 0x7f => return false,
            _ => {}
        }
    }
    if host_len > 0 && dot_pos == host_len - 1 {
        host_len -= 1;
    }
    host_len != 0
}

/// Splits `host[:port]` (or `[v6]:port`) into host and optional port bytes.
pub fn split_host_port(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let colon = if host.first() == Some(&b'[') {
        host.iter()
            .position(|&b| b == b']')
            .and_then(|close| (host.get(close + 1) == Some(&b':')).then_some(close + 1))
    } else {
        host.iter().rposition(|&b| b == b':')
    };
    match colon {
        Some(c) => (&host[..c], Some(&host[c + 1..])),
        None => (host, None),
    }
}

/// Request/response headers the parsers act on. Classified by length first so the common
/// case (an unknown name) costs one match and at most two comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    /// A header nginx refuses to see twice in a request (`ngx_http_process_unique_header_line`);
    /// the payload is its bit in the duplicate mask and its canonical name.
    Unique(u16, &'static str),
    Other,
}

/// Bits of the duplicate mask for the headers with their own `Known` variant.
pub(crate) const SEEN_HOST: u16 = 1;
pub(crate) const SEEN_CL: u16 = 1 << 1;
pub(crate) const SEEN_TE: u16 = 1 << 2;
pub(crate) const SEEN_EXPECT: u16 = 1 << 3;

pub(crate) fn classify(name: &[u8]) -> Known {
    let is = |lit: &[u8]| name_eq(name, lit);
    match name.len() {
        4 if is(b"host") => Known::Host,
        6 if is(b"expect") => Known::Expect,
        7 if is(b"upgrade") => Known::Upgrade,
        8 if is(b"if-match") => Known::Unique(1 << 4, "If-Match"),
        8 if is(b"if-range") => Known::Unique(1 << 5, "If-Range"),
        10 if is(b"connection") => Known::Connection,
        13 if is(b"authorization") => Known::Unique(1 << 6, "Authorization"),
        13 if is(b"content-range") => Known::Unique(1 << 7, "Content-Range"),
        13 if is(b"if-none-match") => Known::Unique(1 << 8, "If-None-Match"),
        14 if is(b"content-length") => Known::ContentLength,
        17 if is(b"transfer-encoding") => Known::TransferEncoding,
        17 if is(b"if-modified-since") => Known::Unique(1 << 9, "If-Modified-Since"),
        19 if is(b"if-unmodified-since") => Known::Unique(1 << 10, "If-Unmodified-Since"),
        _ => Known::Other,
    }
}

/// Facts from `Connection` header tokens, shared by request and response parsing.
#[derive(Default)]
pub(crate) struct ConnectionFacts {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

/// Records each token of a `Connection` value into `tokens` and folds the ones that matter.
pub(crate) fn scan_connection(
    buf: &[u8],
    value: Span,
    tokens: &mut Vec<Span>,
    facts: &mut ConnectionFacts,
) {
    for t in list_tokens(value.get(buf)) {
        tokens.push(Span::of(buf, t));
        if name_eq(t, b"close") {
            facts.close = true;
        } else if name_eq(t, b"keep-alive") {
            facts.keep_alive = true;
        } else if name_eq(t, b"upgrade") {
            facts.upgrade = true;
        }
    }
}

/// Whether `name` is one of the header names listed in `Connection` (`tokens`).
pub(crate) fn listed_in(tokens: &[Span], buf: &[u8], name: &[u8]) -> bool {
    tokens.iter().any(|t| name_eq(t.get(buf), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names_are_case_insensitive() {
        for n in [
            "Connection",
            "KEEP-ALIVE",
            "proxy-connection",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "Proxy-Authenticate",
            "Proxy-Authorization",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in ["Host", "Trailers", "TEE", "Authorization", "Content-Length"] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn content_length_follows_ngx_atoof() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"00012"), Some(12));
        assert_eq!(
            parse_content_length(b"9223372036854775807"),
            Some(i64::MAX as u64)
        );
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1 2",
            b"0x10",
            b"1,1",
            b"9223372036854775808",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn host_validation_matches_nginx() {
        for ok in [
            &b"example.com"[..],
            b"example.com.",
            b"example.com:8000",
            b"[::1]:8000",
            b"[::1]",
            b"a_b~c",
            b"EXAMPLE.com",
        ] {
            assert!(valid_host(ok), "{ok:?}");
        }
        for bad in [
            &b""[..],
            b".",
            b":80",
            b"a..b",
            b"a/b",
            b"a b",
            b"a\x7fb",
            b"a\tb",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn split_host_port_handles_ipv6() {
        assert_eq!(
            split_host_port(b"a.com:80"),
            (&b"a.com"[..], Some(&b"80"[..]))
        );
        assert_eq!(split_host_port(b"a.com"), (&b"a.com"[..], None));
        assert_eq!(
            split_host_port(b"[::1]:8"),
            (&b"[::1]"[..], Some(&b"8"[..]))
        );
        assert_eq!(split_host_port(b"[::1]"), (&b"[::1]"[..], None));
    }

    #[test]
    fn list_tokens_trim_and_skip_empty() {
        let v: Vec<&[u8]> = list_tokens(b" keep-alive ,, Upgrade,\tX-Foo ").collect();
        assert_eq!(v, vec![&b"keep-alive"[..], b"Upgrade", b"X-Foo"]);
        assert!(has_token(b"Keep-Alive, close", "close"));
        assert!(!has_token(b"closed", "close"));
    }

    #[test]
    fn classify_known_names() {
        assert_eq!(classify(b"HOST"), Known::Host);
        assert_eq!(classify(b"content-length"), Known::ContentLength);
        assert_eq!(classify(b"Transfer-Encoding"), Known::TransferEncoding);
        assert!(matches!(
            classify(b"Authorization"),
            Known::Unique(_, "Authorization")
        ));
        assert_eq!(classify(b"X-Host"), Known::Other);
    }
}
