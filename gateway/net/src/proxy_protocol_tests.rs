use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use super::*;
use ProxyProtocolError as E;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

fn header(src: &str, dst: &str) -> ProxyHeader {
    ProxyHeader {
        source: Some(sa(src)),
        destination: Some(sa(dst)),
    }
}

/// Parses a complete header, checking that every shorter prefix asks for more bytes and that
/// bytes after the header are not consumed.
fn parse_whole(h: &[u8]) -> ProxyHeader {
    for cut in 0..h.len() {
        assert_eq!(parse(&h[..cut]), Ok(None), "prefix of {cut} bytes of {h:?}");
    }
    let mut with_data = h.to_vec();
    with_data.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let (parsed, n) = parse(&with_data)
        .expect("valid header")
        .expect("complete header");
    assert_eq!(n, h.len(), "consumed exactly the header");
    assert_eq!(parse(h), Ok(Some((parsed, n))));
    parsed
}

/// The first error any prefix reports, so a rejection can be checked to come early.
fn first_error(h: &[u8]) -> (usize, ProxyProtocolError) {
    for cut in 1..=h.len() {
        if let Err(e) = parse(&h[..cut]) {
            // Once rejected, every longer buffer is rejected too.
            for longer in cut..=h.len() {
                assert!(parse(&h[..longer]).is_err(), "{h:?} accepted at {longer}");
            }
            return (cut, e);
        }
    }
    panic!("{:?} was never rejected", String::from_utf8_lossy(h));
}

fn reject(h: &[u8]) -> ProxyProtocolError {
    first_error(h).1
}

// ---- v1 ----

