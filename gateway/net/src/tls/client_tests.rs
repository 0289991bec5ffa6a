use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use uuid::Uuid;

use super::*;
use crate::tls::ServerTls;
use crate::tls::server::{CertPair, CertStore, server_config};
use crate::tls::testutil::{TestCa, block_on, certified, ecdsa_self_signed, try_pair};

fn ca_entity(n: u128, pem: &str) -> CaCertificate {
    CaCertificate {
        id: Uuid::from_u128(n),
        cert: pem.into(),
        cert_digest: format!("digest-{n}"),
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

/// A server presenting `cert`/`key` to every client.
fn server_with(cert: &str, key: &str) -> Arc<ServerConfig> {
    let store = CertStore::build(&[], &[], CertPair::from(certified(cert, key))).expect("store");
    server_config(Arc::new(store), &ServerTls::default())
}

fn roots_of(pems: &[&str]) -> RootSource {
    let entities: Vec<CaCertificate> = pems
        .iter()
        .enumerate()
        .map(|(i, p)| ca_entity(i as u128 + 1, p))
        .collect();
    let refs: Vec<&CaCertificate> = entities.iter().collect();
    RootSource::from_ca_certificates(&refs).expect("roots")
}

/// The rustls error inside a handshake failure.
fn tls_cause(err: &io::Error) -> &rustls::Error {
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("a rustls error")
}

#[test]
fn verification_rejects_an_untrusted_self_signed_certificate() {
    let (cert, key) = ecdsa_self_signed(&["localhost"]);
    let other_ca = TestCa::new("Unrelated CA");
    let server = server_with(&cert, &key);
    block_on(async {
        for roots in [roots_of(&[&other_ca.cert_pem]), roots_of(&[])] {
            let client = client_config(true, None, &roots, None);
            let (s, c) = try_pair(server.clone(), client, "localhost").await;
            let err = c.expect_err("client must refuse");
            assert_eq!(
                tls_cause(&err),
                &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            );
            let err = s.expect_err("server sees the client's alert");
            assert!(
                matches!(tls_cause(&err), rustls::Error::AlertReceived(_)),
                "{err}"
            );
        }
    });
}

#[test]
fn verification_accepts_a_certificate_from_a_configured_ca() {
    let ca = TestCa::new("Service CA");
    let (cert, key) = ca.issue(&["localhost"]);
    let server = server_with(&cert, &key);
    let client = client_config(true, None, &roots_of(&[&ca.cert_pem]), None);
    block_on(async {
        let (s, c) = try_pair(server.clone(), client.clone(), "localhost").await;
        s.expect("server");
        c.expect("verified");
        // The name is checked too.
        let (_, c) = try_pair(server, client, "elsewhere.test").await;
        let err = c.expect_err("wrong name");
        assert!(
            matches!(
                tls_cause(&err),
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
                    | rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            ),
            "{err}"
        );
    });
}

#[test]
fn verification_off_accepts_any_certificate_and_name() {
    let (cert, key) = ecdsa_self_signed(&["localhost"]);
    let server = server_with(&cert, &key);
    let client = client_config(false, Some(0), &roots_of(&[]), None);
    block_on(async {
        let (s, c) = try_pair(server, client, "not-the-name.test").await;
        s.expect("server");
        let c = c.expect("accepted without verification");
        assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]));
    });
}

#[test]
fn verify_depth_limits_intermediates() {
    let root = TestCa::new("Root CA");
    let inter = root.intermediate("Intermediate CA");
    let (leaf, key) = inter.issue(&["localhost"]);
    let chain = format!("{leaf}{}", inter.cert_pem);
    let server = server_with(&chain, &key);
    let roots = roots_of(&[&root.cert_pem]);
    block_on(async {
        for (depth, ok) in [
            (None, true),
            (Some(1), true),
            (Some(4), true),
            (Some(0), false),
        ] {
            let client = client_config(true, depth, &roots, None);
            let (_, c) = try_pair(server.clone(), client, "localhost").await;
            match (c, ok) {
                (Ok(_), true) => {}
                (Err(e), false) => {
                    assert!(
                        matches!(
                            tls_cause(&e),
                            rustls::Error::InvalidCertificate(CertificateError::Other(_))
                        ),
                        "{e}"
                    );
                    assert!(e.to_string().contains("certificate chain too long"), "{e}");
                }
                (res, _) => panic!("depth {depth:?}: unexpected {:?}", res.err()),
            }
        }
    });
}

