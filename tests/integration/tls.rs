//! Downstream TLS: SNI certificate selection, the default certificate, HTTP over TLS.

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::harness::client::{Response, read_response};
use crate::harness::{Gangway, Options, Upstream};

/// Accepts any certificate and remembers nothing: the test inspects the presented chain.
#[derive(Debug)]
pub struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Sends `raw` over TLS with `sni`; returns the response and the leaf certificate presented.
pub(crate) fn tls_request(
    addr: SocketAddr,
    sni: &str,
    raw: &[u8],
) -> (Response, Vec<u8>, Option<Vec<u8>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client conn");
    let sock = crate::harness::connect(addr);
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(raw).expect("tls write");
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("peer cert");
    let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut reader = BufReader::new(tls);
    let resp = read_response(&mut reader, false).expect("tls response");
    (resp, leaf, alpn)
}

fn cert_for(name: &str) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

#[test]
fn sni_selects_the_configured_certificate_and_proxies_over_tls() {
    let up = Upstream::start();
    let (cert, key, der) = cert_for("api.example.com");
    let (wcert, wkey, wder) = cert_for("*.wild.example.com");
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n    routes:\n      - name: r\n        paths: [\"/echo\"]\n\
         certificates:\n  - cert: |\n{}    key: |\n{}    snis: [{{name: api.example.com}}]\n  - cert: |\n{}    key: |\n{}    snis: [{{name: \"*.wild.example.com\"}}]\n",
        up.addr,
        indent(&cert),
        indent(&key),
        indent(&wcert),
        indent(&wkey)
    );
    let gw = Gangway::start_with(Options::new(yaml).tls());
    let tls_addr = gw.proxy_tls.expect("tls listener");
    let raw = b"GET /echo/x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n";
    let (r, leaf, alpn) = tls_request(tls_addr, "api.example.com", raw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(leaf, der, "exact SNI match serves its certificate");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let echo = r.json();
    let proto = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .find(|p| {
            p[0].as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("x-forwarded-proto"))
        })
        .and_then(|p| p[1].as_str())
        .map(str::to_string);
    assert_eq!(proto.as_deref(), Some("https"));

    let (_, leaf, _) = tls_request(tls_addr, "a.wild.example.com", raw);
    assert_eq!(leaf, wder, "wildcard SNI match");
    let (r, leaf, _) = tls_request(tls_addr, "unknown.example.org", raw);
    assert_eq!(r.status, 200);
    assert!(
        leaf != der && leaf != wder,
        "unknown names get the default certificate"
    );
}

/// What a handshake offering only `versions` and (in order) `tls12` agreed on: the version
/// and cipher, or rustls's error.
fn handshake(
    addr: SocketAddr,
    versions: &[&'static rustls::SupportedProtocolVersion],
    tls12: &[rustls::SupportedCipherSuite],
) -> Result<(rustls::ProtocolVersion, rustls::CipherSuite), String> {
    let default = rustls::crypto::ring::default_provider();
    let cipher_suites = default
        .cipher_suites
        .iter()
        .copied()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .chain(tls12.iter().copied())
        .collect();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites,
        ..default
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client conn");
    let mut sock = crate::harness::connect(addr);
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    let version = conn.protocol_version().expect("negotiated version");
    let suite = conn.negotiated_cipher_suite().expect("negotiated suite");
    Ok((version, suite.suite()))
}

#[test]
fn ssl_cipher_suite_and_kongs_custom_settings_choose_versions_and_ciphers() {
    use rustls::crypto::ring::cipher_suite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 as AES128,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 as AES256,
    };
    use rustls::version::{TLS12, TLS13};
    let up = Upstream::start();
    let yaml = crate::harness::config_with_routes(
        up.addr,
        "      - name: r\n        paths: [\"/echo\"]\n",
    );
    let raw = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

    let modern = Gangway::start_with(
        Options::new(yaml.clone())
            .tls()
            .admin_tls()
            .env("KONG_SSL_CIPHER_SUITE", "modern"),
    );
    for addr in [modern.proxy_tls, modern.admin_tls].map(|a| a.expect("tls listener")) {
        let agreed = handshake(addr, &[&TLS13], &[]).expect("TLS 1.3");
        assert_eq!(agreed.0, rustls::ProtocolVersion::TLSv1_3);
        let refused = handshake(addr, &[&TLS12], &[AES128, AES256]);
        assert!(refused.is_err(), "modern serves no TLS 1.2: {refused:?}");
    }
    let (r, _, _) = tls_request(modern.proxy_tls.expect("tls"), "localhost", raw);
    assert_eq!(r.status, 200, "{}", r.text());
    drop(modern);

    // Kong reads ssl_protocols, ssl_ciphers and ssl_prefer_server_ciphers with custom only.
    let listed =
        "DHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256";
    let custom = |prefer: &str| {
        Gangway::start_with(
            Options::new(yaml.clone())
                .tls()
                .env("KONG_SSL_CIPHER_SUITE", "custom")
                .env("KONG_SSL_PROTOCOLS", "TLSv1.1 TLSv1.2")
                .env("KONG_SSL_CIPHERS", listed)
                .env("KONG_SSL_PREFER_SERVER_CIPHERS", prefer),
        )
    };
    let server_order = custom("on");
    let addr = server_order.proxy_tls.expect("tls");
    assert!(
        handshake(addr, &[&TLS13], &[]).is_err(),
        "TLS 1.3 is not listed"
    );
    assert_eq!(
        handshake(addr, &[&TLS12], &[AES128, AES256]),
        Ok((rustls::ProtocolVersion::TLSv1_2, AES256.suite())),
        "ssl_ciphers' order wins"
    );
    let log = server_order.log();
    assert!(
        log.contains("ssl_protocols: gangway's TLS (rustls) has no TLSv1.1"),
        "{log}"
    );
    assert!(
        log.contains("no TLS 1.2 cipher 'DHE-RSA-AES128-GCM-SHA256'"),
        "{log}"
    );
    drop(server_order);
    let client_order = custom("off");
    assert_eq!(
        handshake(
            client_order.proxy_tls.expect("tls"),
            &[&TLS12],
            &[AES128, AES256]
        ),
        Ok((rustls::ProtocolVersion::TLSv1_2, AES128.suite())),
        "the client's order wins"
    );
}