#[test]
fn v1_tcp4() {
    let h = parse_whole(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_eq!(h, header("192.168.0.1:56324", "192.168.0.11:443"));
    let h = parse_whole(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
    assert_eq!(h, header("0.0.0.0:0", "255.255.255.255:65535"));
}

#[test]
fn v1_tcp6() {
    let h = parse_whole(b"PROXY TCP6 2001:db8::1 ::1 1111 2222\r\n");
    assert_eq!(h, header("[2001:db8::1]:1111", "[::1]:2222"));
    let full = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(full.len(), 104, "the spec's longest TCP6 line");
    let h = parse_whole(full);
    assert_eq!(h.source.map(|s| s.port()), Some(65535));
}

#[test]
fn v1_unknown_ignores_the_rest_of_the_line() {
    assert_eq!(parse_whole(b"PROXY UNKNOWN\r\n"), ProxyHeader::default());
    assert_eq!(
        parse_whole(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"),
        ProxyHeader::default()
    );
    assert_eq!(
        parse_whole(b"PROXY UNKNOWN anything at all\r\n"),
        ProxyHeader::default()
    );
}

#[test]
fn v1_lines_up_to_107_bytes_are_accepted_and_longer_ones_rejected() {
    let worst = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                  ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst.len(), V1_MAX_LEN);
    assert_eq!(parse_whole(worst), ProxyHeader::default());

    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN - 1, b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(long.len(), V1_MAX_LEN + 1);
    assert_eq!(first_error(&long), (V1_MAX_LEN, E::V1TooLong));

    let mut no_crlf = b"PROXY TCP4 ".to_vec();
    no_crlf.resize(500, b'1');
    assert_eq!(first_error(&no_crlf), (V1_MAX_LEN, E::V1TooLong));
}

#[test]
fn v1_rejects_malformed_lines() {
    let cases: &[&[u8]] = &[
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222 3333\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222 \r\n",
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4\r\n",
        b"PROXY TCP4 \r\n",
        b"PROXY \r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1111 2222\r\n",
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1111 2222\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1111 2222\r\n",
        // Addresses.
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4 1..3.4 5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4 1.2.3.4 ::1 1111 2222\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1111 2222\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1111 2222\r\n",
        b"PROXY TCP6 ::1 ::g 1111 2222\r\n",
        b"PROXY TCP6 [::1] ::1 1111 2222\r\n",
        b"PROXY TCP4 localhost 5.6.7.8 1111 2222\r\n",
        // Ports.
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2222\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 99999\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01111 2222\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 00 2222\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2222\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2222\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 0x10\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 100000 2222\r\n",
        // Line endings and bytes.
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\r\n",
        b"PROXY TCP4 1.2.3.4\t5.6.7.8 1111 2222\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\0\r\n",
        b"PROXY UNKNOWN \xff\r\n",
        b"PROXY\r\n",
        b"PROXYTCP4 1.2.3.4 5.6.7.8 1111 2222\r\n",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n",
    ];
    for h in cases {
        let e = reject(h);
        assert_ne!(e, E::V1TooLong, "{:?}", String::from_utf8_lossy(h));
    }
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\n"),
        Err(E::V1Syntax("LF without CR"))
    );
    assert_eq!(
        parse(b"PROXY UNKNOWN\rX"),
        Err(E::V1Syntax("CR without LF"))
    );
}

#[test]
fn v1_accepts_every_port_and_octet_edge() {
    for (port, ok) in [("0", true), ("9", true), ("65535", true), ("65536", false)] {
        let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 80\r\n");
        assert_eq!(parse(line.as_bytes()).is_ok(), ok, "{line:?}");
    }
    for (octet, ok) in [
        ("0", true),
        ("10", true),
        ("255", true),
        ("256", false),
        ("00", false),
    ] {
        let line = format!("PROXY TCP4 1.2.3.{octet} 5.6.7.8 1 80\r\n");
        assert_eq!(parse(line.as_bytes()).is_ok(), ok, "{line:?}");
    }
}

#[test]
fn other_protocols_are_rejected_on_their_first_distinguishing_byte() {
    assert_eq!(first_error(b"GET / HTTP/1.1\r\n"), (1, E::Signature));
    assert_eq!(first_error(b"POST / HTTP/1.1\r\n"), (2, E::Signature));
    assert_eq!(first_error(b"PUT / HTTP/1.1\r\n"), (2, E::Signature));
    assert_eq!(first_error(b"PATCH / HTTP/1.1\r\n"), (2, E::Signature));
    assert_eq!(first_error(b"PRI * HTTP/2.0\r\n"), (3, E::Signature));
    // A TLS ClientHello record.
    assert_eq!(first_error(b"\x16\x03\x01\x02\x00\x01"), (1, E::Signature));
    assert_eq!(first_error(b"\r\n\r\nGET"), (5, E::Signature));
    assert_eq!(parse(b""), Ok(None));
}

// ---- v2 ----

fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(ver_cmd);
    h.push(family);
    let len = u16::try_from(body.len()).expect("test body fits");
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn inet_body() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 1, 198, 51, 100, 7];
    b.extend_from_slice(&1111u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

fn inet6_body() -> Vec<u8> {
    let src: std::net::Ipv6Addr = "2001:db8::1".parse().expect("v6");
    let dst: std::net::Ipv6Addr = "2001:db8::2".parse().expect("v6");
    let mut b = src.octets().to_vec();
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&40000u16.to_be_bytes());
    b.extend_from_slice(&8443u16.to_be_bytes());
    b
}

#[test]
fn v2_tcp_over_ipv4_and_ipv6() {
    let h = parse_whole(&v2(0x21, 0x11, &inet_body()));
    assert_eq!(h, header("192.0.2.1:1111", "198.51.100.7:443"));
    let h = parse_whole(&v2(0x21, 0x21, &inet6_body()));
    assert_eq!(h, header("[2001:db8::1]:40000", "[2001:db8::2]:8443"));
}

