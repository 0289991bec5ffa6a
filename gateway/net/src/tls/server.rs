//! Downstream TLS: which certificate a client gets, and the server config.
//!
//! Kong's order (`kong/runloop/certificate.lua`): a client without SNI gets the default
//! certificate. Otherwise the first SNI entity that matches wins, in this order: the exact name,
//! the name with its leftmost label replaced (`*.example.com`, only for names of three or more
//! labels), the name with its rightmost label replaced (`www.example.*`), the catch-all SNI
//! named `*`; then the default certificate (`ssl_cert`, or the generated `localhost` one).
//! A certificate with `cert_alt`/`key_alt` carries two key types; the client's signature
//! schemes pick one, preferring ECDSA as OpenSSL does when a client supports both.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};

use crate::tls::{
    ALPN_HTTP11, KeyLoadError, ServerTls, TlsError, certified_key_from_pem, pem_setting,
};
use gangway_config::error::ConfigErrors;
use gangway_config::model::{Certificate, Id, Sni};

/// A certificate and, optionally, its alternate of the other key type (Kong's `cert_alt`).
#[derive(Debug, Clone)]
pub struct CertPair {
    primary: Arc<CertifiedKey>,
    alt: Option<Arc<CertifiedKey>>,
}

impl CertPair {
    /// A pair; `alt` defaults to none.
    pub fn new(primary: Arc<CertifiedKey>, alt: Option<Arc<CertifiedKey>>) -> Self {
        CertPair { primary, alt }
    }

    /// The main certificate (`cert`/`key`).
    pub fn primary(&self) -> &Arc<CertifiedKey> {
        &self.primary
    }

    /// The alternate certificate (`cert_alt`/`key_alt`), if any.
    pub fn alt(&self) -> Option<&Arc<CertifiedKey>> {
        self.alt.as_ref()
    }

    /// The certificate to present to a client offering `schemes`: the non-RSA one when the
    /// client can verify it, else whichever it can verify, else the primary (the handshake then
    /// fails in rustls with a clear error).
    pub fn choose(&self, schemes: &[SignatureScheme]) -> &Arc<CertifiedKey> {
        let Some(alt) = &self.alt else {
            return &self.primary;
        };
        let (first, second) = if self.primary.key.algorithm() == SignatureAlgorithm::RSA {
            (alt, &self.primary)
        } else {
            (&self.primary, alt)
        };
        if first.key.choose_scheme(schemes).is_some() {
            first
        } else if second.key.choose_scheme(schemes).is_some() {
            second
        } else {
            &self.primary
        }
    }
}

impl From<Arc<CertifiedKey>> for CertPair {
    fn from(primary: Arc<CertifiedKey>) -> Self {
        CertPair { primary, alt: None }
    }
}

/// The downstream certificates of one config snapshot, indexed by SNI; a rustls
/// [`ResolvesServerCert`]. Lookups do not allocate (wildcard tables are keyed by the part of the
/// name the wildcard leaves fixed).
#[derive(Debug)]
pub struct CertStore {
    pairs: Vec<CertPair>,
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `.example.com`.
    prefix_wild: HashMap<String, usize>,
    /// `www.example.*` stored as `www.example.`.
    suffix_wild: HashMap<String, usize>,
    /// The SNI entity named `*`.
    catch_all: Option<usize>,
    default: CertPair,
}

