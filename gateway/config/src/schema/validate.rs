//! The engine: one pass that does what Kong's `process_auto_fields(input, "insert")` followed by
//! `Schema:validate` does, collecting errors at paths relative to the validated value.

use serde_json::{Map, Value};

use super::{Field, FieldType, Rules, Schema, check};
use crate::ConfigErrors;

/// Kong's `REQUIRED`.
pub(super) const REQUIRED: &str = "required field missing";
/// Kong's `UNKNOWN`.
const UNKNOWN: &str = "unknown field";

/// Errors of one validation, at paths relative to its root (`config.key_names[0]`).
#[derive(Debug, Default)]
pub(super) struct Errs(Vec<(String, String)>);

impl Errs {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    /// Replaces whatever was reported at exactly `path`, as Kong's `set_field(errors, ...)` does.
    pub(super) fn set(&mut self, path: &str, message: impl Into<String>) {
        self.0.retain(|(p, _)| p != path);
        self.push(path, message);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// True when something was reported at `path` or inside it.
    pub(super) fn has_under(&self, path: &str) -> bool {
        self.0.iter().any(|(p, _)| {
            p.strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }
}

/// `base.key`; `key` alone at the root, `base` alone for an empty key, `base[i]` for an index.
pub(crate) fn join(base: &str, key: &str) -> String {
    if key.is_empty() {
        base.to_string()
    } else if base.is_empty() {
        key.to_string()
    } else if key.starts_with('[') {
        format!("{base}{key}")
    } else {
        format!("{base}.{key}")
    }
}

/// [`Schema::validate`]: the config, then the plugin-level checks over `{"config": ...}`.
pub(super) fn plugin_config(
    schema: &Schema,
    config: Option<&Value>,
    path: &str,
    errors: &mut ConfigErrors,
) -> Value {
    let mut errs = Errs::default();
    let required = schema.config.is_required(true);
    let filled =
        process(&schema.config, config, "config", required, true, &mut errs).unwrap_or(Value::Null);

    let mut entity = Map::new();
    entity.insert("config".into(), filled);
    let lookup = |name: &str| match name.strip_prefix("config.") {
        Some(rest) => schema.config.find(rest),
        None => (name == "config").then_some(&schema.config),
    };
    check::run_all(&schema.entity_checks, &entity, "", &lookup, &mut errs);

    let entity_path = if path == "config" {
        ""
    } else {
        path.strip_suffix(".config").unwrap_or(path)
    };
    for (rel, message) in errs.0 {
        let at = match rel.strip_prefix("config") {
            Some(rest) if rest.is_empty() || rest.starts_with('.') => {
                join(path, rest.strip_prefix('.').unwrap_or(rest))
            }
            _ => join(entity_path, &rel),
        };
        errors.push(at, message);
    }
    entity.remove("config").unwrap_or(Value::Null)
}

/// Validates a field outside any record (no `config` chain), reporting at `path`.
pub(super) fn standalone(
    field: &Field,
    value: Option<&Value>,
    path: &str,
    errors: &mut ConfigErrors,
) -> Value {
    let mut errs = Errs::default();
    let filled = process(field, value, "", field.is_required(false), false, &mut errs);
    for (rel, message) in errs.0 {
        errors.push(join(path, &rel), message);
    }
    filled.unwrap_or(Value::Null)
}

/// Fills and validates one value (`None` = absent). Returns the filled value, or `None` when
/// it stays absent (a required field without a default). `chain` is true while the field is
/// reached from `config` through records only.
pub(super) fn process(
    field: &Field,
    value: Option<&Value>,
    path: &str,
    required: bool,
    chain: bool,
    errs: &mut Errs,
) -> Option<Value> {
    match value {
        None => {
            if let Some(default) = &field.default {
                return Some(present(field, default, path, chain, errs));
            }
            if !required {
                return Some(Value::Null);
            }
            if field.kind == FieldType::Record {
                // Kong expands a missing required record to obtain its nested defaults.
                let empty = Value::Object(Map::new());
                return Some(present(field, &empty, path, chain, errs));
            }
            errs.push(path, REQUIRED);
            None
        }
        Some(Value::Null) => {
            if let Some(message) = null_error(&field.rules, field.err, required) {
                errs.push(path, message);
            }
            Some(Value::Null)
        }
        Some(v) => Some(present(field, v, path, chain, errs)),
    }
}

/// Kong's checks of an explicit null: `ne = null`, a non-null `eq`, then `required`.
pub(super) fn null_error(rules: &Rules, err: Option<&str>, required: bool) -> Option<String> {
    if rules.ne.as_ref().is_some_and(Value::is_null) {
        return Some(err.unwrap_or("value must not be null").to_string());
    }
    if let Some(eq) = rules.eq.as_ref().filter(|eq| !eq.is_null()) {
        return Some(format!("value must be {}", tostring(eq)));
    }
    required.then(|| REQUIRED.to_string())
}

/// A present, non-null value: type check, children, then the value rules.
fn present(field: &Field, v: &Value, path: &str, chain: bool, errs: &mut Errs) -> Value {
    if field.rules.eq.as_ref().is_some_and(Value::is_null) {
        errs.push(path, field.err.unwrap_or("value must be null"));
        return v.clone();
    }
    let type_error = |errs: &mut Errs| {
        errs.push(path, field.kind.expected());
        v.clone()
    };
    match field.kind {
        FieldType::String => {
            let Some(s) = v.as_str() else {
                return type_error(errs);
            };
            if !(field.referenceable && is_reference(s)) {
                apply_rules(field, v, path, errs);
            }
            v.clone()
        }
        FieldType::Integer => {
            let Some(n) = as_integer(v) else {
                return type_error(errs);
            };
            apply_rules(field, &n, path, errs);
            n
        }
        FieldType::Number | FieldType::Boolean => {
            if !type_ok(field.kind, v) {
                return type_error(errs);
            }
            apply_rules(field, v, path, errs);
            v.clone()
        }
        FieldType::Array | FieldType::Set => {
            let items = match v {
                Value::Array(items) => items.clone(),
                // An empty Lua table is both; Kong accepts `{}` here.
                Value::Object(o) if o.is_empty() => Vec::new(),
                _ => return type_error(errs),
            };
            let items = if field.kind == FieldType::Set {
                dedup(items)
            } else {
                items
            };
            let before = errs.len();
            let out = match field.elements.as_deref() {
                Some(el) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let at = format!("{path}[{i}]");
                        process(el, Some(item), &at, true, false, errs).unwrap_or(Value::Null)
                    })
                    .collect(),
                None => items,
            };
            let out = Value::Array(out);
            if errs.len() == before {
                apply_rules(field, &out, path, errs);
            }
            out
        }
        FieldType::Map => {
            let entries = match v {
                Value::Object(o) => o.clone(),
                Value::Array(a) if a.is_empty() => Map::new(),
                _ => return type_error(errs),
            };
            let out = Value::Object(map_entries(field, entries, path, errs));
            if !errs.has_under(path) {
                apply_rules(field, &out, path, errs);
            }
            out
        }
        FieldType::Record => {
            let empty = Map::new();
            let input = match v {
                Value::Object(o) => o,
                Value::Array(a) if a.is_empty() => &empty,
                _ => return type_error(errs),
            };
            let before = errs.len();
            let out = Value::Object(record(field, input, path, chain, errs));
            if errs.len() == before {
                apply_rules(field, &out, path, errs);
            }
            out
        }
        FieldType::Foreign => {
            let Some(obj) = v.as_object() else {
                return type_error(errs);
            };
            let at = join(path, "id");
            match obj.get("id") {
                None => errs.push(at, "missing primary key"),
                Some(Value::Null) => errs.push(at, REQUIRED),
                Some(Value::String(s)) if is_uuid(s) => {}
                Some(Value::String(_)) => errs.push(at, "expected a valid UUID"),
                Some(_) => errs.push(at, "expected a string"),
            }
            v.clone()
        }
    }
}

/// Map entries: like Kong, only the first bad entry is reported, at the map's own path.
fn map_entries(
    field: &Field,
    entries: Map<String, Value>,
    path: &str,
    errs: &mut Errs,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut reported = false;
    for (key, item) in entries {
        let mut local = Errs::default();
        if let Some(kf) = field.keys.as_deref() {
            process(
                kf,
                Some(&Value::String(key.clone())),
                path,
                true,
                false,
                &mut local,
            );
        }
        let filled = match field.values.as_deref() {
            Some(vf) if local.0.is_empty() => {
                process(vf, Some(&item), path, true, false, &mut local).unwrap_or(Value::Null)
            }
            _ => item,
        };
        if !reported && !local.0.is_empty() {
            reported = true;
            errs.0.append(&mut local.0);
        }
        out.insert(key, filled);
    }
    out
}

/// A record: every declared field in order (filled), unknown fields, then its checks.
fn record(
    field: &Field,
    input: &Map<String, Value>,
    path: &str,
    chain: bool,
    errs: &mut Errs,
) -> Map<String, Value> {
    let expanded;
    let input = if field.shorthands.iter().any(|s| input.contains_key(s.name)) {
        expanded = expand_shorthands(field, input, path, errs);
        &expanded
    } else {
        input
    };
    let mut out = Map::new();
    for (name, f) in &field.fields {
        let at = join(path, name);
        if let Some(v) = process(f, input.get(*name), &at, f.is_required(chain), chain, errs) {
            out.insert((*name).to_string(), v);
        }
    }
    for key in input.keys() {
        if !field.fields.iter().any(|(name, _)| name == key) {
            errs.push(join(path, key), UNKNOWN);
        }
    }
    check::run_all(
        &field.entity_checks,
        &out,
        path,
        &|name| field.find(name),
        errs,
    );
    out
}

/// Moves deprecated fields to their new places, as Kong's `process_auto_fields` does: the
/// new field wins when both are set, and differing values are an error.
fn expand_shorthands(
    field: &Field,
    input: &Map<String, Value>,
    path: &str,
    errs: &mut Errs,
) -> Map<String, Value> {
    let mut out = input.clone();
    for shorthand in &field.shorthands {
        let Some(value) = out.remove(shorthand.name) else {
            continue;
        };
        let at = join(path, shorthand.name);
        let before = errs.len();
        process(&shorthand.field, Some(&value), &at, false, false, errs);
        if errs.len() > before || value.is_null() {
            continue;
        }
        let mut steps = shorthand.target.split('.').peekable();
        let mut map = &mut out;
        while let Some(step) = steps.next() {
            if steps.peek().is_none() {
                match map.get(step) {
                    Some(current) if !current.is_null() => {
                        if !lua_eq(current, &value) {
                            errs.push(
                                at.clone(),
                                format!(
                                    "both deprecated and new field are used but their values \
                                     mismatch: {} = {} vs {} = {}",
                                    shorthand.name,
                                    tostring(&value),
                                    shorthand.target,
                                    tostring(current)
                                ),
                            );
                        }
                    }
                    _ => {
                        map.insert(step.to_owned(), value.clone());
                    }
                }
                break;
            }
            let slot = map
                .entry(step.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if slot.is_null() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(next) = slot else {
                break;
            };
            map = next;
        }
    }
    out
}

fn apply_rules(field: &Field, v: &Value, path: &str, errs: &mut Errs) {
    if let Err(message) = check_rules(&field.rules, Some(field.kind), v) {
        errs.push(path, field.err.map_or(message, str::to_string));
    }
}

/// Whether `v` has the JSON shape of `kind` (scalars only; aggregates are checked when walked).
pub(super) fn type_ok(kind: FieldType, v: &Value) -> bool {
    match kind {
        FieldType::String => v.is_string(),
        FieldType::Integer => as_integer(v).is_some(),
        FieldType::Number => v.is_number(),
        FieldType::Boolean => v.is_boolean(),
        FieldType::Array | FieldType::Set => v.is_array(),
        FieldType::Map | FieldType::Record | FieldType::Foreign => v.is_object(),
    }
}

/// The value rules in Kong's `validators_order`; the first failure wins.
pub(super) fn check_rules(r: &Rules, kind: Option<FieldType>, v: &Value) -> Result<(), String> {
    if let Some(eq) = r.eq.as_ref().filter(|eq| !lua_eq(v, eq)) {
        return Err(format!("value must be {}", tostring(eq)));
    }
    if r.ne.as_ref().is_some_and(|ne| lua_eq(v, ne)) {
        return Err(format!("value must not be {}", tostring(v)));
    }
    let listed = |options: &Vec<Value>| options.iter().any(|o| lua_eq(v, o));
    if let Some(options) = r.not_one_of.as_ref().filter(|o| listed(o)) {
        return Err(format!("must not be one of: {}", list(options)));
    }
    if let Some(options) = r.one_of.as_ref().filter(|o| !listed(o)) {
        return Err(format!("expected one of: {}", list(options)));
    }
    let n = v.as_f64();
    if let Some(limit) = r.gt.filter(|&limit| n.is_none_or(|n| n <= limit)) {
        return Err(format!("value must be greater than {}", number(limit)));
    }
    if r.uuid && !v.as_str().is_some_and(is_uuid) {
        return Err("expected a valid UUID".into());
    }
    let outside = |&(min, max): &(f64, f64)| n.is_none_or(|n| n < min || n > max);
    if let Some((min, max)) = r.between.filter(outside) {
        // Kong formats the limits with `%d`, which truncates.
        return Err(format!(
            "value should be between {} and {}",
            min as i64, max as i64
        ));
    }
    if let Some(len) = length(v) {
        let string_min = (kind == Some(FieldType::String)).then_some(1);
        if let Some(n) = r.len_eq.filter(|&n| len != n) {
            return Err(format!("length must be {n}"));
        }
        if let Some(n) = r.len_min.or(string_min).filter(|&n| len < n) {
            return Err(format!("length must be at least {n}"));
        }
        if let Some(n) = r.len_max.filter(|&n| len > n) {
            return Err(format!("length must be at most {n}"));
        }
    }
    if let Some(s) = v.as_str() {
        if let Some(prefix) = r.starts_with.filter(|p| !s.starts_with(p)) {
            return Err(format!("should start with: {prefix}"));
        }
        let not_match = r.not_match.as_ref().is_some_and(|p| p.regex.is_match(s));
        let no_match = r.matches.as_ref().is_some_and(|p| !p.regex.is_match(s));
        if not_match || no_match {
            return Err(format!("invalid value: {s}"));
        }
    }
    let holds = |wanted: &Value| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| lua_eq(x, wanted)))
    };
    if let Some(wanted) = r.contains.as_ref().filter(|w| !holds(w)) {
        return Err(format!("expected to contain: {}", tostring(wanted)));
    }
    match r.custom_validator {
        Some(custom) => custom(v),
        None => Ok(()),
    }
}

