//! What plugin handlers see and change: the request (through the edit overlay), the
//! authenticated consumer, and per-plugin state that lives until the log phase.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::edits::{HeaderEdits, QueryEdits};
use super::identity::{ConsumerRef, CredentialRef, Identities};
use super::trace::RequestTrace;
use gangway_config::model::{Route, Service};
use gangway_http::{RequestHead, ResponseHead};
use gangway_router::{MatchScratch, RouteMatch};

/// Per-connection plugin state, cleared at the start of every request so its buffers are
/// reused.
#[derive(Debug, Default)]
pub struct RequestState {
    /// Changes to the upstream request's headers.
    pub headers: HeaderEdits,
    /// Changes to the upstream query string.
    pub query: QueryEdits,
    /// A new upstream path (request-transformer `replace.uri`), when set.
    pub path: Option<Vec<u8>>,
    /// A new upstream method, when set.
    pub method: Option<String>,
    /// The request body, when the chain buffered it (a plugin reads or rewrites it).
    pub body: Option<Vec<u8>>,
    /// A chunked body passed the chain's [`super::Chain::chunked_body_limit`]: it was not
    /// read to its end (`body` is `None`), and the request must not be proxied.
    pub body_over_limit: bool,
    /// The authenticated consumer.
    pub consumer: Option<ConsumerRef>,
    /// The credential that authenticated it (absent for the anonymous consumer).
    pub credential: Option<CredentialRef>,
    /// Groups set by an authentication plugin without consumers (`authenticated_groups`).
    pub authenticated_groups: Vec<String>,
    /// Top-level fields a plugin adds to the log entry (Kong's
    /// `kong.log.set_serialize_value`, e.g. correlation-id's `correlation_id`).
    pub log_values: Vec<(&'static str, String)>,
    /// Changes to the client response's headers.
    pub response_headers: HeaderEdits,
    /// For each chain step, the instance chosen in access (index into the instances), or
    /// [`NOT_RUN`]. Later phases reuse it, as Kong does.
    pub resolved: Vec<u32>,
    /// Facts about the client connection; set by the session, kept across [`Self::reset`].
    pub conn: ConnFacts,
    /// The request's spans; started by the session with [`RequestTrace::begin`].
    pub trace: RequestTrace,
    /// How much of the request and response plugins read as tables; set once for the
    /// worker, kept across [`Self::reset`].
    pub limits: ReadLimits,
    saved: Vec<u8>,
    slots: Vec<Range<u32>>,
}

/// Kong's `lua_max_req_headers`, `lua_max_resp_headers` and `lua_max_post_args`: how many
/// headers and form arguments its PDK's tables hold (`kong.request.get_headers()`,
/// `kong.response.get_headers()`, `kong.request.get_body()`). What is past them is still
/// proxied; plugins and the log entry do not see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Request headers, counted after earlier plugins' edits.
    pub req_headers: u16,
    /// Response headers.
    pub resp_headers: u16,
    /// Arguments of a form-urlencoded body.
    pub post_args: u16,
}

impl Default for ReadLimits {
    /// Kong's defaults: 100 of each.
    fn default() -> Self {
        ReadLimits {
            req_headers: 100,
            resp_headers: 100,
            post_args: 100,
        }
    }
}

/// The client connection as nginx's `$server_addr`, `$server_port`, `$connection` and
/// `$connection_requests` describe it (correlation-id's `tracker` generator).
#[derive(Debug, Clone, Copy)]
pub struct ConnFacts {
    /// The local address the connection arrived on. Default `0.0.0.0:0`.
    pub server: SocketAddr,
    /// The connection's serial number, unique in the process. Default 0.
    pub serial: u64,
    /// Requests received on the connection so far, this one included. Default 0.
    pub requests: u64,
}

impl Default for ConnFacts {
    fn default() -> Self {
        ConnFacts {
            server: SocketAddr::from(([0, 0, 0, 0], 0)),
            serial: 0,
            requests: 0,
        }
    }
}

static CONNECTION_SERIAL: AtomicU64 = AtomicU64::new(0);

impl ConnFacts {
    /// Facts for a new connection on `server`, with the next serial number.
    pub fn new_connection(server: SocketAddr) -> ConnFacts {
        ConnFacts {
            server,
            serial: CONNECTION_SERIAL.fetch_add(1, Ordering::Relaxed) + 1,
            requests: 0,
        }
    }
}

/// A [`RequestState::resolved`] entry for a step that did not run.
pub const NOT_RUN: u32 = u32::MAX;

impl RequestState {
    /// Resets for a new request that walks a chain of `steps` steps.
    pub fn reset(&mut self, steps: usize) {
        self.headers.clear();
        self.query.clear();
        self.path = None;
        self.method = None;
        self.body = None;
        self.body_over_limit = false;
        self.consumer = None;
        self.credential = None;
        self.authenticated_groups.clear();
        self.log_values.clear();
        self.response_headers.clear();
        self.resolved.clear();
        self.resolved.resize(steps, NOT_RUN);
        self.saved.clear();
        self.slots.clear();
        self.slots.resize(steps, 0..0);
    }

