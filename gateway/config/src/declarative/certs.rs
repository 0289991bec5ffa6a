//! CA certificate checks: exactly one PEM certificate, with the CA basic constraint, not
//! expired; its sha256 digest becomes `cert_digest`.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Validates a `ca_certificates` PEM and returns its sha256 hex digest.
pub(crate) fn ca_digest(pem: &str) -> Result<String, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let [der] = certs.as_slice() else {
        return Err(format!(
            "please submit only one certificate at a time (found {})",
            certs.len()
        ));
    };
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("invalid certificate: {e}"))?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err("certificate does not appear to be a CA because it is missing the \"CA\" basic constraint".into());
    }
    if !cert.validity().is_valid() {
        return Err("certificate expired, \"Not After\" time is in the past".into());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_ca_and_rejects_leaves_and_bundles() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["ca.test".into()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca");
        let digest = ca_digest(&ca.pem()).expect("a CA is accepted");
        assert_eq!(digest.len(), 64);
        let leaf = rcgen::CertificateParams::new(vec!["leaf.test".into()])
            .expect("params")
            .self_signed(&key)
            .expect("leaf");
        assert!(
            ca_digest(&leaf.pem())
                .expect_err("refused")
                .contains("basic constraint")
        );
        let both = format!("{}{}", ca.pem(), leaf.pem());
        assert!(
            ca_digest(&both)
                .expect_err("refused")
                .contains("only one certificate")
        );
    }
}
