//! The PROXY protocol (haproxy's `proxy-protocol.txt`), versions 1 (text) and 2 (binary): a
//! header a load balancer sends before the client's first byte, naming the client's address.
//!
//! [`parse`] is pure and incremental: it says "need more bytes" until a header is complete, so
//! callers can read in any chunking. [`read_header`] drives it over a [`Stream`] at accept time
//! and hands back the bytes read past the header (the start of the HTTP request or of the TLS
//! ClientHello). A listener with `proxy_protocol` requires the header: anything else is an
//! error and the connection is closed, as the spec demands (no guessing, no port sharing).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Stream;

/// Longest v1 line including its CRLF (`PROXY UNKNOWN` with two full IPv6 addresses).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header: signature, version/command, family, length.
pub const V2_FIXED_LEN: usize = 16;
/// Longest v2 header: the fixed part plus the largest 16-bit length.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// The v2 signature: chosen so that no common protocol starts with it.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 preamble: the protocol name and exactly one space.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// Addresses a PROXY header carries.
///
/// Both are `None` when the header says the connection is not proxied (v1 `UNKNOWN`, v2
/// `LOCAL`) or names a family without IP addresses (v2 `AF_UNSPEC`, `AF_UNIX`, or a datagram
/// transport): the real connection endpoints then apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyHeader {
    /// The original client's address and port. Default none.
    pub source: Option<SocketAddr>,
    /// The address and port the client connected to. Default none.
    pub destination: Option<SocketAddr>,
}

/// Why a PROXY header was rejected. The connection is closed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyProtocolError {
    /// The stream does not start with `PROXY ` (v1) or the v2 signature.
    #[error("no PROXY protocol header")]
    Signature,
    /// A v1 line without CRLF in its first 107 bytes.
    #[error("PROXY v1 line longer than {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A v1 line that does not match the grammar; the text names the part.
    #[error("malformed PROXY v1 line: {0}")]
    V1Syntax(&'static str),
    /// A v2 version nibble other than 2.
    #[error("unsupported PROXY v2 version {0}")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("unknown PROXY v2 command {0}")]
    V2Command(u8),
    /// A v2 family/transport byte outside the combinations the spec defines.
    #[error("invalid PROXY v2 family/transport byte {0:#04x}")]
    V2Family(u8),
    /// A v2 length shorter than its family's address block.
    #[error("PROXY v2 length {len} too short for family byte {family:#04x}")]
    V2Length {
        /// The family/transport byte.
        family: u8,
        /// The announced length.
        len: u16,
    },
}

/// Parses a PROXY header (v1 or v2) at the start of `buf`.
///
/// `Ok(None)`: `buf` is a valid beginning of a header; read more and call again with the
/// longer buffer. `Ok(Some((header, n)))`: the header is the first `n` bytes; what follows is
/// the client's data. `Err`: not a valid header (detected as early as the bytes allow, so a
/// client speaking HTTP or TLS directly is rejected on its first byte).
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    match first {
        b'P' => parse_v1(buf),
        b'\r' => parse_v2(buf),
        _ => Err(ProxyProtocolError::Signature),
    }
}

