//! Kong's plugin queue (`kong.tools.queue`) for the plugins that post to a server (http-log,
//! opentelemetry): entries wait in a bounded queue, a sender thread batches them
//! (`max_batch_size`, `max_coalescing_delay`), encodes each batch with the plugin's encoder
//! (and first each [`Entry::Deferred`], which a worker queued as plain data) and posts it, retrying with a doubling delay (`initial_retry_delay` .. `max_retry_delay`)
//! for up to `max_retry_time`.
//!
//! Instances with the same settings share one queue, across config reloads too: a reload
//! neither loses queued entries nor starts a second sender. The sender thread ends once no
//! instance uses its queue any more and the queue is empty.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};

use base64::Engine as _;
use serde_json::json;

use gangway_config::schema::Field;

/// Kong's `typedefs.queue`, with the plugin's default `max_batch_size` (1 for http-log, 200
/// for opentelemetry).
pub fn schema(max_batch_size: u32) -> Field {
    Field::record(vec![
        (
            "max_batch_size",
            Field::integer()
                .default(json!(max_batch_size))
                .between(1, 1_000_000)
                .describe("Maximum number of entries that can be processed at a time."),
        ),
        (
            "max_coalescing_delay",
            Field::number()
                .default(json!(1))
                .between(0, 3600)
                .describe("Maximum seconds to wait for more entries before sending a batch."),
        ),
        (
            "max_entries",
            Field::integer()
                .default(json!(10000))
                .between(1, 1_000_000)
                .describe("Maximum number of entries that can be waiting on the queue."),
        ),
        (
            "max_bytes",
            Field::integer().describe(
                "Maximum number of bytes that can be waiting on a queue, requires string content.",
            ),
        ),
        (
            "max_retry_time",
            Field::number()
                .default(json!(60))
                .describe("Seconds a batch is retried before it is dropped."),
        ),
        (
            "initial_retry_delay",
            Field::number()
                .default(json!(0.01))
                .between(0.001, 1_000_000)
                .describe("Seconds before the first retry; doubled for each following one."),
        ),
        (
            "max_retry_delay",
            Field::number()
                .default(json!(60))
                .between(0.001, 1_000_000)
                .describe("Longest delay between retries, in seconds."),
        ),
        (
            "concurrency_limit",
            Field::integer()
                .default(json!(1))
                .one_of_values(vec![json!(-1), json!(1)])
                .describe("The number of batches sent at once (gangway sends one at a time)."),
        ),
    ])
}

/// Kong's `config.queue`, as validated by [`schema`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct QueueConfig {
    /// Entries per batch.
    pub max_batch_size: usize,
    /// Seconds a batch waits for more entries.
    pub max_coalescing_delay: f64,
    /// Entries waiting at most.
    pub max_entries: usize,
    /// Bytes waiting at most, if capped.
    pub max_bytes: Option<usize>,
    /// Seconds a failing batch is retried.
    pub max_retry_time: f64,
    /// Seconds before the first retry.
    pub initial_retry_delay: f64,
    /// The longest delay between retries, in seconds.
    pub max_retry_delay: f64,
}

