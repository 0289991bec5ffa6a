//! The JSON body operations, with Kong's value conversion (`json_value`) done once at load.

use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::request_body::append_json;

/// A `json_types` entry: how to convert the value at the same index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum JsonType {
    /// The text as a JSON string (the default).
    String,
    /// Lua's `tonumber`; an entry that is not a number is skipped.
    Number,
    /// `true` for the text `true`, `false` for anything else.
    Boolean,
}

/// The compiled JSON operations. Values are `None` where Kong's conversion yields nil (a
/// `number` that does not parse): the entry does nothing.
pub(super) type JsonOps =
    crate::transform_ops::Ops<(String, Option<String>), (String, Option<Value>)>;

impl JsonOps {
    /// Transforms a JSON object body; `None` when the body is not a JSON object (left as it
    /// is, Kong logs "failed parsing json body").
    pub(super) fn transform(&self, body: &[u8]) -> Option<Vec<u8>> {
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        self.apply(&mut map);
        serde_json::to_vec(&Value::Object(map)).ok()
    }

    fn apply(&self, map: &mut Map<String, Value>) {
        for name in &self.remove {
            map.shift_remove(name);
        }
        for (old, new) in &self.rename {
            let (Some(new), Some(v)) = (new, map.get(old).cloned()) else {
                continue;
            };
            // Kong sets the new name, then clears the old one: renaming a member onto its
            // own name removes it.
            map.insert(new.clone(), v);
            map.shift_remove(old);
        }
        for (name, v) in &self.replace {
            if let (Some(v), true) = (v, truthy(map.get(name))) {
                map.insert(name.clone(), v.clone());
            }
        }
        for (name, v) in &self.add {
            if let (Some(v), false) = (v, truthy(map.get(name))) {
                map.insert(name.clone(), v.clone());
            }
        }
        for (name, v) in &self.append {
            if let Some(v) = v {
                append_json(map, name, v.clone());
            }
        }
    }
}

/// Lua truthiness of a member: only `false` (and absence) is falsy; `null` is truthy.
fn truthy(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Bool(false)))
}

/// Converts `name:value` entries with their `json_types` (by index; missing ones are strings).
pub(super) fn values(
    pairs: Vec<(String, Option<String>)>,
    types: &[JsonType],
) -> Vec<(String, Option<Value>)> {
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, (name, text))| {
            let ty = types.get(i).copied().unwrap_or(JsonType::String);
            (name, json_value(text.as_deref(), ty))
        })
        .collect()
}

/// Kong's `json_value`: the text goes through `cjson.encode`, loses its surrounding quotes,
/// then `\"` and `\/` are turned back into `"` and `/`, so other escapes (a backslash, control
/// characters) stay doubled. An empty value is Lua `nil`, which encodes as `null`.
pub(super) fn json_value(text: Option<&str>, ty: JsonType) -> Option<Value> {
    let v = match text {
        None => "null".to_owned(),
        Some(t) => cjson_escape(t).replace("\\\"", "\"").replace("\\/", "/"),
    };
    match ty {
        JsonType::String => Some(Value::String(v)),
        JsonType::Boolean => Some(Value::Bool(v == "true")),
        JsonType::Number => lua_tonumber(&v).map(Value::Number),
    }
}

/// The inside of `cjson.encode(s)` for a string.
fn cjson_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Lua's `tonumber` as a JSON number: integral values become JSON integers; infinite ones
/// have no JSON form.
fn lua_tonumber(s: &str) -> Option<Number> {
    let value = crate::lua_number::tonumber(s).filter(|v| v.is_finite())?;
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        Some(Number::from(value as i64))
    } else {
        Number::from_f64(value)
    }
}

/// Kong's `is_json_body`: one of the comma-separated media types is `application/json` or
/// `application/<anything>+json` (parameters allowed, and must be well formed).
pub(super) fn is_json_body(content_type: &[u8]) -> bool {
    content_type.split(|&b| b == b',').any(|part| {
        let part = part.trim_ascii();
        match parse_media_type(part) {
            Some((ty, sub)) => {
                ty.eq_ignore_ascii_case(b"application")
                    && (sub.eq_ignore_ascii_case(b"json")
                        || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json")))
            }
            None => false,
        }
    })
}

/// RFC 2045 `token`: US-ASCII except controls, space and separators.
fn is_token(b: u8) -> bool {
    b > 32 && b < 127 && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// `type "/" subtype *( *WSP ";" *WSP attribute "=" value )`, as Kong's LPeg grammar.
fn parse_media_type(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let token_end = |from: usize| from + s[from..].iter().take_while(|&&b| is_token(b)).count();
    let t_end = token_end(0);
    if t_end == 0 || s.get(t_end) != Some(&b'/') {
        return None;
    }
    let sub_end = token_end(t_end + 1);
    if sub_end == t_end + 1 {
        return None;
    }
    let mut i = sub_end;
    let skip_ws = |mut i: usize| {
        while matches!(s.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    while i < s.len() {
        i = skip_ws(i);
        if s.get(i) != Some(&b';') {
            return None;
        }
        i = skip_ws(i + 1);
        let attr_end = token_end(i);
        if attr_end == i || s.get(attr_end) != Some(&b'=') {
            return None;
        }
        i = attr_end + 1;
        if s.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match s.get(i) {
                    None => return None,
                    Some(b'"') => break,
                    Some(b'\\') if i + 1 < s.len() => i += 2,
                    Some(&b) if b < 32 || b == 127 => return None,
                    Some(_) => i += 1,
                }
            }
            i += 1;
        } else {
            let v_end = token_end(i);
            if v_end == i {
                return None;
            }
            i = v_end;
        }
    }
    Some((&s[..t_end], &s[t_end + 1..sub_end]))
}