/// Reads a PROXY header from `stream`, byte-count agnostic (the header may arrive in pieces).
/// Returns the header and the bytes read past it, which belong to the client's protocol.
/// Errors: `InvalidData` wrapping a [`ProxyProtocolError`], `UnexpectedEof` when the peer
/// closes first, or the stream's own error. The caller bounds the time it may take.
pub async fn read_header<S: Stream>(stream: &S) -> io::Result<(ProxyHeader, Vec<u8>)> {
    // One read usually brings the whole header plus the start of the request: the spec asks
    // senders to emit the header in a single segment.
    let mut buf = Vec::with_capacity(4096);
    loop {
        match parse(&buf) {
            Ok(Some((header, n))) => {
                buf.drain(..n);
                return Ok((header, buf));
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if buf.len() == buf.capacity() {
            // Only a v2 header with large TLVs gets here; parse bounds it at V2_MAX_LEN.
            buf.reserve(buf.len());
        }
        let (res, back) = stream.read(buf).await;
        buf = back;
        if res? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the connection inside the PROXY protocol header",
            ));
        }
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    use ProxyProtocolError::{Signature, V1Syntax, V1TooLong};
    let head = &buf[..buf.len().min(V1_PREFIX.len())];
    if head != &V1_PREFIX[..head.len()] {
        return Err(Signature);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let end = window.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &window[..end.unwrap_or(window.len())];
    if !line.iter().all(|&b| is_v1_char(b)) {
        return Err(V1Syntax("non-printable byte"));
    }
    let Some(end) = end else {
        return if buf.len() >= V1_MAX_LEN {
            Err(V1TooLong)
        } else {
            Ok(None)
        };
    };
    // The spec forbids ending the line with a lone CR or LF.
    if window[end] == b'\n' {
        return Err(V1Syntax("LF without CR"));
    }
    match window.get(end + 1) {
        Some(b'\n') => {}
        Some(_) => return Err(V1Syntax("CR without LF")),
        // The CR is the 107th byte: its LF would be one too many.
        None if buf.len() >= V1_MAX_LEN => return Err(V1TooLong),
        None => return Ok(None),
    }
    let header = parse_v1_line(&line[V1_PREFIX.len()..])?;
    Ok(Some((header, end + 2)))
}

/// Bytes a v1 line may hold before its CRLF.
fn is_v1_char(b: u8) -> bool {
    b.is_ascii_graphic() || b == b' '
}

/// Parses what follows `PROXY ` on a complete line (without the CRLF).
fn parse_v1_line(rest: &[u8]) -> Result<ProxyHeader, ProxyProtocolError> {
    use ProxyProtocolError::V1Syntax;
    let (proto, fields) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let v6 = match proto {
        // The receiver must ignore whatever follows UNKNOWN.
        b"UNKNOWN" => return Ok(ProxyHeader::default()),
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(V1Syntax("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields = fields.ok_or(V1Syntax("missing addresses"))?;
    let mut it = fields.split(|&b| b == b' ');
    let mut next = |what| it.next().ok_or(V1Syntax(what));
    let src = next("missing source address")?;
    let dst = next("missing destination address")?;
    let sport = next("missing source port")?;
    let dport = next("missing destination port")?;
    if it.next().is_some() {
        return Err(V1Syntax("extra fields after the ports"));
    }
    let addr = |text: &[u8]| -> Result<IpAddr, ProxyProtocolError> {
        if v6 {
            parse_v1_ipv6(text).map(IpAddr::V6)
        } else {
            parse_v1_ipv4(text).map(IpAddr::V4)
        }
    };
    let (src, dst) = (addr(src)?, addr(dst)?);
    let (sport, dport) = (parse_v1_port(sport)?, parse_v1_port(dport)?);
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
    })
}

/// A decimal number of 1 to `max_digits` digits without heading zeroes (the spec forbids them
/// to avoid octal confusion), at most `max`.
fn parse_v1_decimal(text: &[u8], max_digits: usize, max: u32) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || (text.len() > 1 && text[0] == b'0') {
        return None;
    }
    let mut n: u32 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    (n <= max).then_some(n)
}

fn parse_v1_port(text: &[u8]) -> Result<u16, ProxyProtocolError> {
    parse_v1_decimal(text, 5, u32::from(u16::MAX))
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(ProxyProtocolError::V1Syntax("invalid port"))
}

fn parse_v1_ipv4(text: &[u8]) -> Result<Ipv4Addr, ProxyProtocolError> {
    let err = ProxyProtocolError::V1Syntax("invalid IPv4 address");
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next().ok_or(err)?;
        let n = parse_v1_decimal(part, 3, 255).ok_or(err)?;
        *octet = u8::try_from(n).map_err(|_| err)?;
    }
    if parts.next().is_some() {
        return Err(err);
    }
    Ok(Ipv4Addr::from(octets))
}

fn parse_v1_ipv6(text: &[u8]) -> Result<Ipv6Addr, ProxyProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyProtocolError::V1Syntax("invalid IPv6 address"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    use ProxyProtocolError::{Signature, V2Command, V2Length, V2Version};
    let sig = &buf[..buf.len().min(V2_SIGNATURE.len())];
    if sig != &V2_SIGNATURE[..sig.len()] {
        return Err(Signature);
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(None);
    };
    if ver_cmd >> 4 != 2 {
        return Err(V2Version(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        cmd => return Err(V2Command(cmd)),
    };
    let Some(&family) = buf.get(13) else {
        return Ok(None);
    };
    // LOCAL discards the address block, family included, so its family is not checked.
    let block = if local { 0 } else { address_block_len(family)? };
    let Some(len) = buf.get(14..16) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([len[0], len[1]]);
    if usize::from(len) < block {
        return Err(V2Length { family, len });
    }
    let total = V2_FIXED_LEN + usize::from(len);
    if buf.len() < total {
        return Ok(None);
    }
    // Anything after the address block is TLVs, which we do not use.
    let addrs = &buf[V2_FIXED_LEN..V2_FIXED_LEN + block];
    let header = match (local, family) {
        (false, 0x11) => {
            let ip =
                |at: usize| Ipv4Addr::new(addrs[at], addrs[at + 1], addrs[at + 2], addrs[at + 3]);
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0).into(), be16(addrs, 8))),
                destination: Some(SocketAddr::new(ip(4).into(), be16(addrs, 10))),
            }
        }
        (false, 0x21) => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&addrs[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0).into(), be16(addrs, 32))),
                destination: Some(SocketAddr::new(ip(16).into(), be16(addrs, 34))),
            }
        }
        // LOCAL, UNSPEC, UNIX sockets and datagram transports: the real endpoints apply.
        _ => ProxyHeader::default(),
    };
    Ok(Some((header, total)))
}

/// The address block length a PROXY command's family/transport byte requires; an error for
/// combinations the spec leaves undefined.
fn address_block_len(family: u8) -> Result<usize, ProxyProtocolError> {
    match family {
        0x00 => Ok(0),
        0x11 | 0x12 => Ok(12),
        0x21 | 0x22 => Ok(36),
        0x31 | 0x32 => Ok(216),
        _ => Err(ProxyProtocolError::V2Family(family)),
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