impl QueueConfig {
    /// Settings for a `kind` queue posting to `endpoint` with this config, where a plugin's
    /// deprecated batch size and flush delay win when set (the caller drops them when they
    /// hold their old defaults, see [`deprecated`]). The request's method
    /// is POST; content type, headers and timeouts are the caller's to fill.
    pub fn settings(
        &self,
        kind: &'static str,
        endpoint: Endpoint,
        batch_size: Option<usize>,
        flush_delay: Option<f64>,
    ) -> Settings {
        // Capped at a day: the schemas set no upper bound, and a Duration past its range
        // (1e20 s) panics, which would abort the process on a config change.
        let secs = |s: f64, min: f64| Duration::from_secs_f64(s.clamp(min, 86_400.0));
        Settings {
            kind,
            endpoint,
            method: "POST".into(),
            content_type: String::new(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            max_batch_size: batch_size.unwrap_or(self.max_batch_size).max(1),
            max_coalescing_delay: secs(flush_delay.unwrap_or(self.max_coalescing_delay), 0.0),
            max_entries: self.max_entries.max(1),
            max_bytes: self.max_bytes,
            max_retry_time: secs(self.max_retry_time, 0.0),
            initial_retry_delay: secs(self.initial_retry_delay, 0.001),
            max_retry_delay: secs(self.max_retry_delay, 0.001),
            encoder_context: Vec::new(),
        }
    }
}

/// Turns a batch of entries into one request body.
pub type Encoder = fn(&Settings, &[Vec<u8>]) -> Vec<u8>;

/// A value a worker queues as it is, for the sender thread to encode into an entry's bytes:
/// the worker pays a copy of plain data, not the encoding.
pub trait Deferred: Send {
    /// About how many bytes the value holds (the queue's `max_bytes` counts them).
    fn size(&self) -> usize;
    /// Appends the entry's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// One queued entry.
pub enum Entry {
    /// Bytes ready for the encoder (http-log's JSON).
    Encoded(Vec<u8>),
    /// Encoded on the sender thread (opentelemetry's spans).
    Deferred(Box<dyn Deferred>),
}

impl Entry {
    fn size(&self) -> usize {
        match self {
            Entry::Encoded(bytes) => bytes.len(),
            Entry::Deferred(value) => value.size(),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        match self {
            Entry::Encoded(bytes) => bytes,
            Entry::Deferred(value) => {
                let mut out = Vec::with_capacity(value.size());
                value.encode(&mut out);
                out
            }
        }
    }
}

impl From<Vec<u8>> for Entry {
    fn from(bytes: Vec<u8>) -> Entry {
        Entry::Encoded(bytes)
    }
}

/// How a queue sends. No defaults: each plugin fills every field from its config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    /// The plugin that owns the queue (thread name, log lines); queues of different plugins
    /// are never shared.
    pub kind: &'static str,
    /// Where batches go.
    pub endpoint: Endpoint,
    /// The request method.
    pub method: String,
    /// The request's `Content-Type`.
    pub content_type: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Connecting to the server.
    pub connect_timeout: Duration,
    /// Writing one request.
    pub send_timeout: Duration,
    /// Reading the answer.
    pub read_timeout: Duration,
    /// The most entries in one batch.
    pub max_batch_size: usize,
    /// How long a batch waits for more entries.
    pub max_coalescing_delay: Duration,
    /// The most entries waiting; more are dropped.
    pub max_entries: usize,
    /// The most bytes waiting, if capped.
    pub max_bytes: Option<usize>,
    /// How long a failing batch is retried.
    pub max_retry_time: Duration,
    /// The first retry's delay, doubled for each next one.
    pub initial_retry_delay: Duration,
    /// The longest delay between retries.
    pub max_retry_delay: Duration,
    /// Opaque bytes the plugin's encoder reads for every batch (opentelemetry: its encoded
    /// resource); part of the queue's identity. Empty for http-log.
    pub encoder_context: Vec<u8>,
}

/// Where the entries go: `scheme://[userinfo@]host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `https`.
    pub tls: bool,
    /// The host (IPv6 without brackets).
    pub host: String,
    /// The port (the scheme's by default).
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// `Basic` credentials from the URL's userinfo.
    pub authorization: Option<String>,
}

impl Endpoint {
    /// Parses an http or https URL.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let url = url::Url::parse(text).map_err(|e| format!("invalid url: {e}"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "unsupported scheme '{other}': expected http or https"
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("missing host in url")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let userinfo = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = percent_decode(url.username());
            let pass = url.password().map(percent_decode);
            Some(match pass {
                Some(p) => format!("{user}:{p}"),
                None => user,
            })
        };
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Endpoint {
            tls,
            port: url.port().unwrap_or(if tls { 443 } else { 80 }),
            host,
            path,
            authorization: userinfo.map(|u| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(u)
                )
            }),
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A queue and its sender thread.
pub struct Queue {
    tx: SyncSender<Entry>,
    bytes: Arc<AtomicUsize>,
    /// Entries accepted and not yet sent (or given up on).
    pending: Arc<AtomicUsize>,
    max_bytes: Option<usize>,
    dropped: AtomicU64,
    kind: &'static str,
}

type Registry = Mutex<HashMap<Settings, Weak<Queue>>>;

fn registry() -> &'static Registry {
    static QUEUES: OnceLock<Registry> = OnceLock::new();
    QUEUES.get_or_init(Registry::default)
}

