//! The value templates of Kong's request-transformer (kong-reference.md 4.2), without Lua.
//!
//! Kong renders every configured value with penlight's `pl.template` (`#` lines disabled):
//! each `$` immediately followed by a balanced `( … )` (Lua's `%b()`, which counts every
//! parenthesis, even inside quotes) is a Lua expression, and its value is written as
//! `tostring(expr or '')`. Everything else, including a `$(` whose parenthesis never closes,
//! is literal text. Penlight has no escape character: Kong's own spec writes a literal
//! `$(…)` as the string expression `$('$(…)')`.
//!
//! gangway compiles the same syntax once, at config load, and accepts only what the
//! request-transformer actually needs: `headers.x_foo`, `headers["x-foo"]`,
//! `query_params.x`, `query_params["x"]`, `uri_captures.name`, `uri_captures['name']`,
//! `uri_captures[1]`, string literals, and `or` between them (Kong's spec uses
//! `uri_captures.user1 or 'default1'`). Anything else is a config error, where Kong would
//! run the Lua.
//!
//! Rendering matches Kong: a missing lookup renders as the empty string (the value is still
//! set), and only an empty template is "no value" (`param_value` returns nil for `""`).

mod expr;

use std::borrow::Cow;

use expr::{Expr, Reject};

/// One `headers`, `query_params` or `uri_captures` lookup inside `$( )`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A request header, by name in lowercase with `_` turned into `-`, as Kong's
    /// `ngx.req.get_headers()` metatable does for `headers.x_foo` and `headers["X_Foo"]`.
    Header(String),
    /// A query argument, by its exact (decoded, case-sensitive) name.
    Query(String),
    /// A named regex capture of the matched route path (`uri_captures.name`).
    UriCaptureName(String),
    /// A numbered capture (`uri_captures[n]`); 0 is the whole match.
    UriCaptureIndex(usize),
}

/// What a template reads from the request; implemented by the plugin over its request state.
pub trait TemplateEnv {
    /// First value of request header `lower_name` (lowercase, `-` not `_`); `None` when
    /// absent. Kong renders a repeated header as Lua's `table: 0x…`; gangway renders the first
    /// value. Kong reads the headers once, at the first template that uses them.
    fn header(&self, lower_name: &str) -> Option<&[u8]>;
    /// Decoded value of the first query argument called `name`; `None` when absent. Kong's
    /// value for an argument without `=` (`?flag`) is Lua `true`, which renders as `true`, so
    /// return `b"true"` for it; `?flag=` is `Some(b"")`.
    fn query_param(&self, name: &str) -> Option<Cow<'_, [u8]>>;
    /// The named capture `name` of the route's path regex; `None` when the route has no
    /// captures or the group did not take part in the match.
    fn uri_capture_named(&self, name: &str) -> Option<&str>;
    /// Capture `index` (0 is the whole match; named groups are numbered too, as in PCRE);
    /// `None` when there is no such capture or it did not take part in the match.
    fn uri_capture_index(&self, index: usize) -> Option<&str>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Expr(Expr),
}

/// A compiled value template: literal text and lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Adjacent literals are merged; a lookup-free template is at most one `Literal`.
    parts: Vec<Part>,
    /// The source was `""`, which Kong treats as no value at all.
    empty: bool,
}

const SUPPORTED: &str =
    "gangway supports headers, query_params and uri_captures lookups only (no Lua)";