impl CertStore {
    /// Loads every certificate entity and indexes the SNIs. Every problem is reported with its
    /// entity path and Kong's message (`certificates[0].key: invalid key: ...`,
    /// `certificates[1]: certificate does not match key`, `snis[2].certificate: ...`).
    pub fn build(
        certs: &[Certificate],
        snis: &[Sni],
        default: impl Into<CertPair>,
    ) -> Result<CertStore, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut store = CertStore {
            pairs: Vec::with_capacity(certs.len()),
            exact: HashMap::new(),
            prefix_wild: HashMap::new(),
            suffix_wild: HashMap::new(),
            catch_all: None,
            default: default.into(),
        };
        let mut by_id: HashMap<Id, Option<usize>> = HashMap::with_capacity(certs.len());
        for (i, cert) in certs.iter().enumerate() {
            let loaded = load_entity(i, cert, &mut errors).map(|pair| {
                store.pairs.push(pair);
                store.pairs.len() - 1
            });
            by_id.insert(cert.id, loaded);
        }
        for (j, sni) in snis.iter().enumerate() {
            let idx = match by_id.get(&sni.certificate.id) {
                Some(Some(idx)) => *idx,
                // The certificate itself failed to load and was reported.
                Some(None) => continue,
                None => {
                    errors.push(
                        format!("snis[{j}].certificate"),
                        format!(
                            "invalid reference 'certificate: {{id=\"{}\"}}' (no such entry in 'certificates')",
                            sni.certificate.id
                        ),
                    );
                    continue;
                }
            };
            let name = sni.name.to_ascii_lowercase();
            let (table, key) = if name == "*" {
                if store.catch_all.is_some() {
                    errors.push(format!("snis[{j}].name"), duplicate_sni(&name));
                } else {
                    store.catch_all = Some(idx);
                }
                continue;
            } else if let Some(rest) = name.strip_prefix('*') {
                (&mut store.prefix_wild, rest.to_string())
            } else if let Some(head) = name.strip_suffix('*') {
                (&mut store.suffix_wild, head.to_string())
            } else {
                (&mut store.exact, name.clone())
            };
            if table.insert(key, idx).is_some() {
                errors.push(format!("snis[{j}].name"), duplicate_sni(&name));
            }
        }
        errors.into_result(store)
    }

    /// The certificate pair Kong would serve for `sni` (`None`: no SNI sent).
    pub fn lookup(&self, sni: Option<&str>) -> &CertPair {
        let Some(name) = sni else {
            return &self.default;
        };
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let idx = self
            .exact
            .get(name)
            .or_else(|| {
                // `*.b.c` covers `a.b.c` but never `b.c`: the rest must still hold a dot.
                let dot = name.find('.')?;
                let rest = &name[dot..];
                if dot == 0 || !rest[1..].contains('.') {
                    return None;
                }
                self.prefix_wild.get(rest)
            })
            .or_else(|| {
                let dot = name.rfind('.')?;
                if dot + 1 == name.len() {
                    return None;
                }
                self.suffix_wild.get(&name[..=dot])
            })
            .or(self.catch_all.as_ref());
        match idx {
            Some(&i) => &self.pairs[i],
            None => &self.default,
        }
    }

    /// The default certificate (served without SNI or without a matching SNI entity).
    pub fn default_pair(&self) -> &CertPair {
        &self.default
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let pair = self.lookup(client_hello.server_name());
        Some(pair.choose(client_hello.signature_schemes()).clone())
    }
}

fn duplicate_sni(name: &str) -> String {
    format!("uniqueness violation: 'snis' entity with name set to '{name}' already declared")
}

/// Loads one certificate entity, reporting problems under `certificates[i]`.
fn load_entity(i: usize, cert: &Certificate, errors: &mut ConfigErrors) -> Option<CertPair> {
    let at = |field: &str| {
        if field.is_empty() {
            format!("certificates[{i}]")
        } else {
            format!("certificates[{i}].{field}")
        }
    };
    let report =
        |errors: &mut ConfigErrors, e: KeyLoadError, cert_f: &str, key_f: &str, mismatch: &str| {
            match e {
                KeyLoadError::Cert(m) => {
                    errors.push(at(cert_f), format!("invalid certificate: {m}"))
                }
                KeyLoadError::Key(m) => errors.push(at(key_f), format!("invalid key: {m}")),
                KeyLoadError::Mismatch => errors.push(at(""), mismatch),
            }
        };
    let primary = match certified_key_from_pem(cert.cert.as_bytes(), cert.key.as_bytes()) {
        Ok(ck) => Some(Arc::new(ck)),
        Err(e) => {
            report(errors, e, "cert", "key", "certificate does not match key");
            None
        }
    };
    let alt = match (&cert.cert_alt, &cert.key_alt) {
        (None, None) => None,
        (Some(c), Some(k)) => match certified_key_from_pem(c.as_bytes(), k.as_bytes()) {
            Ok(ck) => Some(Arc::new(ck)),
            Err(e) => {
                report(
                    errors,
                    e,
                    "cert_alt",
                    "key_alt",
                    "alternative certificate does not match key",
                );
                return None;
            }
        },
        _ => {
            errors.push(
                at(""),
                "all or none of these fields must be set: 'cert_alt', 'key_alt'",
            );
            return None;
        }
    };
    let primary = primary?;
    if let Some(alt) = &alt {
        if alt.key.algorithm() == primary.key.algorithm() {
            errors.push(
                at(""),
                "certificate and alternative certificate need to have different type (e.g. RSA \
                 and ECDSA), the provided certificates were both of the same type",
            );
            return None;
        }
    }
    Some(CertPair { primary, alt })
}

/// The downstream server config: certificates from `store`, ALPN `http/1.1` only (no h2 yet),
/// the versions, ciphers, cipher order and resumption of `tls`.
///
/// The ticket keys (rotated by rustls every 6 hours) and the session-id cache belong to the
/// process, not to a config: clients keep resuming their sessions across reloads.
pub fn server_config(store: Arc<CertStore>, tls: &ServerTls) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(tls.provider.clone())
        .with_protocol_versions(&tls.versions)
        .expect("invariant: ServerTls holds ciphers for each of its versions")
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.ignore_client_order = tls.prefer_server_order;
    let (sessions, ticketer) = resumption(tls);
    config.session_storage = sessions;
    if let Some(ticketer) = ticketer.filter(|_| tls.session_tickets) {
        config.ticketer = ticketer;
    }
    Arc::new(config)
}