#[test]
fn client_certificate_is_presented_for_mutual_tls() {
    let server_ca = TestCa::new("Upstream CA");
    let client_ca = TestCa::new("Client CA");
    let (scert, skey) = server_ca.issue(&["localhost"]);
    let (ccert, ckey) = client_ca.issue(&["gangway-client"]);
    let mut client_roots = rustls::RootCertStore::empty();
    for c in crate::tls::parse_cert_chain(client_ca.cert_pem.as_bytes()).expect("pem") {
        client_roots.add(c).expect("root");
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), crate::tls::provider())
            .build()
            .expect("client verifier");
    let store =
        CertStore::build(&[], &[], CertPair::from(certified(&scert, &skey))).expect("store");
    let server = Arc::new(
        ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(store)),
    );
    let roots = roots_of(&[&server_ca.cert_pem]);
    block_on(async {
        let with_cert = client_config(true, None, &roots, Some(certified(&ccert, &ckey)));
        let (s, c) = try_pair(server.clone(), with_cert, "localhost").await;
        c.expect("client");
        let s = s.expect("server accepts the client certificate");
        let presented = s.peer_certificates().expect("client chain")[0].clone();
        let want = crate::tls::parse_cert_chain(ccert.as_bytes()).expect("pem")[0].clone();
        assert_eq!(presented, want);

        // Without a certificate the upstream refuses; the client learns it on the handshake or
        // on its first read (TLS 1.3 finishes on the client side before the server checks).
        let without = client_config(true, None, &roots, None);
        let (s, c) = try_pair(server, without, "localhost").await;
        assert!(s.is_err(), "server must require a certificate");
        if let Ok(c) = c {
            let (res, _) = crate::stream::Stream::read(&c, Vec::with_capacity(64)).await;
            assert!(res.is_err(), "the client sees the rejection");
        }
    });
}

#[test]
fn config_cache_shares_equal_settings() {
    let ca = TestCa::new("Cache CA");
    let a = roots_of(&[&ca.cert_pem]);
    let a_again = roots_of(&[&ca.cert_pem]);
    let b = roots_of(&[]);
    let (cc, ck) = ecdsa_self_signed(&["client"]);
    let client_cert = certified(&cc, &ck);

    let mut cache = ClientConfigCache::new();
    let v1 = cache.get(true, None, &a, None);
    assert!(
        Arc::ptr_eq(&v1, &cache.get(true, None, &a_again, None)),
        "same CA set"
    );
    assert!(
        !Arc::ptr_eq(&v1, &cache.get(true, Some(2), &a, None)),
        "depth differs"
    );
    assert!(
        !Arc::ptr_eq(&v1, &cache.get(true, None, &b, None)),
        "roots differ"
    );
    let with_cert = cache.get(true, None, &a, Some(&client_cert));
    assert!(!Arc::ptr_eq(&v1, &with_cert), "client certificate differs");
    let off = cache.get(false, None, &a, None);
    assert!(
        Arc::ptr_eq(&off, &cache.get(false, Some(3), &b, None)),
        "off ignores roots, depth"
    );
    assert_eq!(cache.len(), 5);

    cache.sweep();
    assert_eq!(cache.len(), 5, "everything was used since the last sweep");
    let again = cache.get(true, None, &a, None);
    assert!(Arc::ptr_eq(&v1, &again), "kept across the sweep");
    cache.sweep();
    assert_eq!(
        cache.len(),
        1,
        "only the config requested since the previous sweep survives"
    );
}

#[test]
fn trusted_store_reads_pem_files() {
    let ca = TestCa::new("File CA");
    let other = TestCa::new("Other CA");
    let path = std::env::temp_dir().join(format!("gangway-roots-{}.pem", Uuid::new_v4()));
    std::fs::write(&path, format!("{}{}", ca.cert_pem, other.cert_pem)).expect("write");
    let roots = RootSource::trusted(false, std::slice::from_ref(&path)).expect("loads");
    assert_eq!(roots.len(), 2);
    // System roots may be absent on a slim machine; loading them must still succeed.
    RootSource::trusted(true, &[]).expect("system roots load or are skipped");
    std::fs::write(&path, "no pem here").expect("write");
    let err = RootSource::trusted(false, std::slice::from_ref(&path)).expect_err("empty file");
    assert!(
        err.to_string().contains("no PEM certificate found"),
        "{err}"
    );
    std::fs::remove_file(&path).expect("cleanup");
    assert!(matches!(
        RootSource::trusted(false, std::slice::from_ref(&path)),
        Err(TlsError::Read { .. })
    ));
}
