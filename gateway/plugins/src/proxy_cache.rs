//! proxy-cache (priority 100): answers repeated cacheable requests from memory, as Kong's
//! `kong/plugins/proxy-cache` does with its memory strategy.
//!
//! - access: a request whose method is not listed (or, with `cache_control`, that says
//!   `no-store`/`no-cache`) is marked `X-Cache-Status: Bypass`. Otherwise the key is computed
//!   (see [`key`]); a fresh entry answers at once (`Hit`, with `Age`), a stale one is fetched
//!   again (`Refresh`), a missing one too (`Miss`).
//! - header_filter: a response is kept only when its status and media type are listed (and,
//!   with `cache_control`, when its `Cache-Control` allows it and gives it a positive TTL);
//!   otherwise it is marked `Bypass`.
//! - body_filter: the kept response's status, headers and body go into the store (see
//!   [`store`]) for `storage_ttl`, else the resource TTL. The body is not changed.
//!
//! The diagnostic headers (`X-Cache-Status`, `X-Cache-Key`, `Age`) follow
//! `response_headers`, and are always sent when the request carries `Kong-Debug`.
//! Kong also bypasses on an `Authorization` check that reads an nginx variable which is
//! never set, so a request with credentials is cached like any other: so is it here.

mod cache_control;
mod config;
mod key;
mod mime;
pub mod store;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::Value;

use cache_control::Directives;
use config::{Config, MEMORY_ONLY};
use gangway_http::BodyFraming;
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::{AccessCtx, ResponseCtx};
use gangway_pipeline::edits::HeaderEdits;
use gangway_pipeline::flow::{Flow, Response, ResponseBody};
use mime::MediaType;
use store::{Entry, Store};

/// Kong's name.
pub const NAME: &str = "proxy-cache";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 100;

pub use config::schema;

/// A compiled proxy-cache instance.
#[derive(Debug)]
struct ProxyCache {
    response_code: Vec<u16>,
    request_method: Vec<String>,
    /// The configured media types that parse; Kong skips the others when matching.
    content_types: Vec<MediaType>,
    cache_ttl: i64,
    storage_ttl: Option<i64>,
    cache_control: bool,
    ignore_uri_case: bool,
    vary_query_params: Vec<String>,
    vary_headers: Vec<String>,
    show_age: bool,
    show_status: bool,
    show_key: bool,
    store: Arc<Store>,
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config =
        serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    compile(conf).map(|p| Box::new(p) as Box<dyn Plugin>)
}

fn compile(conf: Config) -> Result<ProxyCache, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    if conf.strategy != "memory" {
        problems.push(("strategy".into(), MEMORY_ONLY.into()));
    }
    let mut response_code = Vec::with_capacity(conf.response_code.len());
    for (i, code) in conf.response_code.iter().enumerate() {
        match u16::try_from(*code) {
            Ok(c) if (100..=900).contains(&c) => response_code.push(c),
            _ => problems.push((
                format!("response_code[{i}]"),
                "value should be between 100 and 900".into(),
            )),
        }
    }
    if conf.cache_ttl.is_some_and(|t| t <= 0) {
        problems.push(("cache_ttl".into(), "value must be greater than 0".into()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ProxyCache {
        response_code,
        request_method: conf.request_method,
        content_types: conf
            .content_type
            .iter()
            .filter_map(|t| mime::parse(t.as_bytes()))
            .collect(),
        // Kong's schema allows an explicit null, which its handler cannot use; the default
        // stands in for it.
        cache_ttl: conf.cache_ttl.unwrap_or(300),
        storage_ttl: conf.storage_ttl,
        cache_control: conf.cache_control,
        ignore_uri_case: conf.ignore_uri_case.unwrap_or(false),
        vary_query_params: conf.vary_query_params.unwrap_or_default(),
        vary_headers: conf.vary_headers.unwrap_or_default(),
        show_age: conf.response_headers.age.unwrap_or(false),
        show_status: conf.response_headers.status.unwrap_or(false),
        show_key: conf.response_headers.key.unwrap_or(false),
        store: store::dictionary(&conf.memory.dictionary_name).ok_or_else(|| {
            let name = &conf.memory.dictionary_name;
            vec![(
                "memory.dictionary_name".to_owned(),
                format!("missing shared dict '{name}'"),
            )]
        })?,
    })
}

/// Where a request stands between phases (kept in the plugin's context slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Access found no usable entry: the response may be stored.
    Miss,
    /// header_filter found the response cacheable: body_filter stores it.
    Store,
}

