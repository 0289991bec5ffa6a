//! [`TlsStream`]: a rustls connection driven over an owned-buffer [`Stream`].
//!
//! Ciphertext moves through two owned buffers: `rx` (filled by the inner stream, fed to rustls
//! with `read_tls`) and `tx` (filled by `write_tls`, handed to the inner stream). Both are kept
//! and reused, so after the first bulk transfer no read or write allocates.
//!
//! **Concurrency.** One reader and one writer may run at once on the same `&TlsStream` (upgrade
//! tunnels). The rustls state sits in a `RefCell` that is only borrowed in synchronous sections,
//! never across an `.await`. Writing to the inner stream is serialised by an async mutex that
//! owns the `tx` buffer: whoever holds it drains *everything* rustls has queued, in order, so
//! records from the writer and from the reader (alerts, rustls' replies) never interleave.
//!
//! **Reads that must send.** rustls defers its TLS 1.3 KeyUpdate reply to the next
//! application-data write, but a read can still queue bytes (a fatal alert, a `no_renegotiation`
//! warning). The reader then *tries* to take the write lock: if it is free it flushes; if a
//! writer holds it, the writer flushes those bytes too, because it drains until rustls has
//! nothing queued before releasing the lock. The reader never waits for the lock, so a writer
//! blocked on a full socket cannot stall the reader (which could deadlock both peers).
//!
//! **Closing and cancelling.** Dropping a `TlsStream` sends nothing: call `shutdown` for a
//! close_notify. Dropping a `write_all` or `shutdown` future mid-flight may lose records that
//! rustls already encrypted, so the connection must then be discarded (as with any partial
//! write). rustls' buffered API still allocates one chunk per TLS record internally; our own
//! buffers do not grow after warm-up.

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::ops::Range;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use tokio::sync::Mutex;

use crate::stream::Stream;

/// Ciphertext read buffer size: two full TLS records (16 KiB + overhead each), so bulk reads
/// take few syscalls while an idle connection holds little memory.
const RX_CAPACITY: usize = 34 * 1024;

/// A TLS connection (server or client side) over an inner [`Stream`]; itself a `Stream`.
///
/// Errors: TLS protocol failures (bad records, alerts from the peer, certificate rejections)
/// are `io::ErrorKind::InvalidData` wrapping the [`rustls::Error`] (reach it with
/// `err.get_ref()` and `downcast_ref`). A read that hits TCP EOF without the peer's
/// close_notify is `io::ErrorKind::UnexpectedEof`; after close_notify, reads return `Ok(0)`.
pub struct TlsStream<S> {
    inner: S,
    conn: RefCell<Connection>,
    rx: RefCell<RxBuf>,
    tx: Mutex<Vec<u8>>,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conn = self.conn.borrow();
        f.debug_struct("TlsStream")
            .field("server", &matches!(&*conn, Connection::Server(_)))
            .field("version", &conn.protocol_version())
            .field("alpn", &conn.alpn_protocol().map(String::from_utf8_lossy))
            .finish_non_exhaustive()
    }
}

/// Ciphertext read from the inner stream; `buf[pos..]` is not yet fed to rustls.
/// Invariant: the reader only awaits the inner stream once everything has been fed, so a buffer
/// taken out across an `.await` never holds unfed bytes.
#[derive(Default)]
struct RxBuf {
    buf: Vec<u8>,
    pos: usize,
}

/// What a synchronous read step decided.
enum ReadStep {
    /// Plaintext was copied (or EOF/error reached).
    Done(io::Result<usize>),
    /// A fatal TLS error: try to send the queued alert, then report it.
    Fatal(io::Error),
    /// Nothing buffered: read ciphertext, after flushing what rustls queued if `flush`.
    NeedCiphertext {
        /// rustls has bytes to send (post-handshake replies).
        flush: bool,
    },
}

/// Accepts a TLS connection on `inner`: runs the server handshake to completion.
/// The caller bounds it with a timeout; a failure is `InvalidData` (TLS) or an I/O error.
pub async fn accept<S: Stream>(inner: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
    accept_with_prefix(inner, config, Vec::new()).await
}

/// Like [`accept`], on a connection whose first bytes were already read from `inner` (those
/// that followed a PROXY protocol header): `prefix` is ciphertext fed to rustls before anything
/// more is read.
pub async fn accept_with_prefix<S: Stream>(
    inner: S,
    config: Arc<ServerConfig>,
    prefix: Vec<u8>,
) -> io::Result<TlsStream<S>> {
    let conn = ServerConnection::new(config).map_err(tls_error)?;
    let stream = TlsStream::with_rx(inner, Connection::Server(conn), prefix);
    stream.handshake().await?;
    Ok(stream)
}

