//! The request as the transformer reads it, and the template environment over it.

use std::borrow::Cow;
use std::ops::Range;

use super::Val;
use crate::template::{Template, TemplateEnv};
use gangway_http::RequestHead;
use gangway_pipeline::RequestState;
use gangway_router::MatchScratch;

/// The parts of the access context the transformer uses (no snapshot, so unit tests can
/// build one from a parsed head).
pub(super) struct Request<'a> {
    /// The parsed client head.
    pub(super) head: &'a RequestHead,
    /// The bytes `head` points into.
    pub(super) buf: &'a [u8],
    /// The router's captures (`uri_captures`).
    pub(super) captures: &'a MatchScratch,
    /// Plugin state: the edits this plugin adds to.
    pub(super) state: &'a mut RequestState,
}

impl Request<'_> {
    /// First value of header `lower`, after every edit so far.
    pub(super) fn header(&self, lower: &str) -> Option<&[u8]> {
        first_header(self.head, self.buf, self.state, lower)
    }

    /// True when header `lower` is present after every edit so far.
    pub(super) fn has_header(&self, lower: &str) -> bool {
        self.header(lower).is_some()
    }

    /// Every value of header `lower`, after every edit so far.
    pub(super) fn header_values(&self, lower: &str) -> Vec<Vec<u8>> {
        self.state
            .headers
            .values(lower, self.head.header_values(self.buf, lower))
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// The lower-cased names in Kong's `get_headers()` table (the first
    /// `lua_max_req_headers` after every edit so far); `None` when every header is in it.
    pub(super) fn table_names(&self) -> Option<Vec<String>> {
        let all = self.head.headers().len() + self.state.headers.added().count();
        if all <= usize::from(self.state.limits.req_headers) {
            return None;
        }
        let table = self.state.header_table(self.head, self.buf);
        Some(
            table
                .map(|(n, _)| String::from_utf8_lossy(n).to_ascii_lowercase())
                .collect(),
        )
    }
}

/// First value of a header through the edit overlay, borrowed from the head or the edits only
/// (not from `lower`).
fn first_header<'s>(
    head: &RequestHead,
    buf: &'s [u8],
    state: &'s RequestState,
    lower: &str,
) -> Option<&'s [u8]> {
    let edits = &state.headers;
    if !edits.removes_original(lower.as_bytes()) {
        if let Some(v) = head.header(buf, lower) {
            return Some(v);
        }
    }
    edits
        .added()
        .find(|(n, _)| n.eq_ignore_ascii_case(lower.as_bytes()))
        .map(|(_, v)| v)
}

/// The values of header `lower` among the first `lua_max_req_headers` after the edits,
/// borrowed from the head or the edits only (not from `lower`), as [`TemplateEnv::header`]
/// needs.
fn table_values<'s, 'n>(
    head: &'s RequestHead,
    buf: &'s [u8],
    state: &'s RequestState,
    lower: &'n str,
) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n> {
    state
        .header_table(head, buf)
        .filter(move |(n, _)| n.eq_ignore_ascii_case(lower.as_bytes()))
        .map(|(_, v)| v)
}

struct Env<'r> {
    head: &'r RequestHead,
    buf: &'r [u8],
    captures: &'r MatchScratch,
    state: &'r RequestState,
}

impl TemplateEnv for Env<'_> {
    fn header(&self, lower_name: &str) -> Option<&[u8]> {
        table_values(self.head, self.buf, self.state, lower_name).next()
    }

    fn query_param(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        // `?flag` is Lua `true` in Kong's argument table, which renders as "true".
        const FLAG: &[u8] = b"true";
        let query = &self.state.query;
        if !query.is_untouched() {
            return query
                .args(None)
                .find(|(k, _)| k == name)
                .map(|(_, v)| match v {
                    Some(Cow::Borrowed(v)) => Cow::Borrowed(v.as_bytes()),
                    Some(Cow::Owned(v)) => Cow::Owned(v.into_bytes()),
                    None => Cow::Borrowed(FLAG),
                });
        }
        // Decoded as bytes, not text: a Lua string keeps what `%E9` decodes to.
        let raw = self.head.query(self.buf)?;
        gangway_pipeline::edits::uri_arg_pieces(raw, query.max_args())
            .find(|(k, _)| decode(k) == name.as_bytes())
            .map(|(_, v)| v.map_or(Cow::Borrowed(FLAG), decode))
    }

    fn uri_capture_named(&self, name: &str) -> Option<&str> {
        self.captures.named_capture(name)
    }

    fn uri_capture_index(&self, index: usize) -> Option<&str> {
        self.captures.capture(index)
    }
}

/// Decodes one form-encoded component (`+` is a space).
pub(super) fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'+' || b == b'%') {
        return Cow::Borrowed(raw);
    }
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Cow::Owned(percent_encoding::percent_decode(&spaced).collect())
}

/// The rendered values of one request, indexed like the plugin's templates.
pub(super) struct Rendered {
    arena: Vec<u8>,
    spans: Vec<Option<Range<usize>>>,
}

/// Renders every template against the request before anything changes.
pub(super) fn render(templates: &[Template], req: &Request<'_>) -> Rendered {
    let mut out = Rendered {
        arena: Vec::new(),
        spans: Vec::with_capacity(templates.len()),
    };
    if templates.is_empty() {
        return out;
    }
    let env = Env {
        head: req.head,
        buf: req.buf,
        captures: req.captures,
        state: req.state,
    };
    for t in templates {
        let start = out.arena.len();
        let rendered = t.render(&env, &mut out.arena);
        let span = rendered.then_some(start..out.arena.len());
        out.spans.push(span);
    }
    out
}

impl Rendered {
    /// Nothing rendered (a plugin without templates).
    #[cfg(test)]
    pub(super) fn empty() -> Rendered {
        Rendered {
            arena: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// The bytes of a configured value; `None` for no value.
    pub(super) fn get<'s>(&'s self, v: &'s Val) -> Option<&'s [u8]> {
        match v {
            Val::Text(s) => Some(s.as_bytes()),
            Val::Template(i) => self
                .spans
                .get(*i)
                .cloned()
                .flatten()
                .map(|r| &self.arena[r]),
            Val::Absent => None,
        }
    }

    /// A configured value as text (query and body values are strings in Kong).
    pub(super) fn text(&self, v: &Val) -> Option<String> {
        self.get(v).map(|b| String::from_utf8_lossy(b).into_owned())
    }
}