impl Template {
    /// Compiles `src`; the error is the message for the config error. Never fails on a value
    /// without `$(`.
    pub fn compile(src: &str) -> Result<Template, String> {
        let mut t = Template {
            parts: Vec::new(),
            empty: src.is_empty(),
        };
        let mut lit = String::new();
        if !src.contains("$(") {
            lit.push_str(src);
            t.finish(lit);
            return Ok(t);
        }
        let close = matching_parens(src.as_bytes());
        let (mut from, mut copied) = (0, 0);
        while let Some(off) = src[from..].find("$(") {
            let dollar = from + off;
            let Some(end) = close[dollar + 1] else {
                // `%b()` fails here: this `$` is text, and a later `$(` may still match.
                from = dollar + 1;
                continue;
            };
            lit.push_str(&src[copied..dollar]);
            let body = &src[dollar + 2..end];
            match expr::parse(body) {
                Ok(e) if e.lookups.is_empty() => lit.push_str(e.fallback.as_deref().unwrap_or("")),
                Ok(e) => {
                    if !lit.is_empty() {
                        t.parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    t.parts.push(Part::Expr(e));
                }
                Err(r) => return Err(message(body, r)),
            }
            from = end + 1;
            copied = from;
        }
        lit.push_str(&src[copied..]);
        t.finish(lit);
        Ok(t)
    }

    fn finish(&mut self, lit: String) {
        if !lit.is_empty() {
            self.parts.push(Part::Literal(lit));
        }
    }

    /// The text this template always renders to, when it reads nothing from the request
    /// (`$('…')` parts are folded in). `None` when it has lookups, and for the empty template,
    /// which renders no value.
    pub fn is_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            _ if self.empty => None,
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The lookups the template performs, in order, so a caller can tell which request data
    /// it needs.
    #[cfg(test)]
    pub fn lookups(&self) -> impl Iterator<Item = &Lookup> {
        self.parts.iter().flat_map(|p| match p {
            Part::Literal(_) => [].iter(),
            Part::Expr(e) => e.lookups.iter(),
        })
    }

    /// Renders into `out`; returns false when Kong would skip the value, which is only for
    /// the empty template. A missing lookup renders as `""` (or the `or` literal).
    pub fn render(&self, env: &dyn TemplateEnv, out: &mut Vec<u8>) -> bool {
        if self.empty {
            return false;
        }
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Expr(e) => {
                    if !e.lookups.iter().any(|l| lookup_into(l, env, out))
                        && let Some(f) = &e.fallback
                    {
                        out.extend_from_slice(f.as_bytes());
                    }
                }
            }
        }
        true
    }
}

/// Appends the value of `l` and returns true when it exists.
fn lookup_into(l: &Lookup, env: &dyn TemplateEnv, out: &mut Vec<u8>) -> bool {
    let bytes: Option<Cow<'_, [u8]>> = match l {
        Lookup::Header(n) => env.header(n).map(Cow::Borrowed),
        Lookup::Query(n) => env.query_param(n),
        Lookup::UriCaptureName(n) => env
            .uri_capture_named(n)
            .map(|s| Cow::Borrowed(s.as_bytes())),
        Lookup::UriCaptureIndex(i) => env
            .uri_capture_index(*i)
            .map(|s| Cow::Borrowed(s.as_bytes())),
    };
    match bytes {
        Some(b) => {
            out.extend_from_slice(&b);
            true
        }
        None => false,
    }
}

fn message(body: &str, r: Reject) -> String {
    let body = body.trim();
    match r {
        Reject::Empty => format!("empty template expression '$({body})': {SUPPORTED}"),
        Reject::Unsupported => format!("unsupported template expression '{body}': {SUPPORTED}"),
        Reject::Keyword(k) => format!(
            "invalid template expression '{body}': '{k}' is a Lua keyword, write [\"{k}\"] instead of .{k}"
        ),
        Reject::BadString(why) => {
            format!("invalid string literal in template expression '{body}': {why}")
        }
    }
}

/// For each `(`, the index of the `)` that Lua's `%b()` would pair it with, if any.
fn matching_parens(b: &[u8]) -> Vec<Option<usize>> {
    let mut close = vec![None; b.len()];
    let mut open = Vec::new();
    for (i, c) in b.iter().enumerate() {
        match c {
            b'(' => open.push(i),
            // A `)` with nothing open cannot end a `%b()` that starts later, so it is ignored.
            b')' => {
                if let Some(o) = open.pop() {
                    close[o] = Some(i);
                }
            }
            _ => {}
        }
    }
    close
}

#[cfg(test)]
mod tests;
