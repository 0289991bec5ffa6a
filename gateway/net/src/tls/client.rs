//! Upstream TLS (`https` services): client configs, trust anchors and verification.
//!
//! Kong's rules: a service's `tls_verify` (null means the `proxy_ssl_verify` setting, off by
//! default) turns verification on; `tls_verify_depth` (null: no limit beyond the verifier's)
//! bounds the number of intermediate CAs between the leaf and the trust anchor, as OpenSSL's
//! verify depth does; a service's `ca_certificates` *replace* the global trust store
//! (`lua_ssl_trusted_certificate`, `system` plus PEM files) for that service; `client_certificate`
//! is presented when the upstream asks for one. With verification off any certificate is
//! accepted, but handshake signatures are still checked, so the peer must hold the key of the
//! certificate it sent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::tls::{
    ALPN_HTTP11, KeyLoadError, TlsError, certified_key_from_pem, parse_cert_chain, pem_setting,
    provider,
};
use gangway_config::model::CaCertificate;

/// A set of trust anchors for verifying upstreams, with an identity for [`ClientConfigCache`].
#[derive(Debug, Clone)]
pub struct RootSource {
    store: Arc<RootCertStore>,
    key: RootKey,
}

/// What a [`RootSource`] was built from; equal keys mean equal anchors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RootKey {
    /// The global store: the system's roots (when `system`) plus PEM files.
    Trusted { system: bool, files: Vec<PathBuf> },
    /// A service's `ca_certificates`, by digest, sorted.
    Cas(Vec<String>),
}