    /// Starts the route's chain of `steps` steps after routing. Request and response edits
    /// made in rewrite are kept; which instances ran, and what they saved, start over.
    pub fn begin_chain(&mut self, steps: usize) {
        self.resolved.clear();
        self.resolved.resize(steps, NOT_RUN);
        self.saved.clear();
        self.slots.clear();
        self.slots.resize(steps, 0..0);
    }

    /// The request headers Kong's `kong.request.get_headers()` table holds: the first
    /// `lua_max_req_headers` of `head`'s, after the edits so far.
    pub fn header_table<'s>(
        &'s self,
        head: &'s RequestHead,
        buf: &'s [u8],
    ) -> impl Iterator<Item = (&'s [u8], &'s [u8])> {
        let originals = head
            .headers()
            .iter()
            .map(move |f| (f.name.get(buf), f.value.get(buf)));
        self.headers.table(originals, self.limits.req_headers)
    }

    /// Stores bytes for chain step `step` (read back in a later phase with [`Self::saved`]).
    pub fn save(&mut self, step: usize, bytes: &[u8]) {
        let start = self.saved.len() as u32;
        self.saved.extend_from_slice(bytes);
        if let Some(slot) = self.slots.get_mut(step) {
            *slot = start..self.saved.len() as u32;
        }
    }

    /// What step `step` saved; empty when nothing.
    pub fn saved(&self, step: usize) -> &[u8] {
        self.slots
            .get(step)
            .map_or(&[][..], |r| &self.saved[r.start as usize..r.end as usize])
    }
}

/// The request as the access (and rewrite) phase sees it.
pub struct AccessCtx<'a> {
    /// The parsed client head.
    pub head: &'a RequestHead,
    /// The bytes `head` points into.
    pub buf: &'a [u8],
    /// The router's scratch: normalized path and `uri_captures`.
    pub captures: &'a MatchScratch,
    /// The client address (after `real_ip` resolution).
    pub client_ip: IpAddr,
    /// The request arrived over TLS.
    pub tls: bool,
    /// Consumers, credentials and ACL groups, as of the snapshot the request loaded.
    pub identities: &'a Identities,
    /// The matched route (`None` in rewrite, which runs before routing).
    pub route: Option<&'a Route>,
    /// How the route matched (`None` in rewrite): what `strip_path` removes.
    pub route_match: Option<RouteMatch>,
    /// The route's service (`None` when it has none or it is disabled).
    pub service: Option<&'a Service>,
    /// This request's id (`X-Kong-Request-Id`).
    pub request_id: &'a [u8; 32],
    /// Mutable plugin state.
    pub state: &'a mut RequestState,
    /// The chain step being run.
    pub step: usize,
}

impl AccessCtx<'_> {
    /// The first value of request header `lower_name`, after earlier plugins' edits.
    pub fn header<'s>(&'s self, lower_name: &'s str) -> Option<&'s [u8]> {
        self.header_values(lower_name).next()
    }

    /// Every value of request header `lower_name`, after earlier plugins' edits.
    pub fn header_values<'s>(&'s self, lower_name: &'s str) -> impl Iterator<Item = &'s [u8]> {
        self.state
            .headers
            .values(lower_name, self.head.header_values(self.buf, lower_name))
    }

    /// The request headers Kong's `kong.request.get_headers()` table holds: the first
    /// `lua_max_req_headers`, after earlier plugins' edits.
    pub fn header_table(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.state.header_table(self.head, self.buf)
    }

    /// Every value of request header `lower_name` in [`Self::header_table`] (Kong's
    /// `kong.request.get_headers()[name]`).
    pub fn table_header_values<'s>(
        &'s self,
        lower_name: &'s str,
    ) -> impl Iterator<Item = &'s [u8]> {
        self.header_table()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(lower_name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The raw query string (without `?`) as the client sent it.
    pub fn raw_query(&self) -> Option<&[u8]> {
        self.head.query(self.buf)
    }

    /// Every decoded value of query argument `name` among the arguments plugins read
    /// ([`QueryEdits::args`]), after earlier plugins' edits.
    pub fn query_values<'s>(&'s self, name: &'s str) -> Vec<std::borrow::Cow<'s, str>> {
        self.state.query.values(self.raw_query(), name).collect()
    }

    /// The request method, after earlier plugins' edits.
    pub fn method(&self) -> &[u8] {
        match &self.state.method {
            Some(m) => m.as_bytes(),
            None => self.head.method(self.buf),
        }
    }

    /// The request path as the client sent it (no query).
    pub fn path(&self) -> &[u8] {
        self.head.path(self.buf)
    }

    /// The buffered body, when the chain asked for it.
    pub fn body(&self) -> Option<&[u8]> {
        self.state.body.as_deref()
    }

    /// The media type of the body, lower-cased parameters included (`Content-Type`).
    pub fn content_type(&self) -> Option<&[u8]> {
        self.header("content-type")
    }

    /// Saves bytes for this plugin's later phases.
    pub fn save(&mut self, bytes: &[u8]) {
        self.state.save(self.step, bytes);
    }
}

