//! Test helpers: an in-memory duplex [`Stream`] (no io_uring or epoll backend exists yet) and
//! certificates generated with rcgen at test time.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::stream::Stream;
use crate::tls::{TlsStream, accept, connect};
use rustls::pki_types::ServerName;

/// An RSA-2048 key for alt-certificate tests (ring can sign with RSA but not generate keys).
pub const RSA_KEY_PEM: &str = include_str!("test_rsa_key.pem");

/// One end of an in-memory pipe, with independently locked halves so that a read and a write
/// can be in flight together, like a socket.
pub struct MemStream {
    rd: Mutex<ReadHalf<DuplexStream>>,
    wr: Mutex<WriteHalf<DuplexStream>>,
}

/// Two connected [`MemStream`]s; `capacity` bytes may be in flight each way (small values
/// exercise backpressure).
pub fn mem_pair(capacity: usize) -> (MemStream, MemStream) {
    let (a, b) = tokio::io::duplex(capacity);
    (MemStream::new(a), MemStream::new(b))
}

impl MemStream {
    fn new(s: DuplexStream) -> Self {
        let (rd, wr) = tokio::io::split(s);
        MemStream {
            rd: Mutex::new(rd),
            wr: Mutex::new(wr),
        }
    }
}

impl Stream for MemStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            return (Ok(0), buf);
        }
        let mut rd = self.rd.lock().await;
        // `read_buf` on a Vec with spare capacity fills that capacity without growing it.
        let res = rd.read_buf(&mut buf).await;
        (res, buf)
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let mut wr = self.wr.lock().await;
        let res = wr.write_all(&buf[range]).await;
        (res, buf)
    }

    async fn shutdown(&self) -> io::Result<()> {
        self.wr.lock().await.shutdown().await
    }
}

/// Handshakes a client (sending `name`) with a server over a fresh in-memory pipe; both
/// results, since tests check failures on either side.
pub async fn try_pair(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> (
    io::Result<TlsStream<MemStream>>,
    io::Result<TlsStream<MemStream>>,
) {
    let (a, b) = mem_pair(64 * 1024);
    let name = ServerName::try_from(name.to_string()).expect("invariant: valid test name");
    // A side that fails drops its end of the pipe, which ends the other side's wait.
    tokio::join!(accept(a, server), connect(b, client, name))
}

/// Runs a `!Send` future on a fresh current-thread runtime, like a worker does.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("invariant: a current-thread runtime builds")
        .block_on(f)
}

/// A self-signed ECDSA P-256 certificate for `names`, as (cert PEM, key PEM).
pub fn ecdsa_self_signed(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("invariant: P-256 keys generate");
    let params = leaf_params(names);
    let cert = params
        .self_signed(&key)
        .expect("invariant: self-signing works");
    (cert.pem(), key.serialize_pem())
}

/// A self-signed RSA certificate for `names` using [`RSA_KEY_PEM`], as (cert PEM, key PEM).
pub fn rsa_self_signed(names: &[&str]) -> (String, String) {
    let key = KeyPair::from_pem_and_sign_algo(RSA_KEY_PEM, &rcgen::PKCS_RSA_SHA256)
        .expect("invariant: the RSA fixture parses");
    let cert = leaf_params(names)
        .self_signed(&key)
        .expect("invariant: self-signing works");
    (cert.pem(), RSA_KEY_PEM.to_string())
}

/// A [`CertifiedKey`] from PEM texts.
pub fn certified(cert: &str, key: &str) -> Arc<CertifiedKey> {
    Arc::new(
        crate::tls::certified_key_from_pem(cert.as_bytes(), key.as_bytes())
            .expect("invariant: test certificates load"),
    )
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("invariant: valid test names");
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    params
}

/// A test certificate authority that issues ECDSA leaf certificates.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("invariant: P-256 keys generate");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("invariant: no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .expect("invariant: self-signing works");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` signed by this CA, as (cert PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("invariant: P-256 keys generate");
        let cert = leaf_params(names)
            .signed_by(&key, &self.issuer)
            .expect("invariant: signing works");
        (cert.pem(), key.serialize_pem())
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("invariant: P-256 keys generate");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("invariant: no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("invariant: signing works");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }
}
