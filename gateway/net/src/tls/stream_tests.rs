use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use super::*;
use crate::tls::testutil::{MemStream, block_on, mem_pair};
use crate::tls::{
    CertStore, RootSource, ServerTls, client_config, default_certificate, server_config,
};

/// Turns a deadlock into a failure instead of a hung test run.
const DEADLOCK_GUARD: Duration = Duration::from_secs(60);

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let default = default_certificate(&[], &[]).expect("default certificate");
    let store = CertStore::build(&[], &[], default).expect("empty store");
    let roots = RootSource::from_ca_certificates(&[]).expect("empty roots");
    (
        server_config(Arc::new(store), &ServerTls::default()),
        client_config(false, None, &roots, None),
    )
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("valid name")
}

async fn pair(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    capacity: usize,
) -> (TlsStream<MemStream>, TlsStream<MemStream>) {
    let (a, b) = mem_pair(capacity);
    let (s, c) = tokio::join!(accept(a, server), connect(b, client, localhost()));
    (s.expect("server handshake"), c.expect("client handshake"))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Reads until `Ok(0)` with one reused 16 KiB buffer.
async fn read_to_end<S: Stream>(s: &S) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = s.read(buf).await;
        buf = b;
        match res? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads exactly `len` bytes.
async fn read_exact<S: Stream>(s: &S, len: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut buf = Vec::with_capacity(8 * 1024);
    while out.len() < len {
        buf.clear();
        let (res, b) = s.read(buf).await;
        buf = b;
        match res? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok(out)
}

async fn write<S: Stream>(s: &S, data: Vec<u8>) -> io::Result<()> {
    let len = data.len();
    s.write_all(data, 0..len).await.0
}

#[test]
fn handshake_and_large_payloads_both_ways() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        let (server, client) = pair(server_cfg, client_cfg, 8 * 1024).await;
        assert_eq!(server.sni().as_deref(), Some("localhost"));
        assert_eq!(client.sni(), None);
        assert_eq!(server.alpn().as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(client.alpn().as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(
            client.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );

        let up = pattern(300 * 1024, 1);
        let down = pattern(700 * 1024 + 17, 2);
        let client_side = async {
            write(&client, up.clone()).await.expect("client write");
            client.shutdown().await.expect("client close_notify");
            read_to_end(&client)
                .await
                .expect("client reads to close_notify")
        };
        let server_side = async {
            let got = read_to_end(&server)
                .await
                .expect("server reads to close_notify");
            write(&server, down.clone()).await.expect("server write");
            server.shutdown().await.expect("server close_notify");
            got
        };
        let (got_down, got_up) = tokio::join!(client_side, server_side);
        assert_eq!(got_up, up);
        assert_eq!(got_down, down);
    });
}

#[test]
fn tls12_works_too() {
    let (server_cfg, _) = configs();
    let roots = RootSource::from_ca_certificates(&[]).expect("empty roots");
    let client_cfg = crate::tls::client::build_client_config(
        false,
        None,
        &roots,
        None,
        &[&rustls::version::TLS12],
    );
    block_on(async {
        let (server, client) = pair(server_cfg, client_cfg, 4 * 1024).await;
        assert_eq!(
            server.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        let data = pattern(100 * 1024, 3);
        let (w, r) = tokio::join!(
            write(&client, data.clone()),
            read_exact(&server, data.len())
        );
        w.expect("write");
        assert_eq!(r.expect("read"), data);
    });
}

#[test]
fn write_range_is_respected() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        let (server, client) = pair(server_cfg, client_cfg, 64 * 1024).await;
        let (res, buf) = client.write_all(b"xxhelloyy".to_vec(), 2..7).await;
        res.expect("write");
        assert_eq!(buf, b"xxhelloyy");
        assert_eq!(read_exact(&server, 5).await.expect("read"), b"hello");
        let (res, _) = client.write_all(b"abc".to_vec(), 1..9).await;
        assert_eq!(
            res.expect_err("out of bounds").kind(),
            io::ErrorKind::InvalidInput
        );
        // A full caller buffer reads nothing, like the inner streams.
        let (res, _) = server.read(Vec::new()).await;
        assert_eq!(res.expect("empty read"), 0);
    });
}

