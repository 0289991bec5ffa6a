//! TLS over the owned-buffer [`Stream`](crate::stream::Stream) seam, both directions,
//! with rustls (ring provider) and no tokio-rustls: io_uring streams own their buffers, so the
//! record layer is driven by hand (`read_tls`/`write_tls` through owned ciphertext buffers).
//!
//! - [`stream`]: [`TlsStream`], itself a `Stream`, plus [`accept`] (and [`accept_with_prefix`],
//!   after a PROXY protocol header) and [`connect`] which drive the handshake.
//! - [`server`]: downstream certificates: [`CertStore`] picks a certificate by SNI the way Kong
//!   does (exact, `*.x.com`, `x.*`, the `*` SNI, then the default certificate) and by the
//!   client's signature schemes when a certificate has a `cert_alt`; [`server_config`] and
//!   [`default_certificate`] (Kong's auto-generated `localhost` certificate when none is set).
//! - [`policy`]: [`ServerTls`], Kong's `ssl_cipher_suite`, `ssl_protocols`, `ssl_ciphers` and
//!   session settings for the downstream listeners.
//! - [`client`]: upstream `https`: [`client_config`] with or without verification, trust
//!   anchors in [`RootSource`], and [`ClientConfigCache`] for one config per distinct
//!   (verify, depth, roots, client certificate).

pub mod client;
pub mod policy;
pub mod server;
pub mod stream;

#[cfg(test)]
mod testutil;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use client::{
    ClientConfigCache, RootSource, client_certificate, client_config, client_ssl_certificate,
};
pub use policy::ServerTls;
pub use rustls::sign::CertifiedKey;
pub use server::{CertPair, CertStore, default_certificate, self_signed_pem, server_config};
pub use stream::{TlsStream, accept, accept_with_prefix, connect};

/// The ALPN protocol both directions offer: HTTP/1.1 only until h2 exists.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The [`ServerName`] to verify (and send as SNI) for an upstream `host`: an IP address
/// (brackets allowed for IPv6; no SNI is sent for IPs) or a DNS name. `InvalidInput` otherwise.
pub fn server_name(host: &str) -> std::io::Result<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host}: {e}")))
}

/// Errors loading certificates, keys and trust anchors outside the entity model (files named in
/// settings, generated certificates). Entity problems are reported as `ConfigErrors` instead.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM text held no usable certificate or key.
    #[error("{what}: {message}")]
    Pem {
        /// Which input (a path, or an entity description).
        what: String,
        /// Why.
        message: String,
    },
    /// The number of certificate and key files differ.
    #[error("{certs} certificate file(s) but {keys} key file(s); they must pair up")]
    Unpaired {
        /// Certificate files given.
        certs: usize,
        /// Key files given.
        keys: usize,
    },
    /// rustls refused a key or certificate.
    #[error("{what}: {source}")]
    Rustls {
        /// Which input.
        what: String,
        /// Why.
        source: rustls::Error,
    },
    /// The TLS settings leave nothing to serve ([`ServerTls::from_settings`]).
    #[error("{0}")]
    Settings(String),
    /// rcgen could not generate the default certificate.
    #[error("could not generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The PEM a certificate or key setting gives, in the forms Kong takes (`ssl_cert`,
/// `client_ssl_cert`, ...): the PEM text itself, the file it names, or base64 of the PEM
/// text. The error is the file's when the value is none of them.
pub(crate) fn pem_setting(value: &str) -> std::io::Result<Vec<u8>> {
    use base64::Engine;
    let value = value.trim();
    if value.starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    std::fs::read(value).or_else(|unreadable| {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .filter(|pem| pem.trim_ascii_start().starts_with(b"-----BEGIN"))
            .ok_or(unreadable)
    })
}

/// The process-wide ring crypto provider every config here is built with.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Parses every `CERTIFICATE` block of a PEM text, in order (the chain, leaf first).
/// Errors carry a short reason; an input without any certificate is an error.
pub(crate) fn parse_cert_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM text.
pub(crate) fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key found".to_string(),
        other => other.to_string(),
    })
}

/// Builds a [`CertifiedKey`] from PEM texts and checks that the key matches the leaf certificate.
/// The error is a short reason without a prefix; callers add Kong's wording.
pub(crate) fn certified_key_from_pem(
    cert: &[u8],
    key: &[u8],
) -> Result<CertifiedKey, KeyLoadError> {
    let chain = parse_cert_chain(cert).map_err(KeyLoadError::Cert)?;
    let key = parse_private_key(key).map_err(KeyLoadError::Key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| KeyLoadError::Key(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(KeyLoadError::Mismatch)
        }
        Err(e) => Err(KeyLoadError::Cert(e.to_string())),
    }
}

/// Why a certificate/key pair could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyLoadError {
    /// The certificate PEM is unusable.
    Cert(String),
    /// The key PEM is unusable.
    Key(String),
    /// The key does not belong to the leaf certificate.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testutil::{TestCa, ecdsa_self_signed};

    #[test]
    fn pem_pairs_load_and_mismatches_are_caught() {
        let (cert, key) = ecdsa_self_signed(&["a.test"]);
        let (_, other_key) = ecdsa_self_signed(&["b.test"]);
        assert!(certified_key_from_pem(cert.as_bytes(), key.as_bytes()).is_ok());
        assert_eq!(
            certified_key_from_pem(cert.as_bytes(), other_key.as_bytes()).err(),
            Some(KeyLoadError::Mismatch)
        );
        assert!(matches!(
            certified_key_from_pem(b"garbage", key.as_bytes()),
            Err(KeyLoadError::Cert(m)) if m == "no PEM certificate found"
        ));
        assert!(matches!(
            certified_key_from_pem(cert.as_bytes(), b"nope"),
            Err(KeyLoadError::Key(m)) if m == "no PEM private key found"
        ));
    }

    #[test]
    fn upstream_hosts_become_server_names() {
        assert!(matches!(
            server_name("api.example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        let err = server_name("bad name!").expect_err("not a host");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn chains_keep_their_order() {
        let ca = TestCa::new("Chain CA");
        let (leaf, _key) = ca.issue(&["leaf.test"]);
        let pem = format!("{leaf}{}", ca.cert_pem);
        let chain = parse_cert_chain(pem.as_bytes()).expect("chain parses");
        assert_eq!(chain.len(), 2);
        assert_eq!(
            chain[1],
            parse_cert_chain(ca.cert_pem.as_bytes()).expect("ca")[0]
        );
    }
}
