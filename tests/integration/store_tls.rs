//! Postgres over TLS, as Aurora requires: a server that rejects plain TCP, reached with
//! `pg_ssl`, and with `pg_ssl_verify` checked against `lua_ssl_trusted_certificate`.

use std::process::Output;

use crate::harness::pki::issue_pki;
use crate::harness::postgres::{Postgres, PostgresExt};
use crate::harness::{TempDir, said};

fn migrations_status(pg: &Postgres, settings: &[(&str, &str)]) -> Output {
    pg.gangway(&["migrations", "status"], settings)
}

#[test]
fn pg_ssl_reaches_a_tls_only_server_and_pg_ssl_verify_checks_its_ca() {
    let pki = issue_pki();
    let pg = Postgres::start_with_tls(&pki.server_cert_pem, &pki.server_key_pem);
    let dir = TempDir::new("pg-tls-client");
    let right_ca = dir.path("ca.pem");
    std::fs::write(&right_ca, &pki.ca_pem).expect("write ca.pem");
    let wrong_ca = dir.path("other-ca.pem");
    std::fs::write(&wrong_ca, issue_pki().ca_pem).expect("write other-ca.pem");
    let (right_ca, wrong_ca) = (
        right_ca.to_str().expect("utf-8 path").to_owned(),
        wrong_ca.to_str().expect("utf-8 path").to_owned(),
    );

    let plain = migrations_status(&pg, &[]);
    assert!(!plain.status.success(), "plain TCP must be refused");
    assert!(
        said(&plain).contains("no encryption") || said(&plain).contains("pg_hba.conf"),
        "the server's refusal is shown: {}",
        said(&plain)
    );

    let tls = migrations_status(&pg, &[("KONG_PG_SSL", "on")]);
    assert!(tls.status.success(), "pg_ssl=on: {}", said(&tls));
    let status: serde_json::Value = serde_json::from_slice(&tls.stdout).expect("status is JSON");
    assert_eq!(status["bootstrapped"], false);

    let verified = migrations_status(
        &pg,
        &[
            ("KONG_PG_SSL", "on"),
            ("KONG_PG_SSL_VERIFY", "on"),
            ("KONG_LUA_SSL_TRUSTED_CERTIFICATE", &right_ca),
        ],
    );
    assert!(
        verified.status.success(),
        "verified against its CA: {}",
        said(&verified)
    );

    let untrusted = migrations_status(
        &pg,
        &[
            ("KONG_PG_SSL", "on"),
            ("KONG_PG_SSL_VERIFY", "on"),
            ("KONG_LUA_SSL_TRUSTED_CERTIFICATE", &wrong_ca),
        ],
    );
    assert!(!untrusted.status.success(), "an unknown CA must be refused");
    assert!(
        said(&untrusted).to_lowercase().contains("certificate"),
        "the refusal names the certificate: {}",
        said(&untrusted)
    );
}
