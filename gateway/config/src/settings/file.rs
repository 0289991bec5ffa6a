//! The TOML settings file: a flat table of `key = value`, keys as in the registry. Values may be
//! Kong-style strings (`proxy_listen = "0.0.0.0:8000 reuseport"`) or native TOML (numbers,
//! booleans, arrays of strings); both become the string the environment would carry, so one
//! parser per key serves both sources.

use std::path::Path;

use toml::{Spanned, Value};

use super::registry;
use super::{Origin, Problem, Settings};

/// Reads `path` and applies every key in it, collecting problems.
pub(super) fn apply(path: &Path, settings: &mut Settings, problems: &mut Vec<Problem>) {
    match std::fs::read_to_string(path) {
        Ok(text) => apply_text(&text, path, settings, problems),
        Err(e) => problems.push(Problem::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Applies the TOML document `text`; `path` only names it in messages.
pub(super) fn apply_text(
    text: &str,
    path: &Path,
    settings: &mut Settings,
    problems: &mut Vec<Problem>,
) {
    let table: std::collections::BTreeMap<String, Spanned<Value>> = match toml::from_str(text) {
        Ok(table) => table,
        Err(e) => {
            problems.push(Problem::Syntax {
                path: path.to_owned(),
                line: e.span().map(|span| line_of(text, span.start)),
                reason: e.message().to_owned(),
            });
            return;
        }
    };
    // Report in file order, whatever order the map keeps.
    let mut entries: Vec<(String, Spanned<Value>)> = table.into_iter().collect();
    entries.sort_by_key(|(_, v)| v.span().start);
    for (name, value) in entries {
        let origin = Origin::File {
            path: path.to_owned(),
            line: Some(line_of(text, value.span().start)),
        };
        let Some(key) = registry::find(&name) else {
            problems.push(Problem::UnknownKey { origin, key: name });
            continue;
        };
        let applied =
            to_setting_string(value.get_ref()).and_then(|raw| (key.apply)(settings, &raw));
        if let Err(reason) = applied {
            problems.push(Problem::Invalid {
                origin,
                key: name,
                reason,
            });
        }
    }
}

/// The 1-based line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The value as the environment would spell it: arrays become comma lists.
fn to_setting_string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(_) | Value::Table(_) => Err(
                    "expected an array of strings or numbers, got a nested array or table"
                        .to_owned(),
                ),
                other => to_setting_string(other),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.join(", ")),
        Value::Float(f) => Ok(f.to_string()),
        Value::Datetime(_) => Err("expected a string, number or boolean, got a date".to_owned()),
        Value::Table(_) => Err(
            "expected a string, number, boolean or array, got a table (settings keys are flat)"
                .to_owned(),
        ),
    }
}
