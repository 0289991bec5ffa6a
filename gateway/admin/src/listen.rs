//! The listeners of the servers beside the proxy: the Admin API (`admin_listen`), Kong
//! Manager (`admin_gui_listen`) and the Status API (`status_listen`). Plain ones, and `ssl`
//! ones with each server's certificate (`admin_ssl_cert`, `admin_gui_ssl_cert`,
//! `status_ssl_cert`; a generated self-signed one when unset), served by axum on the control
//! runtime, each with its access log (`admin_access_log`, ...).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use gangway_config::settings::{AccessLog, ListenAddr, Settings};
use gangway_net::tls::{CertStore, ServerTls, TlsError, default_certificate, server_config};
use gangway_proxy::Gateway;
use gangway_proxy::access_log::{AccessLogSink, AccessNote};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info};

use crate::AdminState;

/// Whether a peer may connect to a local port: the node's connection policy at accept
/// (`admin_allow_cidrs`), for listeners the kernel's IP guard does not cover.
pub type Gate = Arc<dyn Fn(u16, IpAddr) -> bool + Send + Sync>;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a server could not start.
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
    /// The server's certificate could not be loaded.
    #[error("{key}: {source}")]
    Certificate {
        /// The certificate setting (`admin_ssl_cert`).
        key: &'static str,
        /// Why.
        source: TlsError,
    },
    /// The access log's file could not be opened.
    #[error("{key}: {source}")]
    AccessLog {
        /// The access log setting (`admin_access_log`).
        key: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// One of the servers beside the proxy, as [`serve_app`] runs it.
pub struct Server<'a> {
    /// What the log calls its listeners (`admin API`).
    pub what: &'a str,
    /// The name of its certificate setting (`admin_ssl_cert`), for errors.
    pub cert_key: &'static str,
    /// PEM certificates for its `ssl` listeners; empty for a generated one.
    pub certs: &'a [PathBuf],
    /// Their keys, by position.
    pub keys: &'a [PathBuf],
    /// The name of its access log setting (`admin_access_log`), for errors.
    pub access_log_key: &'static str,
    /// Where its access log goes.
    pub access_log: &'a AccessLog,
    /// Who may connect, when not everyone.
    pub gate: Option<Gate>,
}

/// Binds every `admin_listen` address and serves the Admin API on the current runtime.
/// Returns the bound addresses (a port 0 resolved), in listen order.
pub async fn serve(
    specs: &[ListenAddr],
    state: Arc<AdminState>,
) -> Result<Vec<SocketAddr>, ListenError> {
    let settings = state.gateway.settings.clone();
    let gateway = state.gateway.clone();
    let gate: Gate = Arc::new(move |port, peer| {
        let snapshot = gateway.snapshot();
        match gateway
            .accept_check
            .admit(&snapshot.conn_policy, port, peer)
        {
            Ok(_) => true,
            Err(reason) => {
                debug!(%peer, reason = reason.as_str(), "admin API: connection refused by the connection policy");
                false
            }
        }
    });
    let server = Server {
        what: "admin API",
        cert_key: "admin_ssl_cert",
        certs: &settings.admin_ssl_cert,
        keys: &settings.admin_ssl_cert_key,
        access_log_key: "admin_access_log",
        access_log: &settings.admin_access_log,
        gate: Some(gate),
    };
    let app = crate::router(state.clone());
    serve_app(specs, &settings, app, server, &state.gateway).await
}

/// Writes a request's line to a server's access log (nginx's `combined` format, which Kong's
/// admin and status servers log in).
async fn log_access(
    State(sink): State<Arc<AccessLogSink>>,
    request: Request,
    next: Next,
) -> Response {
    let note = access_note(&request);
    let response = next.run(request).await;
    let sent = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    sink.write_combined(&note, response.status().as_u16(), sent);
    response
}

