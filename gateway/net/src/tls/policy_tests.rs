//! Kong's TLS settings to rustls: profiles, custom lists, and what cannot be served.

use super::*;
use gangway_config::settings::TlsProtocols;
use rustls::CipherSuite as Id;

fn settings(edit: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings::default();
    edit(&mut s);
    s
}

fn tls12_ids(tls: &ServerTls) -> Vec<Id> {
    tls.provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| s.suite())
        .collect()
}

fn version_names(tls: &ServerTls) -> Vec<String> {
    tls.versions
        .iter()
        .map(|v| format!("{:?}", v.version))
        .collect()
}

#[test]
fn each_profile_serves_its_versions_ciphers_and_order() {
    let (intermediate, warnings) = ServerTls::from_settings(&Settings::default()).expect("ok");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(version_names(&intermediate), ["TLSv1_2", "TLSv1_3"]);
    assert_eq!(tls12_ids(&intermediate).len(), 6);
    assert!(
        !intermediate.prefer_server_order,
        "Mozilla: the client's order"
    );
    assert!(intermediate.session_tickets);
    assert_eq!(
        intermediate.session_cache_entries, 40_000,
        "10m at 4,000 a MiB"
    );

    let modern = settings(|s| s.ssl_cipher_suite = CipherSuite::Modern);
    let (modern, warnings) = ServerTls::from_settings(&modern).expect("ok");
    assert!(warnings.is_empty());
    assert_eq!(version_names(&modern), ["TLSv1_3"]);
    assert!(tls12_ids(&modern).is_empty());

    let fips = settings(|s| s.ssl_cipher_suite = CipherSuite::Fips);
    let (fips, warnings) = ServerTls::from_settings(&fips).expect("ok");
    assert_eq!(version_names(&fips), ["TLSv1_2"]);
    assert_eq!(
        tls12_ids(&fips),
        [
            Id::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            Id::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            Id::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            Id::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ]
    );
    assert!(fips.prefer_server_order);
    assert!(
        warnings[0].contains("not a FIPS 140 validated module"),
        "{warnings:?}"
    );

    let old = settings(|s| s.ssl_cipher_suite = CipherSuite::Old);
    let (old, warnings) = ServerTls::from_settings(&old).expect("ok");
    assert_eq!(version_names(&old), ["TLSv1_2", "TLSv1_3"]);
    assert!(warnings[0].contains("no TLSv1, TLSv1.1"), "{warnings:?}");
}

#[test]
fn the_ssl_settings_apply_only_to_the_custom_suite() {
    let asked = |suite| {
        settings(|s| {
            s.ssl_cipher_suite = suite;
            s.ssl_protocols = TlsProtocols::parse("TLSv1.3").expect("valid");
            s.ssl_prefer_server_ciphers = false;
        })
    };
    let (intermediate, _) =
        ServerTls::from_settings(&asked(CipherSuite::Intermediate)).expect("ok");
    assert_eq!(version_names(&intermediate), ["TLSv1_2", "TLSv1_3"]);
    let (custom, _) = ServerTls::from_settings(&asked(CipherSuite::Custom)).expect("ok");
    assert_eq!(version_names(&custom), ["TLSv1_3"]);
    assert!(!custom.prefer_server_order);

    let listed = settings(|s| {
        s.ssl_cipher_suite = CipherSuite::Custom;
        s.ssl_protocols = TlsProtocols::parse("TLSv1.1 TLSv1.2").expect("valid");
        s.ssl_ciphers = Some(
            "ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
                .into(),
        );
        s.ssl_session_tickets = false;
        s.ssl_session_cache_size = 1 << 20;
    });
    let (custom, warnings) = ServerTls::from_settings(&listed).expect("ok");
    assert_eq!(version_names(&custom), ["TLSv1_2"]);
    assert_eq!(
        tls12_ids(&custom),
        [
            Id::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            Id::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ],
        "in the list's order"
    );
    assert!(
        custom.prefer_server_order,
        "ssl_prefer_server_ciphers defaults on"
    );
    assert!(!custom.session_tickets);
    assert_eq!(custom.session_cache_entries, 4_000);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("no TLSv1.1")));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("no TLS 1.2 cipher 'DHE-RSA-AES128-GCM-SHA256'"))
    );
}

#[test]
fn nothing_left_to_serve_is_an_error() {
    let old_only = settings(|s| {
        s.ssl_cipher_suite = CipherSuite::Custom;
        s.ssl_protocols = TlsProtocols::parse("TLSv1 TLSv1.1").expect("valid");
    });
    assert_eq!(
        ServerTls::from_settings(&old_only).expect_err("nothing to serve"),
        "ssl_protocols enables no TLS version gangway serves (TLSv1.2, TLSv1.3)"
    );
    let no_cipher = settings(|s| {
        s.ssl_cipher_suite = CipherSuite::Custom;
        s.ssl_ciphers = Some("HIGH:!aNULL:!MD5".into());
    });
    let e = ServerTls::from_settings(&no_cipher).expect_err("no cipher");
    assert!(
        e.starts_with(
            "ssl_ciphers names no TLS 1.2 cipher gangway has (ECDHE-ECDSA-AES128-GCM-SHA256, "
        ),
        "{e}"
    );
    let tls13_only = settings(|s| {
        s.ssl_cipher_suite = CipherSuite::Custom;
        s.ssl_protocols = TlsProtocols::parse("TLSv1.3").expect("valid");
        s.ssl_ciphers = Some("HIGH".into());
    });
    assert!(
        ServerTls::from_settings(&tls13_only).is_ok(),
        "TLS 1.3 ciphers do not come from ssl_ciphers"
    );
}