#[test]
fn tls_settings_that_leave_nothing_to_serve_stop_startup() {
    let said = crate::harness::refused_start(&[
        ("KONG_SSL_CIPHER_SUITE", "custom"),
        ("KONG_SSL_CIPHERS", "HIGH:!aNULL:!MD5"),
    ]);
    assert!(
        said.contains(
            "invalid settings: ssl_ciphers names no TLS 1.2 cipher gangway has \
             (ECDHE-ECDSA-AES128-GCM-SHA256"
        ),
        "{said}"
    );
}

/// Kong's `status_listen ... ssl` with `status_ssl_cert`/`status_ssl_cert_key`, and
/// `status_access_log`: the Status API answers over TLS with the certificate given (an `ssl`
/// status listener used to answer in plain text), and writes a line per request in nginx's
/// combined format. The plain listener beside it keeps answering.
#[test]
fn the_status_api_serves_tls_with_its_own_certificate_and_logs_its_requests() {
    let up = Upstream::start();
    let dir = crate::harness::TempDir::new("status-tls");
    let (cert, key, der) = cert_for("status.example.com");
    let (cert_path, key_path) = (dir.path("status.crt"), dir.path("status.key"));
    std::fs::write(&cert_path, cert).expect("write cert");
    std::fs::write(&key_path, key).expect("write key");
    let log = dir.path("status_access.log");
    let gw = Gangway::start_with(
        Options::new(format!(
            "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n",
            up.addr
        ))
        .status_tls()
        .env("KONG_STATUS_SSL_CERT", cert_path.display().to_string())
        .env("KONG_STATUS_SSL_CERT_KEY", key_path.display().to_string())
        .env("KONG_STATUS_ACCESS_LOG", log.display().to_string()),
    );
    let addr = gw.status_tls.expect("an ssl status listener");
    let (r, leaf, _) = tls_request(
        addr,
        "status.example.com",
        b"GET /status/ready HTTP/1.1\r\nHost: status\r\nUser-Agent: probe/1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["message"], "ready");
    assert_eq!(leaf, der, "the status_ssl_cert certificate");
    let plain = crate::harness::request(gw.status, "GET", "/status", &[], b"").expect("plain");
    assert_eq!(plain.status, 200);

    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !read().contains("\"GET /status HTTP/1.1\" 200") {
        assert!(
            std::time::Instant::now() < deadline,
            "the status access log: {:?}",
            read()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = read();
    let tls_line = text
        .lines()
        .find(|l| l.ends_with("\"-\" \"probe/1\""))
        .unwrap_or_else(|| panic!("the TLS request's line: {text:?}"));
    assert!(
        tls_line.starts_with("127.0.0.1 - - [")
            && tls_line.contains("] \"GET /status/ready HTTP/1.1\" 200 "),
        "{tls_line}"
    );
}

/// A status certificate that cannot be read stops startup, naming the setting.
#[test]
fn an_unreadable_status_certificate_stops_startup_with_its_setting_named() {
    let out = crate::harness::refused_start(&[
        ("KONG_STATUS_LISTEN", "127.0.0.1:0 ssl"),
        ("KONG_STATUS_SSL_CERT", "/nonexistent/status.crt"),
        ("KONG_STATUS_SSL_CERT_KEY", "/nonexistent/status.key"),
    ]);
    assert!(
        out.contains("status API: status_ssl_cert:") && out.contains("/nonexistent/status.crt"),
        "{out}"
    );
}