impl RootSource {
    /// The global trust store (Kong's `lua_ssl_trusted_certificate`, default `system`):
    /// the platform's roots when `system`, plus every certificate in `pem_files`. System roots
    /// that fail to load are logged, not fatal (a slim container may have none); unreadable
    /// or certificate-less PEM files are errors.
    pub fn trusted(system: bool, pem_files: &[PathBuf]) -> Result<RootSource, TlsError> {
        let mut store = RootCertStore::empty();
        if system {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "tls: could not load some system root certificates");
            }
            let (added, ignored) = store.add_parsable_certificates(native.certs);
            if ignored > 0 {
                tracing::debug!(added, ignored, "tls: skipped unparsable system roots");
            }
        }
        for path in pem_files {
            let pem = std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.clone(),
                source,
            })?;
            let certs = parse_cert_chain(&pem).map_err(|message| TlsError::Pem {
                what: path.display().to_string(),
                message,
            })?;
            for cert in certs {
                store.add(cert).map_err(|source| TlsError::Rustls {
                    what: path.display().to_string(),
                    source,
                })?;
            }
        }
        Ok(RootSource {
            store: Arc::new(store),
            key: RootKey::Trusted {
                system,
                files: pem_files.to_vec(),
            },
        })
    }

    /// Exactly the given CA certificates (a service's `ca_certificates`, which replace the
    /// global store like Kong's `set_upstream_ssl_trusted_store`).
    pub fn from_ca_certificates(cas: &[&CaCertificate]) -> Result<RootSource, TlsError> {
        let mut store = RootCertStore::empty();
        let mut ids = Vec::with_capacity(cas.len());
        for ca in cas {
            let what = || format!("ca_certificates {}", ca.id);
            let certs = parse_cert_chain(ca.cert.as_bytes()).map_err(|message| TlsError::Pem {
                what: what(),
                message,
            })?;
            for cert in certs {
                store.add(cert).map_err(|source| TlsError::Rustls {
                    what: what(),
                    source,
                })?;
            }
            // The digest identifies the content (an id may be re-pointed at a new PEM).
            ids.push(if ca.cert_digest.is_empty() {
                ca.cert.clone()
            } else {
                ca.cert_digest.clone()
            });
        }
        ids.sort();
        ids.dedup();
        Ok(RootSource {
            store: Arc::new(store),
            key: RootKey::Cas(ids),
        })
    }

    /// Number of trust anchors.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when there are no anchors (verification then fails with `UnknownIssuer`).
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// The certificate a service presents to its upstream (Kong's `client_certificate`), from a
/// certificate entity's PEM texts. The error is Kong's wording for the entity.
pub fn client_certificate(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, String> {
    match certified_key_from_pem(cert.as_bytes(), key.as_bytes()) {
        Ok(ck) => Ok(Arc::new(ck)),
        Err(KeyLoadError::Cert(m)) => Err(format!("invalid certificate: {m}")),
        Err(KeyLoadError::Key(m)) => Err(format!("invalid key: {m}")),
        Err(KeyLoadError::Mismatch) => Err("certificate does not match key".into()),
    }
}

/// Kong's `client_ssl_cert` and `client_ssl_cert_key`: the certificate upstreams get when a
/// service names none. Each value is a file path, the PEM text, or base64 of the PEM text,
/// as Kong takes them; errors name the setting as Kong's do.
pub fn client_ssl_certificate(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, String> {
    let text = |value: &str| {
        pem_setting(value)
            .ok()
            .and_then(|pem| String::from_utf8(pem).ok())
    };
    let cert_pem = text(cert)
        .ok_or_else(|| format!("client_ssl_cert: failed loading certificate from {cert}"))?;
    let key_pem =
        text(key).ok_or_else(|| format!("client_ssl_cert_key: failed loading key from {key}"))?;
    client_certificate(&cert_pem, &key_pem).map_err(|e| format!("client_ssl_cert: {e}"))
}

/// A client config for upstream TLS: verification on or off (`verify`, Kong's `tls_verify`
/// resolved against `proxy_ssl_verify`, default off), an optional maximum number of
/// intermediates (`depth`, default none), trust anchors `roots` (ignored when not verifying),
/// an optional client certificate (default none). ALPN `http/1.1`; session resumption with
/// rustls' default in-memory cache (256 sessions).
pub fn client_config(
    verify: bool,
    depth: Option<u8>,
    roots: &RootSource,
    client_cert: Option<Arc<CertifiedKey>>,
) -> Arc<ClientConfig> {
    build_client_config(verify, depth, roots, client_cert, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] restricted to `versions` (tests pin TLS 1.2 with it).
pub(crate) fn build_client_config(
    verify: bool,
    depth: Option<u8>,
    roots: &RootSource,
    client_cert: Option<Arc<CertifiedKey>>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = provider();
    let mode = if !verify {
        Mode::Off
    } else {
        match WebPkiServerVerifier::builder_with_provider(roots.store.clone(), provider.clone())
            .build()
        {
            Ok(webpki) => Mode::Verify { webpki, depth },
            // The only build error without CRLs is an empty root store.
            Err(_) => Mode::NoRoots,
        }
    };
    let verifier = UpstreamVerifier {
        mode,
        algs: provider.signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("invariant: the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client_cert {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

/// How the upstream certificate is checked.
#[derive(Debug)]
enum Mode {
    /// Accept any certificate (signatures are still verified).
    Off,
    /// Verification is on but there is nothing to trust.
    NoRoots,
    /// WebPKI verification, then the depth limit.
    Verify {
        webpki: Arc<WebPkiServerVerifier>,
        depth: Option<u8>,
    },
}

#[derive(Debug)]
struct UpstreamVerifier {
    mode: Mode,
    algs: WebPkiSupportedAlgorithms,
}

/// OpenSSL's wording for a chain over the verify depth.
#[derive(thiserror::Error)]
#[error("certificate chain too long")]
struct ChainTooLong;

// rustls renders `CertificateError::Other` with `Debug`, so make that read like the message.
impl std::fmt::Debug for ChainTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("certificate chain too long")
    }
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.mode {
            Mode::Off => Ok(ServerCertVerified::assertion()),
            Mode::NoRoots => Err(CertificateError::UnknownIssuer.into()),
            Mode::Verify { webpki, depth } => {
                let verified = webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )?;
                // webpki does not report the path it built, so the limit is enforced by
                // verifying again with only the first `depth` intermediates (servers send
                // them leaf-to-root): a path within the limit must still verify.
                if let Some(depth) = depth {
                    let depth = usize::from(*depth);
                    if intermediates.len() > depth
                        && webpki
                            .verify_server_cert(
                                end_entity,
                                &intermediates[..depth],
                                server_name,
                                ocsp_response,
                                now,
                            )
                            .is_err()
                    {
                        return Err(
                            CertificateError::Other(OtherError(Arc::new(ChainTooLong))).into()
                        );
                    }
                }
                Ok(verified)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// What makes two upstream client configs interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    verify: bool,
    depth: Option<u8>,
    roots: Option<RootKey>,
    /// The client certificate chain (content, not identity: entities are reloaded).
    client_cert: Option<Vec<CertificateDer<'static>>>,
}

/// One [`client_config`] per distinct (verify, depth, roots, client certificate), so services
/// with the same settings share a config and its session cache. Owned by the compile step;
/// keep it across compiles so resumption survives reloads, and call [`sweep`](Self::sweep)
/// after each compile to drop configs no service asked for. Empty by default.
#[derive(Debug, Default)]
pub struct ClientConfigCache {
    configs: HashMap<ClientKey, (Arc<ClientConfig>, bool)>,
}

impl ClientConfigCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The config for these settings, built on first use. With `verify` off, `depth` and
    /// `roots` do not matter and all such requests share one config per client certificate.
    pub fn get(
        &mut self,
        verify: bool,
        depth: Option<u8>,
        roots: &RootSource,
        client_cert: Option<&Arc<CertifiedKey>>,
    ) -> Arc<ClientConfig> {
        let key = ClientKey {
            verify,
            depth: depth.filter(|_| verify),
            roots: verify.then(|| roots.key.clone()),
            client_cert: client_cert.map(|ck| ck.cert.clone()),
        };
        let entry = self.configs.entry(key).or_insert_with(|| {
            (
                client_config(verify, depth, roots, client_cert.cloned()),
                true,
            )
        });
        entry.1 = true;
        entry.0.clone()
    }

    /// Drops the configs not requested since the previous sweep.
    pub fn sweep(&mut self) {
        self.configs.retain(|_, (_, used)| std::mem::take(used));
    }

    /// Number of cached configs.
    pub fn len(&self) -> usize {
        self.configs.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
