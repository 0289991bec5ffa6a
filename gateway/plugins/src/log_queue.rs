//! Kong's plugin queue (`kong.tools.queue`) for the plugins that post to a server (http-log,
//! opentelemetry): entries wait in a bounded queue, a sender thread batches them
//! (`max_batch_size`, `max_coalescing_delay`), encodes each batch with the plugin's encoder
//! (and first each [`Entry::Deferred`], which a worker queued as plain data) and posts it
//! over a kept-alive connection, retrying with a doubling delay (`initial_retry_delay` ..
//! `max_retry_delay`) for up to `max_retry_time`. A full queue drops its oldest entries.
//!
//! Instances with the same settings share one queue, across config reloads too: a reload
//! neither loses queued entries nor starts a second sender. The sender thread ends once no
//! instance uses its queue any more and the queue is empty.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
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
            // lua-resty-http's default, which Kong's opentelemetry plugin keeps.
            keepalive: Duration::from_secs(60),
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
    /// How long the connection to the server is kept between batches.
    pub keepalive: Duration,
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
    /// The URL requests go to, without the userinfo (sent as `authorization`).
    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }

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
    shared: Arc<Shared>,
    max_entries: usize,
    max_bytes: Option<usize>,
    dropped: AtomicU64,
    kind: &'static str,
}

/// What a queue's instances and its sender thread share.
struct Shared {
    waiting: Mutex<Waiting>,
    /// Signalled when an entry arrives for a sender that waits, or the queue closes.
    arrived: Condvar,
    /// Entries accepted and not yet sent (or given up on): waiting, or in the batch being
    /// sent.
    pending: AtomicUsize,
}

