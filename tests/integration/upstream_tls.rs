//! TLS to upstreams as Kong does it: the client certificate a service (or its upstream
//! entity) presents, and the server name sent, which is the Host header's.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::harness::{Gangway, request};

/// A self-signed certificate for `upstream.test` and its key.
fn upstream_cert() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["upstream.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key pem");
    (cert.der().clone(), key)
}

/// An HTTPS upstream that requires a client certificate from `client_ca` and answers each
/// request with the server name the client sent (`-` for none).
fn mtls_upstream(client_ca: &str) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(client_ca.as_bytes()).expect("ca pem"))
        .expect("ca");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    let (cert, key) = upstream_cert();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("server conn");
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
                loop {
                    let mut line = String::new();
                    // A handshake without an accepted client certificate fails here.
                    if tls.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    while line != "\r\n" {
                        line.clear();
                        if tls.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    let stream = tls.get_mut();
                    let sni = stream.conn.server_name().unwrap_or("-").to_string();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{sni}",
                        sni.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A CA for client certificates, as an upstream requiring mutual TLS trusts one.
fn client_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(vec![name.to_string()]).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca")
}

/// A client certificate `ca` signed, and its key, as PEM.
fn client_leaf(ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("client key");
    let cert = CertificateParams::new(vec!["gangway.client".to_string()])
        .expect("client params")
        .signed_by(&key, ca)
        .expect("client cert");
    (cert.pem(), key.serialize_pem())
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

/// A service's `client_certificate` is presented to its upstream, an upstream entity's when
/// the service has none, and the server name is the Host header's name (the service's, the
/// upstream's `host_header`, or the client's with `preserve_host`). Neither certificate was
/// ever presented, and the server name was always the target's.
#[test]
fn the_client_certificate_is_presented_and_the_host_header_names_the_server() {
    let ca = client_ca("ca");
    let (client_cert, client_key) = client_leaf(&ca);
    let up = mtls_upstream(&ca.pem());
    let port = up.port();
    let cert_id = "6f1b1e43-3b3b-4a0a-9a56-3c2f2c1a7e01";
    let yaml = format!(
        r#"_format_version: "3.0"
certificates:
  - id: {cert_id}
    cert: |
{cert}    key: |
{key}upstreams:
  - name: pool.internal
    host_header: api.upstream.test
    client_certificate: {{id: {cert_id}}}
    targets:
      - target: 127.0.0.1:{port}
services:
  - name: own
    url: https://localhost:{port}
    client_certificate: {cert_id}
    routes:
      - paths: ["/own"]
      - paths: ["/kept"]
        preserve_host: true
  - name: none
    url: https://localhost:{port}
    routes:
      - paths: ["/none"]
  - name: entity
    protocol: https
    host: pool.internal
    port: {port}
    routes:
      - paths: ["/entity"]
"#,
        cert = indent(&client_cert),
        key = indent(&client_key),
    );
    let gw = Gangway::start(&yaml);
    let get = |path: &str, host: Option<&str>| {
        let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
        let r = request(gw.proxy, "GET", path, &headers, b"").expect("request");
        (r.status, r.text())
    };
    assert_eq!(
        get("/own", None),
        (200, "localhost".into()),
        "service's cert"
    );
    assert_eq!(
        get("/kept", Some("shop.example:8443")),
        (200, "shop.example".into()),
        "the client's Host, without its port"
    );
    assert_eq!(
        get("/entity", None),
        (200, "api.upstream.test".into()),
        "the upstream entity's certificate and host_header"
    );
    assert_eq!(get("/none", None).0, 502, "no certificate, no handshake");
}

/// Kong's `client_ssl`: with it on, `client_ssl_cert` (here as base64 of the PEM, and the
/// key as a file, two of Kong's three forms) goes to upstreams whose service names no
/// certificate; a service's own certificate still wins.
#[test]
fn client_ssl_presents_the_nodes_certificate_when_a_service_has_none() {
    use base64::Engine;
    let (ca, other_ca) = (client_ca("ca"), client_ca("other ca"));
    let (node_cert, node_key) = client_leaf(&ca);
    let (own_cert, own_key) = client_leaf(&other_ca);
    let up = mtls_upstream(&ca.pem());
    let port = up.port();
    let cert_id = "6f1b1e43-3b3b-4a0a-9a56-3c2f2c1a7e02";
    let yaml = format!(
        r#"_format_version: "3.0"
certificates:
  - id: {cert_id}
    cert: |
{cert}    key: |
{key}services:
  - name: none
    url: https://localhost:{port}
    routes:
      - paths: ["/none"]
  - name: own
    url: https://localhost:{port}
    client_certificate: {cert_id}
    routes:
      - paths: ["/own"]
"#,
        cert = indent(&own_cert),
        key = indent(&own_key),
    );
    let dir = crate::harness::TempDir::new("client-ssl");
    let key_path = dir.path("client.key");
    std::fs::write(&key_path, &node_key).expect("write key");
    let gw = Gangway::start_with(
        crate::harness::Options::new(yaml)
            .env("KONG_CLIENT_SSL", "on")
            .env(
                "KONG_CLIENT_SSL_CERT",
                base64::engine::general_purpose::STANDARD.encode(&node_cert),
            )
            .env("KONG_CLIENT_SSL_CERT_KEY", key_path.display().to_string()),
    );
    let status = |path: &str| {
        request(gw.proxy, "GET", path, &[], b"")
            .expect("request")
            .status
    };
    assert_eq!(status("/none"), 200, "the node's certificate");
    assert_eq!(status("/own"), 502, "the service's own (another CA's) wins");

    let said = crate::harness::refused_start(&[
        ("KONG_CLIENT_SSL", "on"),
        ("KONG_CLIENT_SSL_CERT", "/nowhere/client.crt"),
        ("KONG_CLIENT_SSL_CERT_KEY", &key_path.display().to_string()),
    ]);
    assert!(
        said.contains("client_ssl_cert: failed loading certificate from /nowhere/client.crt"),
        "{said}"
    );
    let said = crate::harness::refused_start(&[
        ("KONG_CLIENT_SSL", "on"),
        ("KONG_CLIENT_SSL_CERT", &node_cert),
    ]);
    assert!(
        said.contains("client_ssl_cert_key must be specified"),
        "{said}"
    );
}

/// An HTTPS upstream that answers each request with `GET` and, in the same socket write, a
/// second TLS record holding a response nobody asked for. Counts its connections.
fn poisoning_upstream() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let (cert, key) = upstream_cert();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("server conn");
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
                loop {
                    let mut line = String::new();
                    while line != "\r\n" {
                        line.clear();
                        if tls.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    let stream = tls.get_mut();
                    // Two records, queued before either is sent: one socket write.
                    let answers: [&[u8]; 2] = [
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nGET",
                        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned",
                    ];
                    for answer in answers {
                        if stream.conn.writer().write_all(answer).is_err() {
                            return;
                        }
                    }
                    if stream.flush().is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// The TLS layer hands a read one record at a time, so a second response that arrived with
/// the first waited in it, out of sight of the socket probe, and the next request on the
/// pooled connection was answered with it.
#[test]
fn a_record_left_in_an_idle_https_connection_is_not_served_to_the_next_request() {
    let (addr, accepted) = poisoning_upstream();
    let gw = Gangway::start_with(
        crate::harness::Options::new(format!(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: https://localhost:{}\n    routes:\n      - paths: [\"/\"]\n",
            addr.port()
        ))
        .env("GANGWAY_WORKERS", "1"),
    );
    for round in 0..3 {
        let r = request(gw.proxy, "GET", "/x", &[], b"").expect("request");
        assert_eq!((r.status, r.text()), (200, "GET".into()), "request {round}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "no connection is reused"
    );
}
