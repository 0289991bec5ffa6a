//! Kong's downstream TLS settings (`ssl_cipher_suite`, `ssl_protocols`, `ssl_ciphers`,
//! `ssl_prefer_server_ciphers`, `ssl_session_tickets`, `ssl_session_cache_size`) as rustls
//! applies them.
//!
//! Kong (`kong/conf_loader`) takes the versions, the TLS 1.2 ciphers and the cipher order from
//! the Mozilla profile `ssl_cipher_suite` names, and from the three `ssl_*` settings only when
//! it is `custom`. rustls has no TLS 1.0 or 1.1, no DHE and no CBC ciphers: a profile or list
//! that names them is served without them, and startup says so.

use std::sync::Arc;

use gangway_config::settings::{CipherSuite, Settings, TlsProtocol};
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as suites;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

/// How many sessions a megabyte of nginx's `ssl_session_cache` holds (nginx's documentation).
const SESSIONS_PER_MIB: u64 = 4_000;

/// OpenSSL's names of the TLS 1.2 ciphers rustls has, in the Mozilla profiles' order.
const TLS12_BY_OPENSSL_NAME: [(&str, SupportedCipherSuite); 6] = [
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// The TLS versions, ciphers and session resumption the downstream listeners serve.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) versions: Vec<&'static SupportedProtocolVersion>,
    pub(super) prefer_server_order: bool,
    pub(super) session_tickets: bool,
    pub(super) session_cache_entries: usize,
}

impl Default for ServerTls {
    /// Kong's defaults: `intermediate`, tickets on, a 10 MiB session cache.
    fn default() -> Self {
        let (tls, _) = ServerTls::from_settings(&Settings::default())
            .expect("invariant: the default profile has ciphers and versions");
        tls
    }
}

impl ServerTls {
    /// The policy `settings` ask for, with a line for each part of it gangway cannot serve;
    /// an error when nothing would be left to serve.
    pub fn from_settings(settings: &Settings) -> Result<(ServerTls, Vec<String>), String> {
        let mut warnings = Vec::new();
        let every_tls12 = || TLS12_BY_OPENSSL_NAME.iter().map(|&(_, s)| s).collect();
        let (versions, tls12, prefer_server_order) = match settings.ssl_cipher_suite {
            CipherSuite::Modern => (vec![TlsProtocol::Tls13], Vec::new(), false),
            CipherSuite::Intermediate => (
                vec![TlsProtocol::Tls12, TlsProtocol::Tls13],
                every_tls12(),
                false,
            ),
            CipherSuite::Old => {
                warnings.push(
                    "ssl_cipher_suite = old: gangway's TLS (rustls) has no TLSv1, TLSv1.1, \
                     DHE or CBC ciphers; it serves TLS 1.2 and 1.3 with the profile's ECDHE \
                     AEAD ciphers"
                        .to_owned(),
                );
                (
                    vec![TlsProtocol::Tls12, TlsProtocol::Tls13],
                    every_tls12(),
                    true,
                )
            }
            CipherSuite::Fips => {
                warnings.push(
                    "ssl_cipher_suite = fips: gangway serves TLS 1.2 with AES-GCM ciphers only, \
                     but its crypto (ring) is not a FIPS 140 validated module"
                        .to_owned(),
                );
                let aes_gcm = TLS12_BY_OPENSSL_NAME
                    .iter()
                    .filter(|(name, _)| name.contains("-GCM-"))
                    .map(|&(_, s)| s)
                    .collect();
                (vec![TlsProtocol::Tls12], aes_gcm, true)
            }
            CipherSuite::Custom => {
                let tls12 = match &settings.ssl_ciphers {
                    Some(list) => named_ciphers(list, &mut warnings),
                    None => every_tls12(),
                };
                (
                    settings.ssl_protocols.0.clone(),
                    tls12,
                    settings.ssl_prefer_server_ciphers,
                )
            }
        };
        let versions = served_versions(&versions, &mut warnings)?;
        if versions.contains(&&rustls::version::TLS12) && tls12.is_empty() {
            return Err(format!(
                "ssl_ciphers names no TLS 1.2 cipher gangway has ({})",
                openssl_names()
            ));
        }
        let default = rustls::crypto::ring::default_provider();
        let cipher_suites = default
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .chain(tls12)
            .collect();
        let provider = Arc::new(CryptoProvider {
            cipher_suites,
            ..default
        });
        let entries = (settings
            .ssl_session_cache_size
            .saturating_mul(SESSIONS_PER_MIB)
            >> 20)
            .clamp(1, usize::MAX as u64) as usize;
        Ok((
            ServerTls {
                provider,
                versions,
                prefer_server_order,
                session_tickets: settings.ssl_session_tickets,
                session_cache_entries: entries,
            },
            warnings,
        ))
    }
}

/// The rustls versions of `asked`; TLS 1.0 and 1.1 are dropped with a warning.
fn served_versions(
    asked: &[TlsProtocol],
    warnings: &mut Vec<String>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let mut versions = Vec::new();
    for &protocol in asked {
        match protocol {
            TlsProtocol::Tls12 => versions.push(&rustls::version::TLS12),
            TlsProtocol::Tls13 => versions.push(&rustls::version::TLS13),
            TlsProtocol::Tls10 | TlsProtocol::Tls11 => warnings.push(format!(
                "ssl_protocols: gangway's TLS (rustls) has no {}; it is not served",
                protocol.as_str()
            )),
        }
    }
    if versions.is_empty() {
        return Err(
            "ssl_protocols enables no TLS version gangway serves (TLSv1.2, TLSv1.3)".to_owned(),
        );
    }
    Ok(versions)
}

/// The TLS 1.2 ciphers an OpenSSL cipher list names, in its order; a name rustls lacks (or an
/// OpenSSL cipher expression such as `HIGH`) is left out with a warning.
fn named_ciphers(list: &str, warnings: &mut Vec<String>) -> Vec<SupportedCipherSuite> {
    let mut found = Vec::new();
    for name in list
        .split(|c: char| c == ':' || c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
    {
        match TLS12_BY_OPENSSL_NAME
            .iter()
            .find(|(known, _)| *known == name)
        {
            Some(&(_, suite)) if !found.contains(&suite) => found.push(suite),
            Some(_) => {}
            None => warnings.push(format!(
                "ssl_ciphers: gangway has no TLS 1.2 cipher '{name}'; it is left out (gangway \
                 has {})",
                openssl_names()
            )),
        }
    }
    found
}

fn openssl_names() -> String {
    let names: Vec<&str> = TLS12_BY_OPENSSL_NAME.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