/// The plugin's per-request state, as saved in its slot.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    stage: Stage,
    /// The client asked with HEAD: no body will come.
    head: bool,
    /// The request carried `Kong-Debug`: diagnostic headers are always sent.
    debug: bool,
    /// The resource TTL, once header_filter computed it.
    ttl: f64,
    key: String,
}

impl Slot {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.key.len());
        out.push(match self.stage {
            Stage::Miss => b'M',
            Stage::Store => b'S',
        });
        out.push(u8::from(self.head) | u8::from(self.debug) << 1);
        out.extend_from_slice(&self.ttl.to_le_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let (&stage, rest) = bytes.split_first()?;
        let (&flags, rest) = rest.split_first()?;
        let (ttl, key) = rest.split_first_chunk::<8>()?;
        Some(Slot {
            stage: match stage {
                b'M' => Stage::Miss,
                b'S' => Stage::Store,
                _ => return None,
            },
            head: flags & 1 != 0,
            debug: flags & 2 != 0,
            ttl: f64::from_le_bytes(*ttl),
            key: String::from_utf8_lossy(key).into_owned(),
        })
    }
}

/// The diagnostic headers.
#[derive(Debug, Clone, Copy)]
enum Diagnostic {
    Age,
    Status,
    Key,
}

impl Diagnostic {
    fn name(self) -> &'static str {
        match self {
            Diagnostic::Age => "Age",
            Diagnostic::Status => "X-Cache-Status",
            Diagnostic::Key => "X-Cache-Key",
        }
    }
}

/// The wall clock in epoch seconds, with a fraction.
fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Response headers Kong never sends again from the cache: hop-by-hop ones, the framing
/// (gangway frames the cached body itself), rate-limit counters, its own diagnostics, and
/// `Server` (gangway writes its own on every answer it makes).
fn kept_on_store(lower: &str) -> bool {
    const DROPPED: [&str; 13] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "age",
        "x-cache-status",
        "x-cache-key",
        "server",
    ];
    !DROPPED.contains(&lower) && !lower.contains("ratelimit-remaining")
}

impl ProxyCache {
    fn shows(&self, which: Diagnostic, debug: bool) -> bool {
        debug
            || match which {
                Diagnostic::Age => self.show_age,
                Diagnostic::Status => self.show_status,
                Diagnostic::Key => self.show_key,
            }
    }

    /// Kong's `set_header`: a diagnostic header, when configured or asked for.
    fn diagnose(&self, edits: &mut HeaderEdits, debug: bool, which: Diagnostic, value: &str) {
        if self.shows(which, debug) {
            edits.set(which.name(), value.as_bytes());
        }
    }

    /// Kong's `cacheable_request`.
    fn cacheable_request(&self, method: &[u8], cc: &Directives) -> bool {
        self.request_method.iter().any(|m| m.as_bytes() == method)
            && !(self.cache_control && (cc.has("no-store") || cc.has("no-cache")))
    }

    /// Kong's `cacheable_response`, over the status, the first `Content-Type` value, the
    /// response's `Cache-Control` and its `Expires` (for the TTL check).
    fn cacheable_response(
        &self,
        status: u16,
        content_type: Option<&[u8]>,
        cc: &Directives,
        expires: Option<&[u8]>,
        now: f64,
    ) -> bool {
        if !self.response_code.contains(&status) {
            return false;
        }
        let Some(content_type) = content_type.filter(|t| !t.is_empty()) else {
            return false;
        };
        let actual = mime::parse(content_type);
        if !self
            .content_types
            .iter()
            .any(|expected| mime::matches(expected, actual.as_ref()))
        {
            return false;
        }
        if self.cache_control
            && (cc.has("private")
                || cc.has("no-store")
                || cc.has("no-cache")
                || cache_control::resource_ttl(cc, expires, now) <= 0.0)
        {
            return false;
        }
        true
    }