/// The response as header_filter sees it: the upstream's head, or a plugin's response.
pub struct ResponseCtx<'a> {
    /// The status sent to the client.
    pub status: u16,
    /// The upstream's response head and its bytes; `None` for a plugin-made response.
    pub upstream: Option<(&'a ResponseHead, &'a [u8])>,
    /// The client's request head and its bytes, where they are still at hand: for gangway's
    /// own answers before anything was proxied (no route matched, a plugin's exit); `None`
    /// once the request went upstream and its buffer was reused.
    pub request: Option<(&'a RequestHead, &'a [u8])>,
    /// Mutable plugin state (response header edits live here).
    pub state: &'a mut RequestState,
    /// The chain step being run.
    pub step: usize,
}

impl ResponseCtx<'_> {
    /// The first value of request header `lower_name`, after the access phase's edits (Kong's
    /// `kong.request.get_header` in header_filter), where the request is at hand.
    pub fn request_header<'s>(&'s self, lower_name: &'s str) -> Option<&'s [u8]> {
        let (head, buf) = self.request?;
        let originals = head.header_values(buf, lower_name);
        self.state.headers.values(lower_name, originals).next()
    }

    /// The first value of response header `lower_name`, after edits.
    pub fn header<'s>(&'s self, lower_name: &'s str) -> Option<&'s [u8]> {
        self.header_values(lower_name).next()
    }

    /// Every value of response header `lower_name`, after edits.
    pub fn header_values<'s>(&'s self, lower_name: &'s str) -> impl Iterator<Item = &'s [u8]> {
        let originals = self
            .upstream
            .into_iter()
            .flat_map(move |(head, buf)| head.header_values(buf, lower_name));
        self.state.response_headers.values(lower_name, originals)
    }

    /// What this plugin saved during access.
    pub fn saved(&self) -> &[u8] {
        self.state.saved(self.step)
    }
}

/// What the log phase sees: the transaction's figures, typed, and Kong's
/// `kong.log.serialize()` document, built the first time a plugin asks for it.
pub struct LogCtx<'a> {
    /// The transaction's figures (what a metrics plugin reads without serializing).
    pub facts: &'a LogFacts<'a>,
    /// The serialized transaction, built on first use.
    pub entry: &'a LazyEntry<'a>,
    /// Plugin state as the response left it.
    pub state: &'a RequestState,
    /// The chain step being run.
    pub step: usize,
}

/// A finished transaction's figures, as Kong's serializer reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogFacts<'a> {
    /// The status sent to the client (499 when the client left first).
    pub status: u16,
    /// True when the upstream service answered (`kong.response.get_source()` is `service`).
    pub from_service: bool,
    /// `latencies.request`: from the request head to the response, in milliseconds.
    pub request_ms: u64,
    /// `latencies.proxy`: the upstream's (or a plugin's backend's) time, when there was one.
    pub upstream_ms: Option<u64>,
    /// `latencies.kong`: gangway's own time.
    pub kong_ms: u64,
    /// `request.size`: the request's head and body bytes.
    pub request_size: u64,
    /// `response.size`: the bytes sent to the client.
    pub response_size: u64,
    /// The matched route, if any.
    pub route: Option<&'a Route>,
    /// The route's service, if any.
    pub service: Option<&'a Service>,
    /// The authenticated consumer, if any.
    pub consumer: Option<&'a gangway_config::model::Consumer>,
    /// The version of the config that served the request (labels built from the entities
    /// above may be cached per version).
    pub config_version: u64,
}

/// Kong's `kong.log.serialize()` document as JSON text, built once on first use: a chain
/// whose log plugins read only [`LogFacts`] never pays for it. Text rather than a JSON tree:
/// every plugin that reads it sends or writes it as text, and parts of it are kept as text.
pub struct LazyEntry<'a> {
    cell: std::cell::OnceCell<Vec<u8>>,
    make: &'a dyn Fn() -> Vec<u8>,
}

impl<'a> LazyEntry<'a> {
    /// An entry that `make` writes when first asked for.
    pub fn new(make: &'a dyn Fn() -> Vec<u8>) -> Self {
        LazyEntry {
            cell: std::cell::OnceCell::new(),
            make,
        }
    }

    /// An entry already built (what tests and callers holding the document use).
    pub fn built(value: serde_json::Value) -> LazyEntry<'static> {
        fn unused() -> Vec<u8> {
            b"null".to_vec()
        }
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(serde_json::to_vec(&value).unwrap_or_else(|_| unused()));
        LazyEntry {
            cell,
            make: &unused,
        }
    }

    /// The document's JSON text.
    pub fn json(&self) -> &[u8] {
        self.cell.get_or_init(self.make)
    }
}

impl LogCtx<'_> {
    /// What this plugin saved during access.
    pub fn saved(&self) -> &[u8] {
        self.state.saved(self.step)
    }
}
