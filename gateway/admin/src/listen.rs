//! The Admin API's listeners (`admin_listen`): plain ones, and `ssl` ones with the
//! certificate of `admin_ssl_cert`/`admin_ssl_cert_key` (a generated self-signed one when
//! unset), served by axum on the control runtime.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use gangway_config::settings::{ListenAddr, Settings};
use gangway_net::tls::{CertStore, ServerTls, TlsError, default_certificate, server_config};
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
    /// The access log's file could not be opened.
    #[error("admin_access_log: {0}")]
    AccessLog(io::Error),
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
    let mut app = crate::router(state.clone());
    if let Some(sink) = AccessLogSink::start(&settings.admin_access_log, &settings.prefix)
        .map_err(ListenError::AccessLog)?
    {
        let sink = state
            .gateway
            .admin_access_log
            .get_or_init(|| Arc::new(sink))
            .clone();
        app = app.layer(axum::middleware::from_fn_with_state(sink, log_access));
    }
    serve_app(specs, &settings, app, "admin API", Some(gate)).await
}

/// Writes a request's line to the Admin API's access log (nginx's `combined` format, which
/// Kong's admin server logs in).
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

/// Binds `specs` and serves `app` on them, TLS ones with the Admin API's certificate
/// (`admin_ssl_cert`, else a generated one). `what` names the listeners in the log.
pub async fn serve_app(
    specs: &[ListenAddr],
    settings: &Settings,
    app: axum::Router,
    what: &str,
    gate: Option<Gate>,
) -> Result<Vec<SocketAddr>, ListenError> {
    let tls = if specs.iter().any(|s| s.ssl) {
        let pair = default_certificate(&settings.admin_ssl_cert, &settings.admin_ssl_cert_key)?;
        let store = CertStore::build(&[], &[], pair).map_err(|e| TlsError::Pem {
            what: "admin certificate".into(),
            message: e.to_string(),
        })?;
        let (policy, _) = ServerTls::from_settings(settings).map_err(TlsError::Settings)?;
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