#[test]
fn v2_tlvs_after_the_addresses_are_skipped() {
    let mut body = inet_body();
    // PP2_TYPE_AUTHORITY "example.com", then a NOOP padding TLV.
    body.extend_from_slice(&[0x02, 0x00, 0x0b]);
    body.extend_from_slice(b"example.com");
    body.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]);
    let raw = v2(0x21, 0x11, &body);
    let h = parse_whole(&raw);
    assert_eq!(h.source, Some(sa("192.0.2.1:1111")));
    assert_eq!(
        parse(&raw).expect("ok").expect("complete").1,
        16 + body.len()
    );
}

#[test]
fn v2_the_largest_header_parses() {
    let mut body = inet6_body();
    body.resize(usize::from(u16::MAX), 0xaa);
    let raw = v2(0x21, 0x21, &body);
    assert_eq!(raw.len(), V2_MAX_LEN);
    assert_eq!(parse(&raw[..raw.len() - 1]), Ok(None));
    let (h, n) = parse(&raw).expect("ok").expect("complete");
    assert_eq!(n, V2_MAX_LEN);
    assert_eq!(h.destination, Some(sa("[2001:db8::2]:8443")));
}

#[test]
fn v2_local_uses_the_real_endpoints_whatever_follows() {
    assert_eq!(parse_whole(&v2(0x20, 0x00, &[])), ProxyHeader::default());
    // A LOCAL header may still carry (ignored) addresses, and its family is not checked.
    assert_eq!(
        parse_whole(&v2(0x20, 0x11, &inet_body())),
        ProxyHeader::default()
    );
    assert_eq!(
        parse_whole(&v2(0x20, 0xff, &[1, 2, 3])),
        ProxyHeader::default()
    );
}

#[test]
fn v2_families_without_ip_addresses_give_none() {
    assert_eq!(parse_whole(&v2(0x21, 0x00, &[])), ProxyHeader::default());
    assert_eq!(
        parse_whole(&v2(0x21, 0x00, &[9; 12])),
        ProxyHeader::default()
    );
    assert_eq!(
        parse_whole(&v2(0x21, 0x31, &[b'/'; 216])),
        ProxyHeader::default()
    );
    assert_eq!(
        parse_whole(&v2(0x21, 0x32, &[b'/'; 220])),
        ProxyHeader::default()
    );
    // Datagram transports name no TCP client: the real endpoints apply, as in nginx.
    assert_eq!(
        parse_whole(&v2(0x21, 0x12, &inet_body())),
        ProxyHeader::default()
    );
    assert_eq!(
        parse_whole(&v2(0x21, 0x22, &inet6_body())),
        ProxyHeader::default()
    );
}

#[test]
fn v2_rejects_bad_version_command_family_and_length_as_soon_as_seen() {
    assert_eq!(
        first_error(&v2(0x11, 0x11, &inet_body())),
        (13, E::V2Version(1))
    );
    assert_eq!(
        first_error(&v2(0x31, 0x11, &inet_body())),
        (13, E::V2Version(3))
    );
    assert_eq!(
        first_error(&v2(0x01, 0x11, &inet_body())),
        (13, E::V2Version(0))
    );
    assert_eq!(
        first_error(&v2(0x22, 0x11, &inet_body())),
        (13, E::V2Command(2))
    );
    assert_eq!(
        first_error(&v2(0x2f, 0x11, &inet_body())),
        (13, E::V2Command(15))
    );
    for family in [0x01, 0x02, 0x10, 0x13, 0x20, 0x30, 0x41, 0xff] {
        assert_eq!(
            first_error(&v2(0x21, family, &[0; 216])),
            (14, E::V2Family(family)),
            "{family:#x}"
        );
    }
    assert_eq!(
        first_error(&v2(0x21, 0x11, &inet_body()[..11])),
        (
            16,
            E::V2Length {
                family: 0x11,
                len: 11
            }
        )
    );
    assert_eq!(
        first_error(&v2(0x21, 0x21, &inet_body())),
        (
            16,
            E::V2Length {
                family: 0x21,
                len: 12
            }
        )
    );
    assert_eq!(
        first_error(&v2(0x21, 0x31, &[0; 215])),
        (
            16,
            E::V2Length {
                family: 0x31,
                len: 215
            }
        )
    );
}

