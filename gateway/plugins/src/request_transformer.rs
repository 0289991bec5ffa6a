//! request-transformer (priority 801): rewrites the request on its way to the upstream: the
//! path, the method, headers, body and query string (kong-reference.md 4.2).
//!
//! Kong's order is kept: `replace.uri`, `http_method`, headers, body, query; inside each group
//! remove → rename → replace → add → append. Every value is a [`Template`] compiled when the
//! config loads. All values are rendered once, before any change, against the request as this
//! plugin received it (the client's request plus earlier plugins' edits). Kong loads its
//! template environment lazily, at the first template it renders, which in practice is the
//! same moment: a template can read a header that this plugin removes or replaces (Kong's spec
//! relies on that).
//!
//! Body changes need a buffered body ([`Plugin::needs_body`]); the proxy frames the new body
//! with its own `Content-Length`.

mod body;
mod config;
mod env;
mod multipart;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde_json::Value;

use crate::template::Template;
use env::{Rendered, Request};
use gangway_config::schema::Schema;
use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::ConfigProblem;
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::flow::Flow;

/// Kong's name.
pub const NAME: &str = "request-transformer";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 801;

/// A configured value: fixed text, a template rendered per request, or nothing (a header
/// entry written `name:`, which Kong treats as "no value").
#[derive(Debug)]
enum Val {
    Text(String),
    Template(usize),
    Absent,
}

/// One `name:value` entry.
#[derive(Debug)]
struct Pair {
    /// The name as configured.
    name: String,
    /// The name in lower case (header lookups).
    lower: String,
    value: Val,
}

/// The five operations on one part of the request.
type Ops = crate::transform_ops::Ops<Pair, Pair>;

/// The compiled plugin.
#[derive(Debug)]
struct RequestTransformer {
    /// `http_method`, already upper case.
    method: Option<String>,
    /// The switch is to GET, HEAD or TRACE: form-encoded body arguments move to the query.
    method_moves_form: bool,
    /// `replace.uri`; `None` when unset or empty.
    uri: Option<Val>,
    headers: Ops,
    query: Ops,
    body: Ops,
    /// Every value that reads the request, indexed by [`Val::Template`].
    templates: Vec<Template>,
}

/// Kong's `kong/plugins/request-transformer/schema.lua`.
pub fn schema() -> Schema {
    config::schema()
}

/// Builds the plugin from its validated config.
pub fn build(config: &Value) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    config::compile(config).map(|p| Box::new(p) as Box<dyn Plugin>)
}

/// Kong's answer when a transformation fails at request time (an `error()` in the handler).
const INTERNAL: &str = "An unexpected error occurred";

impl Plugin for RequestTransformer {
    fn needs_body(&self) -> bool {
        !self.body.is_empty() || self.method_moves_form
    }

    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let mut req = Request {
            head: ctx.head,
            buf: ctx.buf,
            captures: ctx.captures,
            state: &mut *ctx.state,
        };
        match self.transform(&mut req) {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::error(500, INTERNAL),
        }
    }
}

impl RequestTransformer {
    /// Applies every configured change, in Kong's order. `Err` is Kong's runtime failure (a
    /// new path that does not start with `/`).
    fn transform(&self, req: &mut Request<'_>) -> Result<(), ()> {
        let rendered = env::render(&self.templates, req);
        if let Some(uri) = &self.uri {
            if let Some(path) = rendered.get(uri) {
                if path.first() != Some(&b'/') {
                    return Err(());
                }
                let mut escaped = Vec::with_capacity(path.len());
                gangway_router::escape_into(path, &mut escaped);
                req.state.path = Some(escaped);
            }
        }
        if let Some(method) = &self.method {
            req.state.method = Some(method.clone());
            if self.method_moves_form {
                body::form_to_query(req);
            }
        }
        self.transform_headers(req, &rendered);
        if !self.body.is_empty() {
            body::transform(&self.body, req, &rendered);
        }
        self.transform_query(req, &rendered);
        Ok(())
    }