impl Queue {
    /// The queue for `settings`: the one live instances already use, or a new one whose
    /// batches `encode` turns into request bodies.
    pub fn shared(settings: Settings, encode: Encoder) -> Arc<Queue> {
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
            kind: settings.kind,
        });
        queues.insert(settings.clone(), Arc::downgrade(&queue));
        let kind = settings.kind;
        let spawned = std::thread::Builder::new()
            .name(kind.into())
            .spawn(move || send_batches(rx, &settings, encode, &bytes, &pending));
        if let Err(e) = spawned {
            error!(error = %e, "{kind}: cannot start the sender thread");
        }
        queue
    }

    /// Adds an entry; a full queue drops it (counted, with a warning every 1024 drops).
    pub fn push(&self, entry: impl Into<Entry>) {
        let entry = entry.into();
        let len = entry.size();
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
                "{}: queue full, dropping entries", self.kind
            );
        }
    }
}

/// Waits (up to `timeout` in all) until every live queue has sent what it holds: called on
/// shutdown, as Kong flushes its queues when a worker exits. Returns false on timeout.
pub fn flush(timeout: Duration) -> bool {
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

/// How often a queue's sender looks for more entries while it gathers a batch.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

fn send_batches(
    rx: Receiver<Entry>,
    settings: &Settings,
    encode: Encoder,
    bytes: &AtomicUsize,
    pending: &AtomicUsize,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + settings.max_coalescing_delay;
        // Polled, not waited for entry by entry: while this thread is parked on the channel
        // every push wakes it, a syscall on the worker that pushed and a context switch here
        // (at 800 traces a second, 1.6% of the worker's CPU on this thread alone).
        'batch: while batch.len() < settings.max_batch_size {
            loop {
                match rx.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break 'batch,
                }
                if batch.len() >= settings.max_batch_size {
                    break 'batch;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(DRAIN_EVERY));
        }
        let (entries, size) = (batch.len(), batch.iter().map(Entry::size).sum());
        let encoded: Vec<Vec<u8>> = batch.into_iter().map(Entry::into_bytes).collect();
        bytes.fetch_sub(size, Ordering::Relaxed);
        send_with_retries(settings, &encode(settings, &encoded), entries);
        pending.fetch_sub(entries, Ordering::Relaxed);
    }
}

fn send_with_retries(settings: &Settings, body: &[u8], entries: usize) {
    let started = Instant::now();
    let mut delay = settings.initial_retry_delay;
    loop {
        match send(settings, body) {
            Ok(status) => {
                debug!(status, entries, "{}: sent", settings.kind);
                return;
            }
            Err(e) => {
                if started.elapsed() + delay > settings.max_retry_time {
                    error!(error = %e, entries, "{}: giving up on a batch after retries", settings.kind);
                    return;
                }
                warn!(error = %e, retry_in = ?delay, "{}: send failed", settings.kind);
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
    let tcp = TcpStream::connect_timeout(&addr, settings.connect_timeout)
        .map_err(|err| format!("failed request to {}:{}: {err}", e.host, e.port))?;
    let _ = tcp.set_read_timeout(Some(settings.read_timeout));
    let _ = tcp.set_write_timeout(Some(settings.send_timeout));
    let _ = tcp.set_nodelay(true);
    let head = request_head(settings, body.len());
    let response = if e.tls {
        // As Kong's http-log and opentelemetry (`ssl_verify = false`): the server's
        // certificate is not checked.
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

/// A plugin's deprecated queue field, unless it holds its old default: Kong lets such a
/// field win over `queue.*` only then (configs upgraded from Kong 2.x carry the defaults,
/// `queue_size: 1` and `flush_timeout: 2`, or opentelemetry's 200 and 3).
pub fn deprecated<T: PartialEq>(value: Option<T>, old_default: T) -> Option<T> {
    value.filter(|v| *v != old_default)
}

#[cfg(test)]
mod deprecated_fields_tests {
    use super::*;

    #[test]
    fn old_defaults_of_the_deprecated_fields_leave_the_queue_settings() {
        assert_eq!(deprecated(Some(1), 1), None);
        assert_eq!(deprecated(Some(2.0), 2.0), None);
        assert_eq!(deprecated(Some(5), 1), Some(5));
        assert_eq!(deprecated(None, 1), None);
    }
}