#[derive(Default)]
struct Waiting {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The sender sleeps on `arrived`: only then does a push signal it (a signal is a
    /// syscall on the worker that pushes).
    sender_asleep: bool,
    /// No instance uses the queue any more: the sender sends what is left and ends.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            arrived: Condvar::new(),
            pending: AtomicUsize::new(0),
        });
        let queue = Arc::new(Queue {
            shared: shared.clone(),
            max_entries: settings.max_entries,
            max_bytes: settings.max_bytes,
            dropped: AtomicU64::new(0),
            kind: settings.kind,
        });
        queues.insert(settings.clone(), Arc::downgrade(&queue));
        let kind = settings.kind;
        let spawned = std::thread::Builder::new()
            .name(kind.into())
            .spawn(move || send_batches(&shared, &settings, encode));
        if let Err(e) = spawned {
            error!(error = %e, "{kind}: cannot start the sender thread");
        }
        queue
    }

    /// Adds an entry. As Kong's queue: when the queue holds `max_entries`, or the entry would
    /// take it past `max_bytes`, the oldest entries make room (counted, with an error every
    /// 1024 drops); an entry larger than `max_bytes` alone is refused.
    pub fn push(&self, entry: impl Into<Entry>) {
        let entry = entry.into();
        let len = entry.size();
        if self.max_bytes.is_some_and(|max| len > max) {
            self.count_drops(1, "an entry is larger than the queue's max_bytes");
            return;
        }
        let mut waiting = self.shared.lock();
        let mut dropped = 0;
        while waiting.entries.len() >= self.max_entries
            || self
                .max_bytes
                .is_some_and(|max| waiting.bytes + len > max && !waiting.entries.is_empty())
        {
            let Some(oldest) = waiting.entries.pop_front() else {
                break;
            };
            waiting.bytes -= oldest.size();
            dropped += 1;
        }
        waiting.entries.push_back(entry);
        waiting.bytes += len;
        // Under the lock, so that the sender never subtracts what is not added yet.
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        self.shared.pending.fetch_sub(dropped, Ordering::Relaxed);
        let wake = std::mem::take(&mut waiting.sender_asleep);
        drop(waiting);
        if dropped > 0 {
            self.count_drops(dropped, "queue full, dropping old entries");
        }
        if wake {
            self.shared.arrived.notify_one();
        }
    }

    fn count_drops(&self, n: usize, why: &str) {
        let before = self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        if before / 1024 != (before + n as u64) / 1024 || before == 0 {
            error!(dropped = before + n as u64, "{}: {why}", self.kind);
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
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
        while q.shared.pending.load(Ordering::Relaxed) > 0 {
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

fn send_batches(shared: &Shared, settings: &Settings, encode: Encoder) {
    let agent = http_agent(settings);
    while let Some(batch) = next_batch(shared, settings) {
        let entries = batch.len();
        let encoded: Vec<Vec<u8>> = batch.into_iter().map(Entry::into_bytes).collect();
        send_with_retries(&agent, settings, &encode(settings, &encoded), entries);
        shared.pending.fetch_sub(entries, Ordering::Relaxed);
    }
}

/// Waits for an entry, then gathers up to `max_batch_size` for at most
/// `max_coalescing_delay`. `None` once the queue is closed and empty.
fn next_batch(shared: &Shared, settings: &Settings) -> Option<Vec<Entry>> {
    let mut waiting = shared.lock();
    while waiting.entries.is_empty() {
        if waiting.closed {
            return None;
        }
        waiting.sender_asleep = true;
        waiting = shared
            .arrived
            .wait(waiting)
            .unwrap_or_else(|p| p.into_inner());
    }
    let deadline = Instant::now() + settings.max_coalescing_delay;
    let mut batch = Vec::new();
    loop {
        let take = waiting
            .entries
            .len()
            .min(settings.max_batch_size - batch.len());
        let Waiting { entries, bytes, .. } = &mut *waiting;
        for entry in entries.drain(..take) {
            *bytes -= entry.size();
            batch.push(entry);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if batch.len() >= settings.max_batch_size || left.is_zero() || waiting.closed {
            return Some(batch);
        }
        // Polled, not signalled entry by entry: every signal is a syscall on the worker
        // that pushed and a context switch here (at 800 traces a second, 1.6% of the
        // worker's CPU on this thread alone).
        drop(waiting);
        std::thread::sleep(left.min(DRAIN_EVERY));
        waiting = shared.lock();
    }
}

/// Retries as Kong's queue does: after each failure, unless `max_retry_time` has passed
/// since the first attempt, it waits `initial_retry_delay` doubled per retry (at most
/// `max_retry_delay`) and tries again.
fn send_with_retries(agent: &ureq::Agent, settings: &Settings, body: &[u8], entries: usize) {
    let started = Instant::now();
    let mut delay = settings.initial_retry_delay;
    loop {
        match send(agent, settings, body) {
            Ok(status) => {
                debug!(status, entries, "{}: sent", settings.kind);
                return;
            }
            Err(e) => {
                warn!(error = %e, "{}: handler could not process entries", settings.kind);
                if started.elapsed() > settings.max_retry_time {
                    error!(
                        entries,
                        "{}: could not send entries due to max_retry_time exceeded; they were lost",
                        settings.kind
                    );
                    return;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(settings.max_retry_delay);
            }
        }
    }
}

/// The client a sender posts with: one connection, kept for `keepalive` between batches
/// (Kong's http-log `keepalive`); no redirects, no proxy from the environment, and the
/// server's certificate unchecked (Kong's `ssl_verify = false`).
fn http_agent(settings: &Settings) -> ureq::Agent {
    use ureq::config::AutoHeaderValue;
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(gangway_net::tls::provider())
        .disable_verification(true)
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .max_idle_age(settings.keepalive)
        .timeout_resolve(Some(settings.connect_timeout))
        .timeout_connect(Some(settings.connect_timeout))
        .timeout_send_request(Some(settings.send_timeout))
        .timeout_send_body(Some(settings.send_timeout))
        .timeout_recv_response(Some(settings.read_timeout))
        .timeout_recv_body(Some(settings.read_timeout))
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        resolver::EndpointResolver::default(),
    )
}

/// The most of a log server's answer that is read; a longer one costs the connection.
const MAX_ANSWER: u64 = 64 * 1024;

/// Posts `body` once; `Ok` with the status when it is below 300.
fn send(agent: &ureq::Agent, settings: &Settings, body: &[u8]) -> Result<u16, String> {
    let e = &settings.endpoint;
    let failed =
        |err: &dyn std::fmt::Display| format!("failed request to {}:{}: {err}", e.host, e.port);
    let mut request = ureq::http::Request::builder()
        .method(settings.method.as_str())
        .uri(e.url())
        .header("Content-Type", &settings.content_type);
    if let Some(auth) = &e.authorization {
        request = request.header("Authorization", auth);
    }
    for (name, value) in &settings.headers {
        // Kong's own headers win over configured ones of the same name.
        let own = ["host", "content-type", "content-length", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            || (e.authorization.is_some() && name.eq_ignore_ascii_case("authorization"));
        if !own {
            request = request.header(name, value);
        }
    }
    let request = request.body(body).map_err(|err| failed(&err))?;
    let mut response = agent.run(request).map_err(|err| failed(&err))?;
    let status = response.status().as_u16();
    let answer = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec();
    if status < 300 {
        return Ok(status);
    }
    Err(format!(
        "request to {}:{} returned status code {status} and body {}",
        e.host,
        e.port,
        String::from_utf8_lossy(&answer.unwrap_or_default())
    ))
}

/// A plugin's deprecated queue field, unless it holds its old default: Kong lets such a
/// field win over `queue.*` only then (configs upgraded from Kong 2.x carry the defaults,
/// `queue_size: 1` and `flush_timeout: 2`, or opentelemetry's 200 and 3).
pub fn deprecated<T: PartialEq>(value: Option<T>, old_default: T) -> Option<T> {
    value.filter(|v| *v != old_default)
}

mod resolver;
#[cfg(test)]
mod tests;