    /// The cache key of the request in `ctx` (see [`key`]).
    fn cache_key(&self, ctx: &AccessCtx<'_>) -> String {
        let mut uuid = uuid::Uuid::encode_buffer();
        let consumer = ctx.state.consumer.map(|c| {
            ctx.identities
                .consumer(c)
                .id
                .hyphenated()
                .encode_lower(&mut uuid)
                .to_owned()
        });
        let route = ctx.route.map(|r| r.id.hyphenated().to_string());
        let prefix = key::prefix(consumer.as_deref(), route.as_deref());
        let uri = key::request_uri(
            ctx.head.method(ctx.buf),
            ctx.head.target(ctx.buf),
            ctx.head.version().as_str(),
            self.ignore_uri_case,
        );
        let args = key::args(ctx.state.query.args(ctx.raw_query()));
        let params = key::params_key(&args, &self.vary_query_params);
        let headers = key::headers_key(&self.vary_headers, |name| {
            ctx.table_header_values(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        });
        key::build(&prefix, ctx.method(), &uri, &params, &headers)
    }

    /// Kong's choice between serving an entry and fetching the resource again.
    fn is_stale(&self, entry: &Entry, cc: &Directives, now: i64) -> bool {
        let age = (now - entry.timestamp) as f64;
        if !self.cache_control {
            // The entry may outlive cache_ttl in the store (storage_ttl); never serve it then.
            return age > self.cache_ttl as f64;
        }
        cc.number("max-age").is_some_and(|max| age > max)
            || cc
                .number("max-stale")
                .is_some_and(|max| age - entry.ttl > max)
            || cc
                .number("min-fresh")
                .is_some_and(|min| entry.ttl - age < min)
    }

    /// The answer from a stored entry.
    fn hit(&self, ctx: &mut AccessCtx<'_>, entry: &Entry, debug: bool, now: i64) -> Flow {
        let edits = &mut ctx.state.response_headers;
        // Kong's `kong.response.exit(status, body, res.headers)` sets each stored header,
        // replacing what an earlier plugin set under that name (rate-limiting's counters),
        // and keeps a stored name's repeated values.
        for (i, (name, value)) in entry.headers.iter().enumerate() {
            let repeated = entry.headers[..i]
                .iter()
                .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name));
            if repeated {
                edits.add(name, value);
            } else {
                edits.set(name, value);
            }
        }
        let age = (now - entry.timestamp).max(0).to_string();
        self.diagnose(edits, debug, Diagnostic::Age, &age);
        self.diagnose(edits, debug, Diagnostic::Status, "Hit");
        Flow::Respond(Response {
            status: entry.status,
            body: ResponseBody::Raw {
                content_type: entry.content_type.clone(),
                body: entry.body.clone(),
            },
            headers: Vec::new(),
            // Kong marks a hit as proxied: Via, and no X-Kong-Response-Latency.
            proxied: true,
            via: false,
            waited: None,
        })
    }

    /// What is stored of the response in `ctx` (headers after every edit so far).
    fn entry(&self, ctx: &ResponseCtx<'_>, slot: &Slot, body: Vec<u8>, now: f64) -> Entry {
        let mut content_type = None;
        let mut headers = Vec::new();
        let mut keep = |name: &[u8], value: &[u8]| {
            let name = String::from_utf8_lossy(name);
            let lower = name.to_ascii_lowercase();
            if lower == "content-type" {
                if content_type.is_none() {
                    content_type = Some(String::from_utf8_lossy(value).into_owned());
                }
            } else if kept_on_store(&lower) {
                headers.push((name.into_owned(), value.to_vec()));
            }
        };
        let edits = &ctx.state.response_headers;
        if let Some((head, buf)) = ctx.upstream {
            for field in head.headers() {
                let (name, value) = (field.name.get(buf), field.value.get(buf));
                if !head.is_hop_by_hop(buf, name) && !edits.removes_original(name) {
                    keep(name, value);
                }
            }
        }
        for (name, value) in edits.added() {
            keep(name, value);
        }
        Entry {
            status: ctx.status,
            content_type,
            headers,
            body,
            timestamp: now.floor() as i64,
            ttl: slot.ttl,
            expires_at: None,
        }
    }

    /// Kong's storage TTL: `storage_ttl`, else the resource TTL under `cache_control`, else
    /// `cache_ttl`. Stores the entry for that long (0: until evicted; below 0, as a shared
    /// dict refuses it, not at all).
    fn keep(&self, key: String, mut entry: Entry, now: f64) {
        let ttl = match self.storage_ttl {
            Some(t) => t as f64,
            None if self.cache_control => entry.ttl,
            None => self.cache_ttl as f64,
        };
        if ttl < 0.0 {
            tracing::warn!(ttl, "proxy-cache: not stored: bad exptime");
            return;
        }
        entry.expires_at = (ttl > 0.0).then_some(now + ttl);
        self.store.store(key, entry);
    }
}

