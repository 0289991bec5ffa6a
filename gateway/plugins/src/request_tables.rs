//! The request as Kong's PDK hands it to a plugin in Lua tables (`kong.request.get_headers()`,
//! `kong.request.get_query()`), as JSON objects: a value per name, an array for repeats, Lua's
//! `true` for an argument without `=`. Earlier plugins' edits are applied.

use serde_json::{Map, Value};

use gangway_pipeline::context::AccessCtx;

/// Adds `value` under `name`; a second value turns the member into an array.
pub fn push_or_array(map: &mut Map<String, Value>, name: &str, value: Value) {
    match map.get_mut(name) {
        Some(Value::Array(list)) => list.push(value),
        Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
        None => {
            map.insert(name.to_owned(), value);
        }
    }
}

/// The request's headers as `ngx.req.get_headers()` lists them: the first
/// `lua_max_req_headers`, names lower-cased.
pub fn header_pairs(ctx: &AccessCtx<'_>) -> Vec<(String, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    ctx.header_table()
        .map(|(n, v)| (text(n).to_ascii_lowercase(), text(v)))
        .collect()
}

/// Kong's `kong.request.get_headers()`.
pub fn headers(ctx: &AccessCtx<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in header_pairs(ctx) {
        push_or_array(&mut out, &name, value.into());
    }
    out
}

/// Kong's `kong.request.get_query()`: the arguments plugins read
/// ([`gangway_pipeline::QueryEdits::args`], at most `lua_max_uri_args`).
pub fn query(ctx: &AccessCtx<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in ctx.state.query.args(ctx.raw_query()) {
        let value = value.map_or(Value::Bool(true), |v| Value::String(v.into_owned()));
        push_or_array(&mut out, &name, value);
    }
    out
}