/// Connects TLS over `inner` to `server_name` (sent as SNI unless it is an IP address, and
/// verified as the config's verifier decides): runs the client handshake to completion.
pub async fn connect<S: Stream>(
    inner: S,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> io::Result<TlsStream<S>> {
    let conn = ClientConnection::new(config, server_name).map_err(tls_error)?;
    let stream = TlsStream::new(inner, Connection::Client(conn));
    stream.handshake().await?;
    Ok(stream)
}

impl<S: Stream> TlsStream<S> {
    fn new(inner: S, conn: Connection) -> Self {
        Self::with_rx(inner, conn, Vec::new())
    }

    /// A stream whose read buffer starts with `unfed` ciphertext.
    fn with_rx(inner: S, conn: Connection, mut unfed: Vec<u8>) -> Self {
        if unfed.capacity() < RX_CAPACITY {
            unfed.reserve_exact(RX_CAPACITY - unfed.len());
        }
        TlsStream {
            inner,
            conn: RefCell::new(conn),
            rx: RefCell::new(RxBuf { buf: unfed, pos: 0 }),
            tx: Mutex::new(Vec::new()),
        }
    }

    /// The server name the client sent (server side only; `None` without SNI or client side).
    pub fn sni(&self) -> Option<String> {
        match &*self.conn.borrow() {
            Connection::Server(s) => s.server_name().map(str::to_owned),
            Connection::Client(_) => None,
        }
    }

    /// The negotiated ALPN protocol (`None` when the peer offered none we accept).
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.conn.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The negotiated protocol version (`TLSv1_2` or `TLSv1_3`).
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.borrow().protocol_version()
    }

    /// The session's protocol and cipher as nginx's `$ssl_protocol` and `$ssl_cipher` name
    /// them (OpenSSL names: `TLSv1.3`, `TLS_AES_128_GCM_SHA256`, `ECDHE-RSA-AES128-GCM-SHA256`).
    pub fn openssl_names(&self) -> Option<(&'static str, &'static str)> {
        let conn = self.conn.borrow();
        let version = match conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "unknown",
        };
        let suite = conn.negotiated_cipher_suite()?.suite();
        Some((version, openssl_cipher(suite)))
    }

    /// True when the session was resumed (client side: a ticket or session id was accepted).
    pub fn is_resumed(&self) -> bool {
        matches!(
            self.conn.borrow().handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// The certificate chain the peer presented, leaf first (client side: the upstream's;
    /// server side: the client certificate, when one was requested).
    pub fn peer_certificates(&self) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        self.conn.borrow().peer_certificates().map(<[_]>::to_vec)
    }

    /// The stream underneath (for its addresses or socket options).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Drives the handshake until rustls neither handshakes nor has bytes to send.
    async fn handshake(&self) -> io::Result<()> {
        loop {
            let (wants_write, handshaking) = {
                let conn = self.conn.borrow();
                (conn.wants_write(), conn.is_handshaking())
            };
            if wants_write {
                let mut tx = self.tx.lock().await;
                self.flush_locked(&mut tx).await?;
                continue;
            }
            if !handshaking {
                return Ok(());
            }
            match self.feed() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err(self.fatal(e).await),
            }
            if self.fill_rx().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                ));
            }
        }
    }

    /// Feeds buffered ciphertext to rustls and processes it. `Ok(false)` when nothing was
    /// buffered. An error is fatal for the connection; rustls may have queued an alert.
    fn feed(&self) -> io::Result<bool> {
        let mut conn = self.conn.borrow_mut();
        let mut rx = self.rx.borrow_mut();
        let RxBuf { buf, pos } = &mut *rx;
        if *pos >= buf.len() {
            return Ok(false);
        }
        let mut pending = &buf[*pos..];
        let n = conn.read_tls(&mut pending)?;
        if n == 0 {
            // rustls reads nothing more after close_notify; whatever follows is discarded.
            *pos = buf.len();
        } else {
            *pos += n;
        }
        conn.process_new_packets().map_err(tls_error)?;
        Ok(true)
    }

    /// Reads ciphertext from the inner stream into `rx`. `Ok(0)` is EOF, which is also
    /// recorded in rustls so that reads can tell close_notify from truncation.
    async fn fill_rx(&self) -> io::Result<usize> {
        let mut buf = {
            let mut rx = self.rx.borrow_mut();
            rx.pos = 0;
            std::mem::take(&mut rx.buf)
        };
        buf.clear();
        if buf.capacity() == 0 {
            // Only when a second concurrent reader raced us for the buffer.
            buf.reserve_exact(RX_CAPACITY);
        }
        let (res, buf) = self.inner.read(buf).await;
        let n = match &res {
            Ok(n) => *n,
            Err(_) => 0,
        };
        {
            let mut rx = self.rx.borrow_mut();
            rx.buf = buf;
            rx.pos = 0;
            if res.is_err() {
                rx.buf.clear();
            }
        }
        res?;
        if n == 0 {
            // An empty reader makes rustls note the EOF (has_seen_eof).
            self.conn.borrow_mut().read_tls(&mut io::empty())?;
        }
        Ok(n)
    }

    /// Best effort to send the alert rustls queued for a fatal error, then returns the error.
    async fn fatal(&self, err: io::Error) -> io::Error {
        // The alert is a courtesy; the error being reported matters more than a failed send.
        let _ = self.flush_if_idle().await;
        err
    }

    /// Flushes queued TLS bytes unless a writer holds the lock (it will flush them itself).
    async fn flush_if_idle(&self) -> io::Result<()> {
        match self.tx.try_lock() {
            Ok(mut tx) => self.flush_locked(&mut tx).await.map(drop),
            Err(_) => Ok(()),
        }
    }

    /// Sends everything rustls has queued. The caller holds the write lock (`tx`). Returns the
    /// number of ciphertext bytes written.
    async fn flush_locked(&self, tx: &mut Vec<u8>) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let mut out = std::mem::take(tx);
            out.clear();
            {
                let mut conn = self.conn.borrow_mut();
                while conn.wants_write() {
                    conn.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                *tx = out;
                return Ok(total);
            }
            let len = out.len();
            let (res, out) = self.inner.write_all(out, 0..len).await;
            *tx = out;
            res?;
            total += len;
        }
    }

    /// One synchronous step of `read`: deliver plaintext, or feed buffered ciphertext, or say
    /// that more ciphertext is needed.
    fn read_step(&self, buf: &mut Vec<u8>) -> ReadStep {
        loop {
            {
                let mut conn = self.conn.borrow_mut();
                let mut reader = conn.reader();
                match reader.fill_buf() {
                    Ok(chunk) => {
                        if chunk.is_empty() {
                            return ReadStep::Done(Ok(0));
                        }
                        let n = chunk.len().min(buf.capacity() - buf.len());
                        buf.extend_from_slice(&chunk[..n]);
                        reader.consume(n);
                        return ReadStep::Done(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return ReadStep::Done(Err(e)),
                }
            }
            match self.feed() {
                Ok(true) => continue,
                Ok(false) => {
                    let flush = self.conn.borrow().wants_write();
                    return ReadStep::NeedCiphertext { flush };
                }
                Err(e) => return ReadStep::Fatal(e),
            }
        }
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            return (Ok(0), buf);
        }
        loop {
            match self.read_step(&mut buf) {
                ReadStep::Done(res) => return (res, buf),
                ReadStep::Fatal(e) => return (Err(self.fatal(e).await), buf),
                ReadStep::NeedCiphertext { flush } => {
                    if flush {
                        if let Err(e) = self.flush_if_idle().await {
                            return (Err(e), buf);
                        }
                    }
                    if let Err(e) = self.fill_rx().await {
                        return (Err(e), buf);
                    }
                }
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        if range.start > range.end || range.end > buf.len() {
            let err = io::Error::new(io::ErrorKind::InvalidInput, "write range out of bounds");
            return (Err(err), buf);
        }
        let mut tx = self.tx.lock().await;
        let mut pos = range.start;
        loop {
            let mut accepted = 0;
            if pos < range.end {
                // rustls encrypts immediately after the handshake, accepting up to its buffer
                // limit (64 KiB) per call; the flush below makes room for the rest.
                let res = self.conn.borrow_mut().writer().write(&buf[pos..range.end]);
                match res {
                    Ok(n) => accepted = n,
                    Err(e) => return (Err(e), buf),
                }
                pos += accepted;
            }
            let flushed = match self.flush_locked(&mut tx).await {
                Ok(n) => n,
                Err(e) => return (Err(e), buf),
            };
            if pos >= range.end {
                return (Ok(()), buf);
            }
            if accepted == 0 && flushed == 0 {
                let err = io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the TLS connection no longer accepts data",
                );
                return (Err(err), buf);
            }
        }
    }

    async fn shutdown(&self) -> io::Result<()> {
        {
            let mut tx = self.tx.lock().await;
            self.conn.borrow_mut().send_close_notify();
            self.flush_locked(&mut tx).await?;
        }
        self.inner.shutdown().await
    }

    fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.socket_fd()
    }

    /// A read hands back one decrypted record at a time; records that came in the same
    /// socket read wait here, where a probe of the socket cannot see them.
    fn holds_input(&self) -> bool {
        let rx = self.rx.borrow();
        if rx.pos < rx.buf.len() {
            return true;
        }
        let mut conn = self.conn.borrow_mut();
        let waiting = conn.reader().fill_buf().map(|chunk| chunk.len());
        // WouldBlock is the only answer of a quiet connection: Ok(0) is the peer's
        // close_notify, any other error a broken session.
        !matches!(waiting, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Maps a rustls error to the `InvalidData` I/O error callers see.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

/// OpenSSL's name for a cipher suite of the ring provider.
fn openssl_cipher(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "unknown",
    }
}
