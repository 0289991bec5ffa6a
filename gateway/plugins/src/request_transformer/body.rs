//! Body changes: form-urlencoded and JSON arguments (multipart parts in `multipart.rs`), and
//! the form arguments a switch to GET moves into the query.
//!
//! Kong works on a Lua table of arguments, so its rules are about presence and truthiness:
//! remove, rename and replace need a non-empty body; replace and rename act on a present,
//! truthy value (a JSON `false` counts as absent, `null` as present); add fills an absent (or
//! `false`) name; append turns a value into an array. A body that is not valid JSON is left
//! as it is.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use gangway_pipeline::edits::uri_arg_pieces;

use super::env::{Rendered, Request, decode};
use super::{Ops, multipart};
use crate::request_body::append_json;

/// The media types request-transformer handles, by Kong's substring test on Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Json,
    Multipart,
    Form,
}

/// Kong's `get_content_type`: a case-insensitive substring match, JSON first.
pub(super) fn kind(content_type: Option<&[u8]>) -> Option<Kind> {
    let ct = content_type?.to_ascii_lowercase();
    let has = |needle: &[u8]| ct.windows(needle.len()).any(|w| w == needle);
    if has(b"application/json") {
        Some(Kind::Json)
    } else if has(b"multipart/form-data") {
        Some(Kind::Multipart)
    } else if has(b"application/x-www-form-urlencoded") {
        Some(Kind::Form)
    } else {
        None
    }
}

/// A form argument: a name and its value, `None` for a bare `name` (Lua `true`).
pub(super) type FormArg = (String, Option<String>);

/// `ngx.decode_args` as Kong runs it: the first `lua_max_uri_args` pieces, `+` and `%XX`
/// decoded, empty names skipped.
pub(super) fn parse_form(body: &[u8], max: u16) -> Vec<FormArg> {
    let text = |b: &[u8]| String::from_utf8_lossy(&decode(b)).into_owned();
    uri_arg_pieces(body, max)
        .map(|(k, v)| (text(k), v.map(text)))
        .collect()
}

/// What `ngx.encode_args` leaves unescaped: letters, digits and `-._~`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `ngx.encode_args`: `name=value` joined by `&`, a bare name for a flag.
pub(super) fn encode_form(args: &[FormArg]) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in args {
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(utf8_percent_encode(k, COMPONENT));
        if let Some(v) = v {
            out.push('=');
            out.extend(utf8_percent_encode(v, COMPONENT));
        }
    }
    out.into_bytes()
}

/// A switch to GET, HEAD or TRACE: the arguments of a form-encoded body join the query (after
/// the query's own values of the same name). The body itself is left in place, as in Kong.
pub(super) fn form_to_query(req: &mut Request<'_>) {
    if kind(req.header("content-type")) != Some(Kind::Form) {
        return;
    }
    let body = req.state.body.as_deref().unwrap_or_default();
    let args = parse_form(body, req.state.query.max_args());
    if args.is_empty() {
        return;
    }
    let raw = req.head.query(req.buf);
    let pairs = req.state.query.pairs_mut(raw);
    pairs.extend(args);
}

/// Applies the body operations when the Content-Type (after this plugin's header changes)
/// is one Kong handles.
pub(super) fn transform(ops: &Ops, req: &mut Request<'_>, r: &Rendered) {
    let changed = {
        let body = req.state.body.as_deref().unwrap_or_default();
        let content_type = req.header("content-type");
        match kind(content_type) {
            Some(Kind::Form) => form(ops, body, req.state.query.max_args(), r),
            Some(Kind::Json) => json(ops, body, r),
            Some(Kind::Multipart) => {
                multipart::transform(ops, content_type.unwrap_or_default(), body, r)
            }
            None => None,
        }
    };
    if let Some(new) = changed {
        req.state.body = Some(new);
    }
}

/// The form-urlencoded transformation of the body's first `max_args` arguments; `None` when
/// the body stays as it is.
pub(super) fn form(ops: &Ops, body: &[u8], max_args: u16, r: &Rendered) -> Option<Vec<u8>> {
    let mut args = parse_form(body, max_args);
    let has_body = !body.is_empty();
    let mut changed = false;
    if has_body {
        for name in &ops.remove {
            args.retain(|(k, _)| k != name);
            changed = true;
        }
        for p in &ops.rename {
            let Some(new) = r.text(&p.value) else {
                continue;
            };
            if new == p.name || !args.iter().any(|(k, _)| *k == p.name) {
                continue;
            }
            args.retain(|(k, _)| *k != new);
            for (k, _) in args.iter_mut().filter(|(k, _)| *k == p.name) {
                k.clone_from(&new);
            }
            changed = true;
        }
        for p in &ops.replace {
            let Some(v) = r.text(&p.value) else {
                continue;
            };
            changed |= super::replace_first(&mut args, &p.name, Some(v));
        }
    }
    for p in &ops.add {
        if args.iter().any(|(k, _)| *k == p.name) {
            continue;
        }
        if let Some(v) = r.text(&p.value) {
            args.push((p.name.clone(), Some(v)));
            changed = true;
        }
    }
    for p in &ops.append {
        let Some(v) = r.text(&p.value) else {
            continue;
        };
        // Appending to a lone flag (Lua `true`) replaces it: Kong's append_value starts a
        // new array for anything that is not a string or a table.
        let mut same = args.iter().filter(|(k, _)| *k == p.name);
        if let (Some((_, None)), None) = (same.next(), same.next()) {
            args.retain(|(k, _)| *k != p.name);
        }
        args.push((p.name.clone(), Some(v)));
        changed = true;
    }
    changed.then(|| encode_form(&args))
}

/// Lua truthiness of a decoded JSON value: only `false` (and absence) is falsy.
fn truthy(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Bool(false)))
}

/// The JSON transformation; `None` when the body stays as it is (including invalid JSON and
/// JSON that is not an object, which Kong cannot index by name).
pub(super) fn json(ops: &Ops, body: &[u8], r: &Rendered) -> Option<Vec<u8>> {
    let has_body = !body.is_empty();
    let mut map = if has_body {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            _ => return None,
        }
    } else {
        Map::new()
    };
    let mut changed = false;
    if has_body {
        for name in &ops.remove {
            map.shift_remove(name);
            changed = true;
        }
        for p in &ops.rename {
            let Some(new) = r.text(&p.value) else {
                continue;
            };
            if new == p.name || !truthy(map.get(&p.name)) {
                continue;
            }
            if let Some(v) = map.shift_remove(&p.name) {
                map.insert(new, v);
                changed = true;
            }
        }
        for p in &ops.replace {
            if !truthy(map.get(&p.name)) {
                continue;
            }
            if let Some(v) = r.text(&p.value) {
                map.insert(p.name.clone(), Value::String(v));
                changed = true;
            }
        }
    }
    for p in &ops.add {
        if truthy(map.get(&p.name)) {
            continue;
        }
        if let Some(v) = r.text(&p.value) {
            map.insert(p.name.clone(), Value::String(v));
            changed = true;
        }
    }
    for p in &ops.append {
        let Some(v) = r.text(&p.value) else {
            continue;
        };
        append_json(&mut map, &p.name, Value::String(v));
        changed = true;
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&Value::Object(map)).ok()
}