#[test]
fn v2_signature_mismatch_is_rejected_at_the_first_wrong_byte() {
    let mut raw = v2(0x21, 0x11, &inet_body());
    raw[7] = b'X';
    assert_eq!(first_error(&raw), (8, E::Signature));
    let mut raw = v2(0x21, 0x11, &inet_body());
    raw[4] = b' ';
    assert_eq!(first_error(&raw), (5, E::Signature));
}

#[test]
fn errors_read_well() {
    assert_eq!(
        E::V1TooLong.to_string(),
        "PROXY v1 line longer than 107 bytes"
    );
    assert_eq!(
        E::V2Family(0x41).to_string(),
        "invalid PROXY v2 family/transport byte 0x41"
    );
}

// ---- read_header over a stream ----

/// A stream that hands out pre-cut chunks, one per read, then EOF.
struct Chunks(RefCell<VecDeque<Vec<u8>>>);

impl Chunks {
    fn new(data: &[u8], size: usize) -> Self {
        Chunks(RefCell::new(
            data.chunks(size).map(<[u8]>::to_vec).collect(),
        ))
    }
}

impl Stream for Chunks {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let spare = buf.capacity() - buf.len();
        let mut chunks = self.0.borrow_mut();
        let Some(mut chunk) = chunks.pop_front() else {
            return (Ok(0), buf);
        };
        if chunk.len() > spare {
            chunks.push_front(chunk.split_off(spare));
        }
        buf.extend_from_slice(&chunk);
        (Ok(chunk.len()), buf)
    }
    async fn write_all(&self, buf: Vec<u8>, _: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        (Ok(()), buf)
    }
    async fn shutdown(&self) -> io::Result<()> {
        Ok(())
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn read_header_returns_the_bytes_after_the_header_for_any_chunking() {
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    for head in [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n".to_vec(),
        v2(0x21, 0x11, &inet_body()),
    ] {
        let mut wire = head.clone();
        wire.extend_from_slice(request);
        for size in [1, 2, 3, 7, 16, 17, wire.len()] {
            let s = Chunks::new(&wire, size);
            let (h, rest) = block_on(read_header(&s)).expect("header");
            assert!(h.source.is_some());
            // Reading stops once the header is complete: the rest is what was already read.
            let mut all = rest;
            while let Some(c) = s.0.borrow_mut().pop_front() {
                all.extend_from_slice(&c);
            }
            assert_eq!(all, request, "chunk size {size}");
        }
    }
}

#[test]
fn read_header_grows_its_buffer_for_large_v2_headers() {
    let mut body = inet_body();
    body.resize(20_000, 0);
    let mut wire = v2(0x21, 0x11, &body);
    wire.extend_from_slice(b"tail");
    let s = Chunks::new(&wire, 3000);
    let (h, rest) = block_on(read_header(&s)).expect("header");
    assert_eq!(h.source, Some(sa("192.0.2.1:1111")));
    let mut all = rest;
    while let Some(c) = s.0.borrow_mut().pop_front() {
        all.extend_from_slice(&c);
    }
    assert_eq!(all, b"tail");
}

#[test]
fn read_header_errors_on_garbage_and_on_early_eof() {
    let s = Chunks::new(b"GET / HTTP/1.1\r\n\r\n", 100);
    let e = block_on(read_header(&s)).expect_err("not a PROXY header");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let inner = e
        .get_ref()
        .and_then(|e| e.downcast_ref::<ProxyProtocolError>());
    assert_eq!(inner, Some(&E::Signature));

    let s = Chunks::new(b"PROXY TCP4 1.2.3.4", 5);
    let e = block_on(read_header(&s)).expect_err("truncated");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}