type SessionStore = Arc<dyn rustls::server::StoresServerSessions>;
type TicketProducer = Arc<dyn rustls::server::ProducesTickets>;

/// The process's session-id cache (sized by the first `tls` asked for) and ticketer, made on
/// first use.
fn resumption(tls: &ServerTls) -> (SessionStore, Option<TicketProducer>) {
    static RESUMPTION: std::sync::OnceLock<(SessionStore, Option<TicketProducer>)> =
        std::sync::OnceLock::new();
    RESUMPTION
        .get_or_init(|| {
            let sessions: SessionStore =
                rustls::server::ServerSessionMemoryCache::new(tls.session_cache_entries);
            let ticketer = match rustls::crypto::ring::Ticketer::new() {
                Ok(t) => Some(t),
                // Resumption then falls back to the session-id cache.
                Err(e) => {
                    tracing::warn!(error = %e, "tls: no session ticketer");
                    None
                }
            };
            (sessions, ticketer)
        })
        .clone()
}

/// The default certificate (Kong's `ssl_cert`/`ssl_cert_key`, paired by position: the first
/// pair is the primary, a second pair its alternate of the other key type). With no paths it
/// defaults to a generated self-signed ECDSA P-256 certificate for `localhost`, like Kong's
/// auto-generated `kong-default.crt` (ring cannot generate RSA keys, so there is no RSA twin).
pub fn default_certificate(
    cert_paths: &[PathBuf],
    key_paths: &[PathBuf],
) -> Result<CertPair, TlsError> {
    if cert_paths.len() != key_paths.len() {
        return Err(TlsError::Unpaired {
            certs: cert_paths.len(),
            keys: key_paths.len(),
        });
    }
    if cert_paths.is_empty() {
        let (cert, key) = self_signed_pem(&["localhost"])?;
        let ck =
            certified_key_from_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| TlsError::Pem {
                what: "generated certificate".into(),
                message: format!("{e:?}"),
            })?;
        return Ok(CertPair::from(Arc::new(ck)));
    }
    if cert_paths.len() > 2 {
        return Err(TlsError::Pem {
            what: "ssl_cert".into(),
            message: "at most two certificates (one RSA, one ECDSA) are supported".into(),
        });
    }
    let mut loaded = Vec::with_capacity(2);
    for (cert_path, key_path) in cert_paths.iter().zip(key_paths) {
        let read = |p: &PathBuf| {
            pem_setting(&p.to_string_lossy()).map_err(|source| TlsError::Read {
                path: p.clone(),
                source,
            })
        };
        let (cert, key) = (read(cert_path)?, read(key_path)?);
        // A value given as PEM text (or its base64) is not shown back whole.
        let shown = |p: &PathBuf| match std::fs::exists(p) {
            Ok(true) => p.display().to_string(),
            _ => "the PEM text given".to_owned(),
        };
        let ck = certified_key_from_pem(&cert, &key).map_err(|e| match e {
            KeyLoadError::Cert(m) => TlsError::Pem {
                what: shown(cert_path),
                message: m,
            },
            KeyLoadError::Key(m) => TlsError::Pem {
                what: shown(key_path),
                message: m,
            },
            KeyLoadError::Mismatch => TlsError::Pem {
                what: shown(cert_path),
                message: format!("certificate does not match key {}", shown(key_path)),
            },
        })?;
        loaded.push(Arc::new(ck));
    }
    let mut loaded = loaded.into_iter();
    let primary = loaded.next().expect("invariant: cert_paths is not empty");
    let alt = loaded.next();
    if let Some(a) = &alt {
        if a.key.algorithm() == primary.key.algorithm() {
            return Err(TlsError::Pem {
                what: "ssl_cert".into(),
                message: "the two certificates must use different key types (RSA and ECDSA)".into(),
            });
        }
    }
    Ok(CertPair { primary, alt })
}

/// Generates a self-signed ECDSA P-256 certificate for `names` (the first is the CN), valid
/// from last year for twenty years, with Kong's default-certificate subject fields.
/// Returns (certificate PEM, PKCS#8 key PEM).
pub fn self_signed_pem(names: &[&str]) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let sans: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    let mut params = CertificateParams::new(sans)?;
    let dn = &mut params.distinguished_name;
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "California");
    dn.push(DnType::LocalityName, "San Francisco");
    dn.push(DnType::OrganizationName, "Kong");
    dn.push(DnType::OrganizationalUnitName, "IT Department");
    dn.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("localhost"),
    );
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 20, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The current UTC year, from the system clock (off by at most a day around New Year, which
/// the validity margins absorb).
fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
