//! The cache key, computed as Kong's `proxy-cache/cache_key.lua` does so that `X-Cache-Key`
//! is the same on both: the lower-case hex SHA-256 of
//! `prefix|method|uri|params|headers`, where
//! - `prefix` is `consumer_id:route_id`, `route_id`, or `default`;
//! - `uri` is nginx's `$request` (the whole request line) cut at the first `?`: so
//!   `GET /a?x=1 HTTP/1.1` gives `GET /a`, but `GET /a HTTP/1.1` stays whole;
//! - `params` is `name=value` pieces joined by `:`: every query argument, sorted by name,
//!   when `vary_query_params` is empty, else the listed ones in the listed order; a repeated
//!   argument joins its sorted values with `,`, and one without `=` is its bare name;
//! - `headers` is built the same way from `vary_headers` only (empty when none are listed).

use std::borrow::Cow;

use gangway_pipeline::edits::QueryItem;

/// A query argument's value as `ngx.req.get_uri_args` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `?flag` (no `=`): Lua's `true`.
    Flag,
    /// `?a=1`.
    One(String),
    /// A repeated argument, in request order.
    Many(Vec<String>),
}

impl Arg {
    fn push(&mut self, value: Option<String>) {
        // Lua cannot sort `true` among strings; an empty string stands in for it.
        let value = value.unwrap_or_default();
        match self {
            Arg::Many(list) => list.push(value),
            Arg::One(first) => *self = Arg::Many(vec![std::mem::take(first), value]),
            Arg::Flag => *self = Arg::Many(vec![String::new(), value]),
        }
    }
}

/// Decoded query arguments in first-seen order of their names.
pub type Args = Vec<(String, Arg)>;

/// The arguments a plugin reads ([`gangway_pipeline::QueryEdits::args`]), grouped by name
/// as Kong's argument table holds them.
pub fn args<'a>(query: impl IntoIterator<Item = QueryItem<'a>>) -> Args {
    let mut args = Args::new();
    for (name, value) in query {
        let value = value.map(Cow::into_owned);
        if let Some((_, arg)) = args.iter_mut().find(|(n, _)| *n == name) {
            arg.push(value);
        } else {
            let arg = match value {
                Some(v) => Arg::One(v),
                None => Arg::Flag,
            };
            args.push((name.into_owned(), arg));
        }
    }
    args
}

/// Appends Kong's `generate_key_from` for one field: `name`, `name=value` or
/// `name=v1,v2` (values sorted).
fn push_field(out: &mut Vec<u8>, first: &mut bool, name: &[u8], arg: &Arg) {
    if !*first {
        out.push(b':');
    }
    *first = false;
    out.extend_from_slice(name);
    match arg {
        Arg::Flag => {}
        Arg::One(v) => {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        Arg::Many(values) => {
            let mut sorted: Vec<&str> = values.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            out.push(b'=');
            out.extend_from_slice(sorted.join(",").as_bytes());
        }
    }
}

/// Kong's `params_key`: all arguments sorted by name when `vary` is empty, else the listed
/// ones present in the request, in the listed order.
pub fn params_key(args: &Args, vary: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = true;
    if vary.is_empty() {
        let mut sorted: Vec<&(String, Arg)> = args.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, arg) in sorted {
            push_field(&mut out, &mut first, name.as_bytes(), arg);
        }
    } else {
        for name in vary {
            if let Some((_, arg)) = args.iter().find(|(n, _)| n == name) {
                push_field(&mut out, &mut first, name.as_bytes(), arg);
            }
        }
    }
    out
}

/// Kong's `headers_key`: for each name of `vary` (as configured), the request's values of
/// that header. `values_of` gets the name normalized as Kong's header table looks it up
/// (lower case, `_` read as `-`).
pub fn headers_key(vary: &[String], mut values_of: impl FnMut(&str) -> Vec<String>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = true;
    for name in vary {
        let lookup = name.to_ascii_lowercase().replace('_', "-");
        let values = values_of(&lookup);
        let arg = match values.len() {
            0 => continue,
            1 => Arg::One(values.into_iter().next().unwrap_or_default()),
            _ => Arg::Many(values),
        };
        push_field(&mut out, &mut first, name.as_bytes(), &arg);
    }
    out
}

/// Kong's `prefix_uuid`: `consumer:route` on an authenticated route, `route` on others,
/// `default` without a route.
pub fn prefix(consumer: Option<&str>, route: Option<&str>) -> String {
    match (consumer, route) {
        (Some(c), Some(r)) => format!("{c}:{r}"),
        (None, Some(r)) => r.to_owned(),
        _ => "default".to_owned(),
    }
}

/// nginx's `$request` cut at the first `?` (`ignore_uri_case` lower-cases it).
pub fn request_uri(method: &[u8], target: &[u8], version: &str, ignore_case: bool) -> Vec<u8> {
    let mut line = Vec::with_capacity(method.len() + target.len() + version.len() + 2);
    line.extend_from_slice(method);
    line.push(b' ');
    match target.iter().position(|&b| b == b'?') {
        Some(q) => line.extend_from_slice(&target[..q]),
        None => {
            line.extend_from_slice(target);
            line.push(b' ');
            line.extend_from_slice(version.as_bytes());
        }
    }
    if ignore_case {
        line.make_ascii_lowercase();
    }
    line
}

/// The key: SHA-256 hex of `prefix|method|uri|params|headers`.
pub fn build(prefix: &str, method: &[u8], uri: &[u8], params: &[u8], headers: &[u8]) -> String {
    let mut input = Vec::with_capacity(
        prefix.len() + method.len() + uri.len() + params.len() + headers.len() + 4,
    );
    for (i, part) in [prefix.as_bytes(), method, uri, params, headers]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            input.push(b'|');
        }
        input.extend_from_slice(part);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}
