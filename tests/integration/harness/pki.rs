//! Certificates for TLS tests: a CA and a server certificate it signs.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA and a server certificate it issued, in PEM.
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The server certificate.
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
}

/// A CA and a server certificate it signs for 127.0.0.1 (an IP SAN: clients dial the IP)
/// and `redis.internal`.
pub fn issue_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("self-signed ca");
    let server_key = KeyPair::generate().expect("server key");
    let names = vec!["127.0.0.1".to_string(), "redis.internal".to_string()];
    let server = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("sign server cert");
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}