#[test]
fn close_notify_is_a_clean_eof() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        let (server, client) = pair(server_cfg, client_cfg, 64 * 1024).await;
        write(&client, b"last words".to_vec()).await.expect("write");
        client.shutdown().await.expect("shutdown");
        assert_eq!(
            read_to_end(&server).await.expect("clean eof"),
            b"last words"
        );
        // Still EOF on later reads.
        let (res, _) = server.read(Vec::with_capacity(16)).await;
        assert_eq!(res.expect("eof again"), 0);
    });
}

#[test]
fn tcp_eof_without_close_notify_is_unexpected() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        let (server, client) = pair(server_cfg, client_cfg, 64 * 1024).await;
        write(&client, b"truncated".to_vec()).await.expect("write");
        // FIN on the inner stream only: no close_notify.
        client.inner().shutdown().await.expect("inner shutdown");
        let got = read_exact(&server, 9).await.expect("data before the EOF");
        assert_eq!(got, b"truncated");
        let (res, _) = server.read(Vec::with_capacity(16)).await;
        assert_eq!(
            res.expect_err("truncation").kind(),
            io::ErrorKind::UnexpectedEof
        );
    });
}

#[test]
fn eof_during_handshake_is_unexpected() {
    let (server_cfg, _) = configs();
    block_on(async {
        let (a, b) = mem_pair(1024);
        b.shutdown().await.expect("shutdown");
        let err = accept(a, server_cfg).await.expect_err("no handshake");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    });
}

#[test]
fn garbage_is_invalid_data_and_gets_an_alert() {
    let (server_cfg, _) = configs();
    block_on(async {
        let (a, b) = mem_pair(4096);
        let client = async {
            write(&b, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
                .await
                .expect("write");
            read_to_end(&b).await.expect("alert then eof")
        };
        let server = async {
            let res = accept(a, server_cfg).await;
            let err = res.expect_err("plaintext HTTP is not TLS");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(
                err.get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>())
                    .is_some()
            );
            // Dropping the server's stream closes the pipe.
        };
        let (alert, ()) = tokio::join!(client, server);
        // A TLS alert record: content type 21.
        assert_eq!(
            alert.first(),
            Some(&21),
            "expected an alert record, got {alert:?}"
        );
    });
}

#[test]
fn concurrent_read_and_write_on_one_stream() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        // A small pipe: writing everything before reading would deadlock against the echo.
        let (server, client) = pair(server_cfg, client_cfg, 16 * 1024).await;
        let data = pattern(1024 * 1024, 9);
        let echo = async {
            let mut buf = Vec::with_capacity(16 * 1024);
            loop {
                buf.clear();
                let (res, b) = server.read(buf).await;
                buf = b;
                let n = res.expect("server read");
                if n == 0 {
                    server.shutdown().await.expect("server shutdown");
                    return;
                }
                let (res, b) = server.write_all(buf, 0..n).await;
                buf = b;
                res.expect("server write");
            }
        };
        let writer = async {
            write(&client, data.clone()).await.expect("client write");
            client.shutdown().await.expect("client shutdown");
        };
        let reader = read_to_end(&client);
        let run = async { tokio::join!(echo, writer, reader) };
        let ((), (), got) = tokio::time::timeout(DEADLOCK_GUARD, run)
            .await
            .expect("no deadlock");
        assert_eq!(got.expect("echo read"), data);
    });
}

#[test]
fn key_update_mid_stream() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        let (server, client) = pair(server_cfg, client_cfg, 16 * 1024).await;
        for round in 0..3u8 {
            client
                .conn
                .borrow_mut()
                .refresh_traffic_keys()
                .expect("TLS 1.3 key update");
            let data = pattern(40 * 1024, round);
            let (w, r) = tokio::join!(
                write(&client, data.clone()),
                read_exact(&server, data.len())
            );
            w.expect("client write");
            assert_eq!(r.expect("server read"), data);
            // The server answers the update request with its next write.
            let back = pattern(20 * 1024, round + 100);
            let (w, r) = tokio::join!(
                write(&server, back.clone()),
                read_exact(&client, back.len())
            );
            w.expect("server write");
            assert_eq!(r.expect("client read"), back);
        }
    });
}