/// Lua's `#` for strings (bytes) and arrays, and Kong's entry count for maps.
fn length(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => Some(s.len()),
        Value::Array(a) => Some(a.len()),
        Value::Object(o) => Some(o.len()),
        _ => None,
    }
}

/// A JSON number without a fractional part, normalized to an integer (`5.0` becomes `5`).
fn as_integer(v: &Value) -> Option<Value> {
    let Value::Number(n) = v else {
        return None;
    };
    if n.is_i64() || n.is_u64() {
        return Some(v.clone());
    }
    let f = n.as_f64()?;
    // 2^63 bounds the exactly convertible range.
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18).then(|| Value::from(f as i64))
}

/// Set semantics: scalars keep their first occurrence; tables are never equal (Lua identity).
fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        let scalar = !(item.is_array() || item.is_object());
        if scalar && out.iter().any(|seen| lua_eq(seen, &item)) {
            continue;
        }
        out.push(item);
    }
    out
}

/// Lua equality: numbers compare by value (`5 == 5.0`), the rest structurally.
pub(super) fn lua_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Lua's `tostring` of a schema value: strings bare, integral numbers without `.0`.
pub(super) fn tostring(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number),
        other => other.to_string(),
    }
}

/// A float the way LuaJIT prints it: `5`, `0.5`.
pub(super) fn number(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn list(options: &[Value]) -> String {
    options.iter().map(tostring).collect::<Vec<_>>().join(", ")
}

/// Kong's `uuid` validator: 36 characters, hyphenated hex, any case.
fn is_uuid(s: &str) -> bool {
    crate::hyphenated_uuid(s).is_some()
}

/// A vault reference such as `{vault://env/secret}` (`kong.pdk.vault.is_reference`).
pub(super) fn is_reference(s: &str) -> bool {
    s.starts_with("{vault://") && s.ends_with('}')
}
