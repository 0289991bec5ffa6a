//! Kong's log queue for http-log: entries wait in a bounded queue, a sender thread batches
//! them (`max_batch_size`, `max_coalescing_delay`) and posts each batch, retrying with a
//! doubling delay (`initial_retry_delay` .. `max_retry_delay`) for up to `max_retry_time`.
//!
//! Instances with the same settings share one queue, across config reloads too: a reload
//! neither loses queued entries nor starts a second sender. The sender thread ends once no
//! instance uses its queue any more and the queue is empty.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};

use super::Endpoint;

/// How a queue sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Settings {
    pub(super) endpoint: Endpoint,
    pub(super) method: String,
    pub(super) content_type: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) timeout: Duration,
    pub(super) max_batch_size: usize,
    pub(super) max_coalescing_delay: Duration,
    pub(super) max_entries: usize,
    pub(super) max_bytes: Option<usize>,
    pub(super) max_retry_time: Duration,
    pub(super) initial_retry_delay: Duration,
    pub(super) max_retry_delay: Duration,
}

/// A queue and its sender thread.
pub(super) struct Queue {
    tx: SyncSender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
    /// Entries accepted and not yet sent (or given up on).
    pending: Arc<AtomicUsize>,
    max_bytes: Option<usize>,
    dropped: AtomicU64,
}

type Registry = Mutex<HashMap<Settings, Weak<Queue>>>;

fn registry() -> &'static Registry {
    static QUEUES: OnceLock<Registry> = OnceLock::new();
    QUEUES.get_or_init(Registry::default)
}

impl Queue {
    /// The queue for `settings`: the one live instances already use, or a new one.
    pub(super) fn shared(settings: Settings) -> Arc<Queue> {
        let mut queues = registry().lock().unwrap_or_else(|p| p.into_inner());
        queues.retain(|_, q| q.strong_count() > 0);
        if let Some(q) = queues.get(&settings).and_then(Weak::upgrade) {
            return q;
        }
        let (tx, rx) = mpsc::sync_channel(settings.max_entries);
        let bytes = Arc::new(AtomicUsize::new(0));
        let pending = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(Queue {
            tx,
            bytes: bytes.clone(),
            pending: pending.clone(),
            max_bytes: settings.max_bytes,
            dropped: AtomicU64::new(0),
        });
        queues.insert(settings.clone(), Arc::downgrade(&queue));
        let spawned = std::thread::Builder::new()
            .name("http-log".into())
            .spawn(move || send_batches(rx, &settings, &bytes, &pending));
        if let Err(e) = spawned {
            error!(error = %e, "http-log: cannot start the sender thread");
        }
        queue
    }

    /// Adds an entry; a full queue drops it (counted, with a warning every 1024 drops).
    pub(super) fn push(&self, entry: Vec<u8>) {
        let len = entry.len();
        if self
            .max_bytes
            .is_some_and(|max| self.bytes.load(Ordering::Relaxed) + len > max)
        {
            self.drop_one();
            return;
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                self.pending.fetch_sub(1, Ordering::Relaxed);
                self.drop_one();
            }
        }
    }

    fn drop_one(&self) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed);
        if n % 1024 == 0 {
            warn!(
                dropped = n + 1,
                "http-log: queue full, dropping log entries"
            );
        }
    }
}

/// Waits (up to `timeout` in all) until every live queue has sent what it holds: called on
/// shutdown, as Kong flushes its queues when a worker exits. Returns false on timeout.
pub(super) fn flush(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let queues: Vec<Arc<Queue>> = registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    for q in queues {
        while q.pending.load(Ordering::Relaxed) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    true
}

fn send_batches(
    rx: Receiver<Vec<u8>>,
    settings: &Settings,
    bytes: &AtomicUsize,
    pending: &AtomicUsize,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + settings.max_coalescing_delay;
        while batch.len() < settings.max_batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(entry) => batch.push(entry),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        bytes.fetch_sub(batch.iter().map(Vec::len).sum(), Ordering::Relaxed);
        send_with_retries(settings, &payload(settings, &batch), batch.len());
        pending.fetch_sub(batch.len(), Ordering::Relaxed);
    }
}

/// One entry as it is, or a JSON array of them (Kong: when `max_batch_size` is over 1).
pub(super) fn payload(settings: &Settings, batch: &[Vec<u8>]) -> Vec<u8> {
    if settings.max_batch_size == 1 {
        return batch.concat();
    }
    let mut out = Vec::with_capacity(batch.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(entry);
    }
    out.push(b']');
    out
}