#[test]
fn sessions_resume_with_tickets() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        let (server, client) = pair(server_cfg.clone(), client_cfg.clone(), 64 * 1024).await;
        assert!(!client.is_resumed());
        // TLS 1.3 tickets arrive after the handshake; a round trip delivers them.
        write(&server, b"ping".to_vec()).await.expect("write");
        assert_eq!(read_exact(&client, 4).await.expect("read"), b"ping");
        drop((server, client));
        let (server, client) = pair(server_cfg, client_cfg, 64 * 1024).await;
        assert!(client.is_resumed(), "second connection should resume");
        assert!(server.is_resumed());
    });
}

#[test]
fn sessions_resume_across_a_config_rebuild() {
    let default = default_certificate(&[], &[]).expect("default certificate");
    let rebuilt = || {
        server_config(
            Arc::new(CertStore::build(&[], &[], default.clone()).expect("empty store")),
            &ServerTls::default(),
        )
    };
    let roots = RootSource::from_ca_certificates(&[]).expect("empty roots");
    let client_cfg = client_config(false, None, &roots, None);
    let before = rebuilt();
    block_on(async {
        let (server, client) = pair(before, client_cfg.clone(), 64 * 1024).await;
        write(&server, b"ping".to_vec()).await.expect("write");
        assert_eq!(read_exact(&client, 4).await.expect("read"), b"ping");
        drop((server, client));
        // A reload compiles a new server config; the ticket keys stay.
        let (server, client) = pair(rebuilt(), client_cfg, 64 * 1024).await;
        assert!(client.is_resumed(), "the session survives the rebuild");
        assert!(server.is_resumed());
    });
}

#[test]
fn buffers_are_reused_after_warm_up() {
    let (server_cfg, client_cfg) = configs();
    block_on(async {
        let (server, client) = pair(server_cfg, client_cfg, 64 * 1024).await;
        let data = pattern(256 * 1024, 5);
        let mut caps = Vec::new();
        for _ in 0..3 {
            let (w, r) = tokio::join!(
                write(&client, data.clone()),
                read_exact(&server, data.len())
            );
            w.expect("write");
            assert_eq!(r.expect("read"), data);
            let tx_cap = client.tx.lock().await.capacity();
            let rx_cap = server.rx.borrow().buf.capacity();
            caps.push((tx_cap, rx_cap));
        }
        assert_eq!(caps[0].1, RX_CAPACITY);
        assert!(
            caps.windows(2).all(|w| w[0] == w[1]),
            "buffers grew after warm-up: {caps:?}"
        );
    });
}

#[test]
fn accept_with_prefix_replays_ciphertext_read_before_the_handshake() {
    // What a PROXY protocol reader leaves behind: a piece of the ClientHello (7 bytes), or
    // all of it plus whatever followed (4096).
    for already_read in [7, 4096] {
        let (server_cfg, client_cfg) = configs();
        block_on(async {
            let (a, b) = mem_pair(64 * 1024);
            let server = async {
                let (res, prefix) = a.read(Vec::with_capacity(already_read)).await;
                assert!(res.expect("read the ClientHello start") > 0);
                accept_with_prefix(a, server_cfg, prefix).await
            };
            let (s, c) = tokio::join!(server, connect(b, client_cfg, localhost()));
            let (server, client) = (s.expect("server handshake"), c.expect("client handshake"));
            assert_eq!(server.sni().as_deref(), Some("localhost"));
            let data = pattern(50 * 1024, 4);
            let (w, r) = tokio::join!(
                write(&client, data.clone()),
                read_exact(&server, data.len())
            );
            w.expect("write");
            assert_eq!(r.expect("read"), data, "prefix of {already_read} bytes");
        });
    }
}