    fn transform_headers(&self, req: &mut Request<'_>, r: &Rendered) {
        let ops = &self.headers;
        // Kong works on a copy of `get_headers()`: a header past `lua_max_req_headers` is
        // not in it, so it is neither renamed nor replaced, and does not stop an add. The
        // names this transform writes join the copy.
        let mut table = req.table_names();
        let in_table = |table: &Option<Vec<String>>, lower: &str| {
            table
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == lower))
        };
        // Kong takes `host` out of its working copy: it can be replaced, never removed,
        // renamed or added.
        for name in &ops.remove {
            if !name.eq_ignore_ascii_case("host") {
                req.state.headers.remove(name);
            }
        }
        for p in &ops.rename {
            if p.lower == "host" {
                continue;
            }
            let Some(new) = r.get(&p.value) else {
                continue;
            };
            let new = String::from_utf8_lossy(new);
            if !in_table(&table, &p.lower) {
                continue;
            }
            let values = req.header_values(&p.lower);
            if values.is_empty() || p.name == new {
                continue;
            }
            // A change of case keeps the configured spelling; otherwise Kong writes the new
            // name in lower case, replacing any header already called that.
            let target = if new.eq_ignore_ascii_case(&p.lower) {
                new.into_owned()
            } else {
                new.to_ascii_lowercase()
            };
            req.state.headers.remove(&p.name);
            req.state.headers.remove(&target);
            for v in &values {
                req.state.headers.add(&target, v);
            }
            if let Some(names) = &mut table {
                names.push(target.to_ascii_lowercase());
            }
        }
        for p in &ops.replace {
            let present =
                p.lower == "host" || (in_table(&table, &p.lower) && req.has_header(&p.lower));
            if !present {
                continue;
            }
            match r.get(&p.value) {
                Some(v) => req.state.headers.set(&p.lower, &header_safe(v)),
                None => req.state.headers.remove(&p.lower),
            }
        }
        for p in &ops.add {
            if p.lower == "host" || (in_table(&table, &p.lower) && req.has_header(&p.lower)) {
                continue;
            }
            if let Some(v) = r.get(&p.value) {
                req.state.headers.add(&p.name, &header_safe(v));
                if let Some(names) = &mut table {
                    names.push(p.lower.clone());
                }
            }
        }
        for p in &ops.append {
            if let Some(v) = r.get(&p.value) {
                req.state.headers.add(&p.name, &header_safe(v));
            }
        }
    }

    /// Kong rebuilds the query (names sorted) whenever any query operation is configured,
    /// even when nothing matched.
    fn transform_query(&self, req: &mut Request<'_>, r: &Rendered) {
        let ops = &self.query;
        if ops.is_empty() {
            return;
        }
        let raw = req.head.query(req.buf);
        let pairs = req.state.query.pairs_mut(raw);
        for name in &ops.remove {
            pairs.retain(|(k, _)| k != name);
        }
        for p in &ops.rename {
            let Some(new) = r.text(&p.value) else {
                continue;
            };
            if new == p.name || !pairs.iter().any(|(k, _)| *k == p.name) {
                continue;
            }
            pairs.retain(|(k, _)| *k != new);
            for (k, _) in pairs.iter_mut().filter(|(k, _)| *k == p.name) {
                k.clone_from(&new);
            }
        }
        for p in &ops.replace {
            let Some(v) = r.text(&p.value) else {
                continue;
            };
            replace_first(pairs, &p.name, Some(v));
        }
        for p in &ops.add {
            if pairs.iter().any(|(k, _)| *k == p.name) {
                continue;
            }
            if let Some(v) = r.text(&p.value) {
                pairs.push((p.name.clone(), Some(v)));
            }
        }
        for p in &ops.append {
            if let Some(v) = r.text(&p.value) {
                pairs.push((p.name.clone(), Some(v)));
            }
        }
    }
}

/// A header value with control characters (tab aside) percent-escaped, as OpenResty does in
/// `ngx.req.set_header`: a template fed from the query string cannot start a new header line.
fn header_safe(v: &[u8]) -> Cow<'_, [u8]> {
    let unsafe_byte = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    if !v.iter().copied().any(unsafe_byte) {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len() + 8);
    for &b in v {
        if unsafe_byte(b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// Kong's `t[name] = value` on an argument table, when `name` is present: one value left,
/// where the first one was. Returns false when `name` is absent.
fn replace_first<V>(pairs: &mut Vec<(String, V)>, name: &str, value: V) -> bool {
    let Some(first) = pairs.iter().position(|(k, _)| k == name) else {
        return false;
    };
    pairs[first].1 = value;
    let mut i = 0;
    pairs.retain(|(k, _)| {
        i += 1;
        i - 1 == first || k != name
    });
    true
}