fn send_with_retries(settings: &Settings, body: &[u8], entries: usize) {
    let started = Instant::now();
    let mut delay = settings.initial_retry_delay;
    loop {
        match send(settings, body) {
            Ok(status) => {
                debug!(status, entries, "http-log: sent");
                return;
            }
            Err(e) => {
                if started.elapsed() + delay > settings.max_retry_time {
                    error!(error = %e, entries, "http-log: giving up on a batch after retries");
                    return;
                }
                warn!(error = %e, retry_in = ?delay, "http-log: send failed");
                std::thread::sleep(delay);
                delay = (delay * 2).min(settings.max_retry_delay);
            }
        }
    }
}

/// Posts `body` once; `Ok` with the status when it is below 300.
fn send(settings: &Settings, body: &[u8]) -> Result<u16, String> {
    let e = &settings.endpoint;
    let addr = (e.host.as_str(), e.port)
        .to_socket_addrs()
        .map_err(|err| format!("failed request to {}:{}: {err}", e.host, e.port))?
        .next()
        .ok_or_else(|| format!("failed request to {}:{}: no address", e.host, e.port))?;
    let tcp = TcpStream::connect_timeout(&addr, settings.timeout)
        .map_err(|err| format!("failed request to {}:{}: {err}", e.host, e.port))?;
    let _ = tcp.set_read_timeout(Some(settings.timeout));
    let _ = tcp.set_write_timeout(Some(settings.timeout));
    let _ = tcp.set_nodelay(true);
    let head = request_head(settings, body.len());
    let response = if e.tls {
        // As Kong's http-log (`ssl_verify = false`): the log server's certificate is not
        // checked.
        let name = rustls::pki_types::ServerName::try_from(e.host.clone())
            .map_err(|err| format!("invalid server name {}: {err}", e.host))?;
        let conn = rustls::ClientConnection::new(no_verify_tls(), name)
            .map_err(|err| format!("tls: {err}"))?;
        exchange(rustls::StreamOwned::new(conn, tcp), &head, body)
    } else {
        exchange(tcp, &head, body)
    }
    .map_err(|err| format!("failed request to {}:{}: {err}", e.host, e.port))?;
    let status = std::str::from_utf8(response.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| response.starts_with(b"HTTP/1."))
        .ok_or_else(|| format!("{}:{} sent no HTTP response", e.host, e.port))?;
    if status < 300 {
        Ok(status)
    } else {
        let body_start = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        Err(format!(
            "request to {}:{} returned status code {status} and body {}",
            e.host,
            e.port,
            String::from_utf8_lossy(&response[body_start..])
        ))
    }
}

fn no_verify_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = gangway_net::tls::RootSource::from_ca_certificates(&[])
                .expect("invariant: an empty root set builds");
            gangway_net::tls::client_config(false, None, &roots, None)
        })
        .clone()
}

fn request_head(settings: &Settings, len: usize) -> Vec<u8> {
    let e = &settings.endpoint;
    let default_port = if e.tls { 443 } else { 80 };
    let host = if e.host.contains(':') {
        format!("[{}]", e.host)
    } else {
        e.host.clone()
    };
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {host}", settings.method, e.path);
    if e.port != default_port {
        head.push_str(&format!(":{}", e.port));
    }
    head.push_str(&format!(
        "\r\nContent-Type: {}\r\nContent-Length: {len}\r\n",
        settings.content_type
    ));
    if let Some(auth) = &e.authorization {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    for (name, value) in &settings.headers {
        // Kong's own headers win over configured ones of the same name.
        let own = ["host", "content-type", "content-length", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            || (e.authorization.is_some() && name.eq_ignore_ascii_case("authorization"));
        if !own {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// Writes the request and reads the whole response (the server closes after it).
fn exchange<S: Read + Write>(mut stream: S, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(head)?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut response = Vec::new();
    // A log server's answer is small; more than this is not read.
    Read::by_ref(&mut stream)
        .take(64 * 1024)
        .read_to_end(&mut response)
        .or_else(|e| {
            // A TLS peer that closes without close_notify, or one that keeps the connection
            // open until the read timeout, still sent its status line.
            let partial = matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            );
            if partial && response.len() >= 12 {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
    Ok(response)
}
