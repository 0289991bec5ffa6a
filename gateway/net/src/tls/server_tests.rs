use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct};
use uuid::Uuid;

use super::*;
use crate::tls::testutil::{block_on, certified, ecdsa_self_signed, rsa_self_signed, try_pair};
use crate::tls::{ServerTls, parse_cert_chain, provider};
use gangway_config::model::ForeignKey;

fn cert_entity(n: u128, cert: &str, key: &str) -> Certificate {
    Certificate {
        id: Uuid::from_u128(n),
        cert: cert.into(),
        key: key.into(),
        cert_alt: None,
        key_alt: None,
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn sni(n: u128, name: &str, cert: u128) -> Sni {
    Sni {
        id: Uuid::from_u128(1000 + n),
        name: name.into(),
        certificate: ForeignKey {
            id: Uuid::from_u128(cert),
        },
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn default_pair() -> CertPair {
    let (c, k) = ecdsa_self_signed(&["default.test"]);
    CertPair::from(certified(&c, &k))
}

/// A store with one certificate per match kind: 1 exact, 2 `*.example.com`,
/// 3 `www.example.*`, 4 the `*` catch-all.
fn kinds_store(catch_all: bool) -> (CertStore, Vec<Certificate>) {
    let certs: Vec<Certificate> = (1..=4)
        .map(|n| {
            let (c, k) = ecdsa_self_signed(&[&format!("c{n}.test")]);
            cert_entity(n, &c, &k)
        })
        .collect();
    let mut snis = vec![
        sni(1, "api.example.com", 1),
        sni(2, "*.example.com", 2),
        sni(3, "www.example.*", 3),
    ];
    if catch_all {
        snis.push(sni(4, "*", 4));
    }
    (
        CertStore::build(&certs, &snis, default_pair()).expect("valid store"),
        certs,
    )
}

/// Which of the store's certificates (by leaf DER) `name` selects; 0 for the default.
fn selected(store: &CertStore, certs: &[Certificate], name: Option<&str>) -> usize {
    let leaf = &store.lookup(name).primary().cert[0];
    certs
        .iter()
        .position(|c| parse_cert_chain(c.cert.as_bytes()).expect("pem")[0] == *leaf)
        .map_or(0, |i| i + 1)
}

#[test]
fn sni_lookup_follows_kongs_order() {
    let (store, certs) = kinds_store(true);
    let pick = |name| selected(&store, &certs, name);
    assert_eq!(pick(Some("api.example.com")), 1, "exact");
    assert_eq!(pick(Some("API.Example.COM")), 1, "case-insensitive");
    assert_eq!(pick(Some("foo.example.com")), 2, "leftmost wildcard");
    assert_eq!(
        pick(Some("www.example.com")),
        2,
        "leftmost wildcard beats rightmost"
    );
    assert_eq!(pick(Some("www.example.org")), 3, "rightmost wildcard");
    assert_eq!(
        pick(Some("a.b.example.com")),
        4,
        "a wildcard covers one label only"
    );
    assert_eq!(
        pick(Some("example.com")),
        4,
        "*.example.com does not cover example.com"
    );
    assert_eq!(pick(Some("unrelated.test")), 4, "catch-all SNI");
    assert_eq!(
        pick(None),
        0,
        "no SNI: the default certificate, even with a catch-all"
    );

    let (store, certs) = kinds_store(false);
    assert_eq!(
        selected(&store, &certs, Some("unrelated.test")),
        0,
        "default without catch-all"
    );
    assert_eq!(selected(&store, &certs, Some("foo.example.com")), 2);
}

#[test]
fn handshake_serves_the_selected_certificate() {
    let (store, certs) = kinds_store(false);
    let server = server_config(Arc::new(store), &ServerTls::default());
    let client = accept_any(None);
    block_on(async {
        for (name, want) in [
            ("api.example.com", 1),
            ("x.example.com", 2),
            ("nomatch.test", 0),
        ] {
            let (s, c) = try_pair(server.clone(), client.clone(), name).await;
            let (s, c) = (s.expect("server"), c.expect("client"));
            assert_eq!(s.sni().as_deref(), Some(name));
            let leaf = c.peer_certificates().expect("server sent a chain")[0].clone();
            let got = certs
                .iter()
                .position(|e| parse_cert_chain(e.cert.as_bytes()).expect("pem")[0] == leaf)
                .map_or(0, |i| i + 1);
            assert_eq!(got, want, "certificate for {name}");
        }
    });
}

fn alt_entity() -> Certificate {
    let (rsa_c, rsa_k) = rsa_self_signed(&["alt.test"]);
    let (ec_c, ec_k) = ecdsa_self_signed(&["alt.test"]);
    let mut e = cert_entity(7, &rsa_c, &rsa_k);
    e.cert_alt = Some(ec_c);
    e.key_alt = Some(ec_k);
    e
}

#[test]
fn alt_certificate_is_chosen_by_signature_schemes() {
    let entity = alt_entity();
    let rsa_leaf = parse_cert_chain(entity.cert.as_bytes()).expect("pem")[0].clone();
    let ec_pem = entity.cert_alt.clone().expect("alt");
    let ec_leaf = parse_cert_chain(ec_pem.as_bytes()).expect("pem")[0].clone();
    let store =
        CertStore::build(&[entity], &[sni(1, "alt.test", 7)], default_pair()).expect("valid");
    let pair = store.lookup(Some("alt.test"));
    let alt = pair.alt().expect("alt loaded");
    assert_eq!(pair.primary().key.algorithm(), SignatureAlgorithm::RSA);
    assert_eq!(alt.key.algorithm(), SignatureAlgorithm::ECDSA);
    let both = [
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::ECDSA_NISTP256_SHA256,
    ];
    assert!(Arc::ptr_eq(pair.choose(&both), alt), "ECDSA preferred");
    assert!(Arc::ptr_eq(
        pair.choose(&[SignatureScheme::RSA_PSS_SHA256]),
        pair.primary()
    ));
    assert!(Arc::ptr_eq(
        pair.choose(&[SignatureScheme::ECDSA_NISTP256_SHA256]),
        alt
    ));
    assert!(
        Arc::ptr_eq(pair.choose(&[SignatureScheme::ED25519]), pair.primary()),
        "fallback"
    );

    // And through real handshakes.
    let server = server_config(Arc::new(store), &ServerTls::default());
    block_on(async {
        for (schemes, want) in [(None, &ec_leaf), (Some(RSA_ONLY), &rsa_leaf)] {
            let (s, c) = try_pair(server.clone(), accept_any(schemes), "alt.test").await;
            s.expect("server");
            let leaf = c.expect("client").peer_certificates().expect("chain")[0].clone();
            assert_eq!(&leaf, want, "client offering {schemes:?}");
        }
    });
}

const RSA_ONLY: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// A client that accepts any server certificate and offers `schemes` (default: all of ring's).
fn accept_any(schemes: Option<&'static [SignatureScheme]>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert { schemes }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCert {
    schemes: Option<&'static [SignatureScheme]>,
}

impl ServerCertVerifier for AnyCert {
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
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match self.schemes {
            Some(s) => s.to_vec(),
            None => provider()
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }
}

#[test]
fn build_reports_every_problem_at_its_path() {
    let (c1, k1) = ecdsa_self_signed(&["one.test"]);
    let (c2, k2) = ecdsa_self_signed(&["two.test"]);
    let (rsa_c, rsa_k) = rsa_self_signed(&["rsa.test"]);
    let mut missing_alt_key = cert_entity(4, &rsa_c, &rsa_k);
    missing_alt_key.cert_alt = Some(c1.clone());
    let mut same_type = cert_entity(5, &c1, &k1);
    same_type.cert_alt = Some(c2.clone());
    same_type.key_alt = Some(k2.clone());
    let mut alt_mismatch = cert_entity(6, &rsa_c, &rsa_k);
    alt_mismatch.cert_alt = Some(c1.clone());
    alt_mismatch.key_alt = Some(k2.clone());
    let certs = vec![
        cert_entity(1, "not a pem", &k1),
        cert_entity(
            2,
            &c1,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ),
        cert_entity(3, &c1, &k2),
        missing_alt_key,
        same_type,
        alt_mismatch,
        cert_entity(8, &c2, &k2),
    ];
    let snis = vec![
        sni(1, "ok.test", 8),
        sni(2, "ghost.test", 99),
        sni(3, "OK.test", 8),
        sni(4, "broken.test", 3),
    ];
    let errors = CertStore::build(&certs, &snis, default_pair()).expect_err("errors");
    let got: Vec<(String, String)> = errors
        .0
        .iter()
        .map(|e| (e.path.clone(), e.message.clone()))
        .collect();
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "certificates[0].cert",
            "certificates[1].key",
            "certificates[2]",
            "certificates[3]",
            "certificates[4]",
            "certificates[5]",
            "snis[1].certificate",
            "snis[2].name",
        ],
        "{got:#?}"
    );
    assert_eq!(got[0].1, "invalid certificate: no PEM certificate found");
    assert!(got[1].1.starts_with("invalid key: "), "{}", got[1].1);
    assert_eq!(got[2].1, "certificate does not match key");
    assert_eq!(
        got[3].1,
        "all or none of these fields must be set: 'cert_alt', 'key_alt'"
    );
    assert!(
        got[4]
            .1
            .starts_with("certificate and alternative certificate need to have different type")
    );
    assert_eq!(got[5].1, "alternative certificate does not match key");
    assert_eq!(
        got[6].1,
        format!(
            "invalid reference 'certificate: {{id=\"{}\"}}' (no such entry in 'certificates')",
            Uuid::from_u128(99)
        )
    );
    assert_eq!(
        got[7].1,
        "uniqueness violation: 'snis' entity with name set to 'ok.test' already declared"
    );
}

#[test]
fn default_certificate_is_a_generated_localhost_certificate() {
    let pair = default_certificate(&[], &[]).expect("generated");
    assert!(pair.alt().is_none());
    let der = pair.primary().cert[0].clone();
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("valid x509");
    let cn = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    assert_eq!(cn, Some("localhost"));
    assert!(x509.validity().is_valid(), "valid now");
    let san = x509
        .subject_alternative_name()
        .expect("ext")
        .expect("has SANs");
    assert!(format!("{:?}", san.value.general_names).contains("localhost"));
}

#[test]
fn default_certificate_loads_pem_files() {
    let dir = std::env::temp_dir().join(format!("gangway-tls-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (rsa_c, rsa_k) = rsa_self_signed(&["files.test"]);
    let (ec_c, ec_k) = ecdsa_self_signed(&["files.test"]);
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write pem");
        p
    };
    let certs = [write("rsa.crt", &rsa_c), write("ec.crt", &ec_c)];
    let keys = [write("rsa.key", &rsa_k), write("ec.key", &ec_k)];

    let one = default_certificate(&certs[..1], &keys[..1]).expect("one pair");
    assert_eq!(one.primary().key.algorithm(), SignatureAlgorithm::RSA);
    let two = default_certificate(&certs, &keys).expect("rsa + ecdsa");
    assert_eq!(
        two.alt().map(|a| a.key.algorithm()),
        Some(SignatureAlgorithm::ECDSA)
    );

    assert!(matches!(
        default_certificate(&certs, &keys[..1]),
        Err(TlsError::Unpaired { certs: 2, keys: 1 })
    ));
    let swapped = default_certificate(&certs[..1], &keys[1..]).expect_err("mismatch");
    assert!(swapped.to_string().contains("does not match"), "{swapped}");
    let missing = [dir.join("nope.crt")];
    assert!(matches!(
        default_certificate(&missing, &keys[..1]),
        Err(TlsError::Read { .. })
    ));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Kong also takes `ssl_cert` and `ssl_cert_key` as the PEM text or its base64.
#[test]
fn default_certificate_takes_pem_text_and_base64_as_kong_does() {
    use base64::Engine;
    let (cert, key) = ecdsa_self_signed(&["inline.test"]);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&key);
    let pair = default_certificate(&[cert.clone().into()], &[encoded.into()])
        .expect("PEM text and base64");
    assert_eq!(pair.primary().key.algorithm(), SignatureAlgorithm::ECDSA);
    let (other, _) = ecdsa_self_signed(&["other.test"]);
    let wrong = default_certificate(&[other.into()], &[key.into()]).expect_err("mismatch");
    assert_eq!(
        wrong.to_string(),
        "the PEM text given: certificate does not match key the PEM text given"
    );
    assert!(
        matches!(
            default_certificate(&["bm90IHBlbQ==".into()], &[cert.into()]),
            Err(TlsError::Read { .. })
        ),
        "base64 of something that is not PEM is read as a path"
    );
}
