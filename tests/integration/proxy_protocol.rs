//! Listeners with the `proxy_protocol` flag: a PROXY header (v1 or v2) must come first, before
//! HTTP or TLS; anything else closes the connection without a response.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::harness::client::{Conn, read_response};
use crate::harness::{Gangway, Options, Upstream, config_with_routes, connect};
use crate::tls::AcceptAny;

const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

fn start(up: &Upstream, opts: impl FnOnce(Options) -> Options) -> Gangway {
    let yaml = config_with_routes(up.addr, "      - name: r\n        paths: [\"/echo\"]\n");
    Gangway::start_with(opts(Options::new(yaml).proxy_flags("proxy_protocol")))
}

fn v1(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let fam = if src.contains(':') { "TCP6" } else { "TCP4" };
    format!("PROXY {fam} {src} {dst} {sport} {dport}\r\n").into_bytes()
}

/// A v2 PROXY header for TCP over IPv4 (`cmd` 1) or a LOCAL one (`cmd` 0), with a TLV.
fn v2(cmd: u8, src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(if cmd == 0 { 0x00 } else { 0x11 });
    let mut body = Vec::new();
    if cmd == 1 {
        body.extend_from_slice(&src);
        body.extend_from_slice(&[127, 0, 0, 1]);
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&8000u16.to_be_bytes());
    }
    // PP2_TYPE_AUTHORITY, which the gateway skips.
    body.extend_from_slice(&[0x02, 0x00, 0x03]);
    body.extend_from_slice(b"a.b");
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// Writes `parts` (pausing between them so they arrive as separate segments) and reads one
/// response.
fn exchange(addr: SocketAddr, parts: &[&[u8]]) -> crate::harness::Response {
    let mut sock = connect(addr);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        sock.write_all(part).expect("write");
    }
    read_response(&mut BufReader::new(sock), false).expect("a response")
}

/// Asserts the gateway closes the connection without sending a byte.
fn assert_closed_silently(mut sock: TcpStream, what: &str) {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    match sock.read_to_end(&mut got) {
        Ok(_) => assert!(
            got.is_empty(),
            "{what}: got {:?}",
            String::from_utf8_lossy(&got)
        ),
        // Unread request bytes make the kernel reset instead of FIN.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => assert!(got.is_empty()),
        Err(e) => panic!("{what}: connection not closed: {e}"),
    }
}

#[test]
fn proxy_protocol_v1_then_a_request_is_proxied() {
    let up = Upstream::start();
    let gw = start(&up, |o| o);
    let head = v1("203.0.113.7", "127.0.0.1", 40000, 8000);
    let mut one = head.clone();
    one.extend_from_slice(REQUEST);
    let r = exchange(gw.proxy, &[&one]);
    assert_eq!(r.status, 200, "{}", r.text());
    // The header in pieces, then the request in its own segment.
    let r = exchange(gw.proxy, &[&head[..9], &head[9..], REQUEST]);
    assert_eq!(r.status, 200, "{}", r.text());
    let v6 = v1("2001:db8::7", "::1", 1, 2);
    let r = exchange(gw.proxy, &[&v6, REQUEST]);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = exchange(gw.proxy, &[b"PROXY UNKNOWN\r\n", REQUEST]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn proxy_protocol_v2_then_a_request_is_proxied() {
    let up = Upstream::start();
    let gw = start(&up, |o| o);
    let mut one = v2(1, [198, 51, 100, 9], 5555);
    one.extend_from_slice(REQUEST);
    let r = exchange(gw.proxy, &[&one]);
    assert_eq!(r.status, 200, "{}", r.text());
    let local = v2(0, [0; 4], 0);
    let r = exchange(gw.proxy, &[&local[..5], &local[5..], REQUEST]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn proxy_protocol_header_precedes_keep_alive_requests() {
    let up = Upstream::start();
    let gw = start(&up, |o| o);
    let mut conn = Conn::open(gw.proxy);
    // Header and first request in one write: the bytes past the header must not be lost.
    let mut first = v1("203.0.113.7", "127.0.0.1", 40000, 8000);
    first.extend_from_slice(b"GET /echo/1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    conn.write(&first).expect("write");
    let r = conn.read(false).expect("first response");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = conn.get("/echo/2").expect("second response");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn proxy_protocol_listener_closes_on_a_missing_or_malformed_header() {
    let up = Upstream::start();
    let gw = start(&up, |o| o);
    let cases: [(&str, Vec<u8>); 5] = [
        ("plain HTTP without a header", REQUEST.to_vec()),
        (
            "bad v1 address",
            [&b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n"[..], REQUEST].concat(),
        ),
        (
            "v1 port out of range",
            [&b"PROXY TCP4 1.1.1.1 127.0.0.1 1 65536\r\n"[..], REQUEST].concat(),
        ),
        (
            "v1 without CRLF in 107 bytes",
            [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat(),
        ),
        ("v2 with version 1", {
            let mut h = v2(1, [1, 2, 3, 4], 1);
            h[12] = 0x11;
            h
        }),
    ];
    for (what, bytes) in cases {
        let mut sock = connect(gw.proxy);
        sock.write_all(&bytes).expect("write");
        assert_closed_silently(sock, what);
    }
    // The listener still serves well-formed connections.
    let r = exchange(gw.proxy, &[&v1("1.1.1.1", "127.0.0.1", 1, 2), REQUEST]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn proxy_protocol_header_times_out_with_client_header_timeout() {
    let up = Upstream::start();
    let gw = start(&up, |o| o.env("GANGWAY_CLIENT_HEADER_TIMEOUT_MS", "300"));
    let mut sock = connect(gw.proxy);
    sock.write_all(b"PROXY TCP4 1.1.1.1").expect("write");
    let started = Instant::now();
    assert_closed_silently(sock, "partial header");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the timeout"
    );
}

#[test]
fn proxy_protocol_comes_before_tls_on_ssl_listeners() {
    let up = Upstream::start();
    let gw = start(&up, Options::tls);
    let addr = gw.proxy_tls.expect("tls listener");
    for head in [
        v1("203.0.113.7", "127.0.0.1", 40000, 8443),
        v2(1, [1, 2, 3, 4], 9),
    ] {
        let mut sock = connect(addr);
        sock.write_all(&head).expect("write header");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(REQUEST).expect("tls write");
        let r = read_response(&mut BufReader::new(tls), false).expect("tls response");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A TLS client that skips the header is dropped before any handshake byte is sent.
    let mut sock = connect(addr);
    sock.write_all(b"\x16\x03\x01\x00\x05hello").expect("write");
    assert_closed_silently(sock, "ClientHello without a PROXY header");
}
