//! The Admin API's listeners (`admin_listen`): plain ones, and `ssl` ones with the
//! certificate of `admin_ssl_cert`/`admin_ssl_cert_key` (a generated self-signed one when
//! unset), served by axum on the control runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gangway_config::settings::{ListenAddr, Settings};
use gangway_net::tls::{CertStore, TlsError, default_certificate, server_config};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info};

use crate::AdminState;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the Admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The admin certificate could not be loaded.
    #[error("admin_ssl_cert: {0}")]
    Certificate(#[from] TlsError),
}

/// Binds every `admin_listen` address and serves the Admin API on the current runtime.
/// Returns the bound addresses (a port 0 resolved), in listen order.
pub async fn serve(
    specs: &[ListenAddr],
    state: Arc<AdminState>,
) -> Result<Vec<SocketAddr>, ListenError> {
    let settings = state.gateway.settings.clone();
    serve_app(specs, &settings, crate::router(state), "admin API").await
}

/// Binds `specs` and serves `app` on them, TLS ones with the Admin API's certificate
/// (`admin_ssl_cert`, else a generated one). `what` names the listeners in the log.
pub async fn serve_app(
    specs: &[ListenAddr],
    settings: &Settings,
    app: axum::Router,
    what: &str,
) -> Result<Vec<SocketAddr>, ListenError> {
    let tls = if specs.iter().any(|s| s.ssl) {
        let pair = default_certificate(&settings.admin_ssl_cert, &settings.admin_ssl_cert_key)?;
        let store = CertStore::build(&[], &[], pair).map_err(|e| TlsError::Pem {
            what: "admin certificate".into(),
            message: e.to_string(),
        })?;
        let http1 = server_config(Arc::new(store));
        // `http2` listeners offer h2 first in ALPN, as Kong's default `8444 http2 ssl` does.
        let mut both = (*http1).clone();
        both.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some((TlsAcceptor::from(http1), TlsAcceptor::from(Arc::new(both))))
    } else {
        None
    };
    let mut bound = Vec::with_capacity(specs.len());
    for spec in specs {
        let listener = TcpListener::bind(spec.addr)
            .await
            .map_err(|source| ListenError::Bind {
                addr: spec.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ListenError::Bind {
            addr: spec.addr,
            source,
        })?;
        info!(listen = %addr, ssl = spec.ssl, "{what} listener bound");
        let app = app.clone();
        match (&tls, spec.ssl) {
            (Some((http1, both)), true) => {
                let acceptor = if spec.http2 { both } else { http1 };
                let listener = TlsListener::new(listener, acceptor.clone(), addr);
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
            _ => {
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
        }
        bound.push(addr);
    }
    Ok(bound)
}

/// TLS connections for axum: a task accepts TCP connections and runs each handshake in a
/// task of its own, so a slow client never holds up the others.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: TlsAcceptor, local: SocketAddr) -> TlsListener {
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        debug!(error = %e, "admin API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, done) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "admin API: TLS handshake failed"),
                        Err(_) => debug!(%peer, "admin API: TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