/// What the access log's line needs of `request`.
fn access_note(request: &Request) -> AccessNote {
    let header = |name| {
        request
            .headers()
            .get(name)
            .map_or(Vec::new(), |v| v.as_bytes().to_vec())
    };
    AccessNote {
        request_line: format!(
            "{} {} {:?}",
            request.method(),
            request.uri(),
            request.version()
        )
        .into_bytes(),
        referer: header(axum::http::header::REFERER),
        user_agent: header(axum::http::header::USER_AGENT),
        client_ip: request
            .extensions()
            .get::<ConnectInfo<Peer>>()
            .map(|ConnectInfo(Peer(peer))| peer.ip()),
        request_id: [b'-'; 32],
    }
}

/// Binds `specs` and serves `app` on them as `server`: TLS ones with its certificate, every
/// request written to its access log (whose writer `gateway` keeps, to reopen and flush).
pub async fn serve_app(
    specs: &[ListenAddr],
    settings: &Settings,
    mut app: axum::Router,
    server: Server<'_>,
    gateway: &Gateway,
) -> Result<Vec<SocketAddr>, ListenError> {
    let Server { what, gate, .. } = server;
    if let Some(sink) =
        AccessLogSink::start(server.access_log, &settings.prefix).map_err(|source| {
            ListenError::AccessLog {
                key: server.access_log_key,
                source,
            }
        })?
    {
        let sink = Arc::new(sink);
        gateway.keep_service_access_log(sink.clone());
        app = app.layer(axum::middleware::from_fn_with_state(sink, log_access));
    }
    let tls = if specs.iter().any(|s| s.ssl) {
        let certificate = |source| ListenError::Certificate {
            key: server.cert_key,
            source,
        };
        let pair = default_certificate(server.certs, server.keys).map_err(certificate)?;
        let store = CertStore::build(&[], &[], pair).map_err(|e| {
            certificate(TlsError::Pem {
                what: format!("{what} certificate"),
                message: e.to_string(),
            })
        })?;
        let (policy, _) =
            ServerTls::from_settings(settings).map_err(|e| certificate(TlsError::Settings(e)))?;
        let http1 = server_config(Arc::new(store), &policy);
        // `http2` listeners offer h2 first in ALPN, as Kong's default `8444 http2 ssl` does.
        let mut both = (*http1).clone();
        both.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some((TlsAcceptor::from(http1), TlsAcceptor::from(Arc::new(both))))
    } else {
        None
    };
    let mut bound = Vec::with_capacity(specs.len());
    for spec in specs {
        let listener = gangway_net::listener::bind(spec.addr, spec.backlog)
            .and_then(TcpListener::from_std)
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
        let listener = Guarded {
            tcp: listener,
            gate: gate.clone(),
            port: addr.port(),
        };
        match (&tls, spec.ssl) {
            (Some((http1, both)), true) => {
                let acceptor = if spec.http2 { both } else { http1 };
                let listener = TlsListener::new(listener, acceptor.clone(), addr);
                let app = app.into_make_service_with_connect_info::<Peer>();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
            _ => {
                let app = app.into_make_service_with_connect_info::<Peer>();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
        }
        bound.push(addr);
    }
    Ok(bound)
}

/// The client's address, for the access log (axum's `ConnectInfo`).
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

impl Connected<IncomingStream<'_, Guarded>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Guarded>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A TCP listener that lets through only the peers its gate admits.
struct Guarded {
    tcp: TcpListener,
    gate: Option<Gate>,
    port: u16,
}

impl Guarded {
    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        loop {
            let (stream, peer) = self.tcp.accept().await?;
            match &self.gate {
                Some(gate) if !gate(self.port, peer.ip()) => drop(stream),
                _ => return Ok((stream, peer)),
            }
        }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match Guarded::accept(self).await {
                Ok(pair) => return pair,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// TLS connections for axum: a task accepts TCP connections and runs each handshake in a
/// task of its own, so a slow client never holds up the others.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(tcp: Guarded, acceptor: TlsAcceptor, local: SocketAddr) -> TlsListener {
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