impl Plugin for ProxyCache {
    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let debug = ctx.header("kong-debug").is_some();
        let cc = if self.cache_control {
            Directives::parse(ctx.header_values("cache-control"))
        } else {
            Directives::default()
        };
        if !self.cacheable_request(ctx.method(), &cc) {
            let edits = &mut ctx.state.response_headers;
            self.diagnose(edits, debug, Diagnostic::Status, "Bypass");
            return Flow::Continue;
        }
        let key = self.cache_key(ctx);
        self.diagnose(
            &mut ctx.state.response_headers,
            debug,
            Diagnostic::Key,
            &key,
        );
        let now = now_f64();
        let now_secs = now.floor() as i64;
        let status = match self.store.fetch(&key, now) {
            None if self.cache_control && cc.has("only-if-cached") => {
                // RFC 7234 5.2.1.7: the client wants a stored response or nothing.
                return Flow::Respond(Response {
                    status: 504,
                    body: ResponseBody::Empty,
                    headers: Vec::new(),
                    proxied: false,
                    via: false,
                    waited: None,
                });
            }
            None => "Miss",
            Some(entry) if self.is_stale(&entry, &cc, now_secs) => "Refresh",
            Some(entry) => return self.hit(ctx, &entry, debug, now_secs),
        };
        let slot = Slot {
            stage: Stage::Miss,
            head: ctx.head.method(ctx.buf) == b"HEAD",
            debug,
            ttl: 0.0,
            key,
        };
        ctx.save(&slot.encode());
        self.diagnose(
            &mut ctx.state.response_headers,
            debug,
            Diagnostic::Status,
            status,
        );
        Flow::Continue
    }

    fn filters_headers(&self) -> bool {
        true
    }

    fn header_filter(&self, ctx: &mut ResponseCtx<'_>) {
        let Some(mut slot) = Slot::decode(ctx.saved()).filter(|s| s.stage == Stage::Miss) else {
            return;
        };
        let now = now_f64();
        let cc = if self.cache_control {
            Directives::parse(ctx.header_values("cache-control"))
        } else {
            Directives::default()
        };
        let expires = ctx.header_values("expires").last();
        let cacheable =
            self.cacheable_response(ctx.status, ctx.header("content-type"), &cc, expires, now);
        if !cacheable {
            let edits = &mut ctx.state.response_headers;
            self.diagnose(edits, slot.debug, Diagnostic::Status, "Bypass");
            ctx.state.save(ctx.step, &[]);
            return;
        }
        // A body too big for the store streams through uncached (still a Miss, as Kong's
        // store would fail on it); buffering it for nothing could only fail the request.
        let too_big = ctx.upstream.is_some_and(|(head, _)| {
            matches!(head.framing(), BodyFraming::Length(n) if n > store::MAX_ENTRY_BYTES)
        });
        if too_big {
            ctx.state.save(ctx.step, &[]);
            return;
        }
        slot.ttl = if self.cache_control {
            cache_control::resource_ttl(&cc, expires, now)
        } else {
            self.cache_ttl as f64
        };
        match ctx.upstream {
            // No body will be buffered for these: what is stored is known now.
            Some((head, _)) if slot.head || !head.framing().has_body() => {
                let entry = self.entry(ctx, &slot, Vec::new(), now);
                self.keep(slot.key, entry, now);
                ctx.state.save(ctx.step, &[]);
            }
            // An upstream body, or a plugin's answer (its body reaches body_filter too).
            _ => {
                slot.stage = Stage::Store;
                ctx.state.save(ctx.step, &slot.encode());
            }
        }
    }

    fn filters_body(&self) -> bool {
        true
    }

    fn wants_body(&self, ctx: &ResponseCtx<'_>) -> bool {
        Slot::decode(ctx.saved()).is_some_and(|s| s.stage == Stage::Store)
    }

    /// A body the store would not keep is not worth holding: it streams through, a Miss.
    fn body_wanted_up_to(&self) -> Option<u64> {
        Some(store::MAX_ENTRY_BYTES)
    }

    fn body_filter(&self, ctx: &mut ResponseCtx<'_>, body: &mut Vec<u8>) {
        let Some(slot) = Slot::decode(ctx.saved()).filter(|s| s.stage == Stage::Store) else {
            return;
        };
        let now = now_f64();
        let entry = self.entry(ctx, &slot, body.clone(), now);
        self.keep(slot.key, entry, now);
        ctx.state.save(ctx.step, &[]);
    }
}
