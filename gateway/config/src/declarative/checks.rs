//! Checks every entity kind shares: references to other entities by id or name, uniqueness
//! of names, Kong's `protocols` and `utf8_name` fields.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use uuid::Uuid;

use super::Item;
use super::fields::{Fields, id};
use crate::ConfigErrors;
use crate::model::Protocol;

/// Resolves a reference given as an id or a name.
pub(super) trait Lookup {
    /// The id of the entity with id or name `key`.
    fn resolve(&self, key: &str) -> Option<Uuid>;

    /// `id` when an entity has it (a reference given by id, without printing it first).
    fn resolve_id(&self, id: Uuid) -> Option<Uuid> {
        self.resolve(&id.to_string())
    }
}

/// Entities that exist outside the document being loaded (a database's rows): references
/// the document cannot resolve are looked up here.
pub trait Existing {
    /// The id of the entity of `kind` (`services`) whose id, or name, is `key`.
    fn resolve(&self, kind: &str, key: &str) -> Option<Uuid>;
}

/// References of one kind: the document's first, then the existing entities.
pub(super) struct Refs<'a> {
    pub(super) document: &'a dyn Lookup,
    pub(super) existing: Option<&'a dyn Existing>,
    pub(super) kind: &'static str,
}

impl Lookup for Refs<'_> {
    fn resolve(&self, key: &str) -> Option<Uuid> {
        self.document
            .resolve(key)
            .or_else(|| self.existing?.resolve(self.kind, key))
    }

    fn resolve_id(&self, id: Uuid) -> Option<Uuid> {
        self.document
            .resolve_id(id)
            .or_else(|| self.existing?.resolve(self.kind, &id.to_string()))
    }
}

/// Ids and names of one entity kind, for reference resolution and uniqueness.
#[derive(Default)]
pub(super) struct Known<'a> {
    ids: HashSet<Uuid>,
    names: HashMap<&'a str, Uuid>,
}

impl<'a> Known<'a> {
    pub(super) fn collect(items: &[Item<'a>], name_keys: &[&str]) -> Known<'a> {
        let mut k = Known::default();
        for it in items {
            let id = id(it.obj);
            k.ids.insert(id);
            for key in name_keys {
                if let Some(n) = it.obj.get(*key).and_then(Value::as_str) {
                    k.names.insert(n, id);
                }
            }
        }
        k
    }
}

impl Lookup for Known<'_> {
    fn resolve(&self, key: &str) -> Option<Uuid> {
        if let Ok(id) = Uuid::parse_str(key) {
            if self.ids.contains(&id) {
                return Some(id);
            }
        }
        self.names.get(key).copied()
    }

    fn resolve_id(&self, id: Uuid) -> Option<Uuid> {
        if self.ids.contains(&id) {
            return Some(id);
        }
        self.names.get(id.to_string().as_str()).copied()
    }
}

/// Resolves `field` of `f`: the nesting parent, an id, a name, or `{id|name|username: ...}`.
pub(super) fn reference(
    f: &mut Fields<'_, '_>,
    field: &str,
    parent: Option<(&str, Uuid)>,
    known: &dyn Lookup,
    entity: &str,
) -> Option<Uuid> {
    if let Some((fk, id)) = parent {
        if fk == field {
            return Some(id);
        }
    }
    let raw = f.raw(field)?;
    let key = match raw {
        Value::String(s) => s.clone(),
        Value::Object(o) => match ["id", "name", "username"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
        {
            Some(s) => s.to_string(),
            None => {
                f.errors
                    .push(f.at(field), "expected a record with an id or a name");
                return None;
            }
        },
        _ => {
            f.errors.push(f.at(field), "expected a string or a record");
            return None;
        }
    };
    if let Some(id) = known.resolve(&key) {
        return Some(id);
    }
    f.errors.push(
        f.at(field),
        format!(
            "the foreign key cannot be resolved with '{key}' for an existing '{entity}' entity"
        ),
    );
    None
}

/// Reports Kong's uniqueness error for a repeated value.
pub(super) fn unique(
    seen: &mut HashSet<String>,
    entity: &str,
    field: &str,
    value: Option<&str>,
    path: &str,
    errors: &mut ConfigErrors,
) {
    if let Some(v) = value {
        if !seen.insert(v.to_string()) {
            errors.push(path, format!("uniqueness violation: '{entity}' entity with {field} set to '{v}' already declared"));
        }
    }
}

pub(super) fn protocols(f: &mut Fields<'_, '_>, default: &[Protocol]) -> Vec<Protocol> {
    let Some(list) = f.strings("protocols") else {
        return default.to_vec();
    };
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match Protocol::parse(p) {
            Some(p) => out.push(p),
            None => f.errors.push(
                format!("{}.protocols[{i}]", f.path),
                "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp",
            ),
        }
    }
    if out.is_empty() && list.is_empty() {
        f.errors
            .push(f.at("protocols"), "length must be at least 1");
    }
    out
}

/// Kong's `utf8_name`: ASCII alphanumerics and `.-_~`, plus any non-ASCII (UTF-8) character.
pub(super) fn utf8_name(f: &mut Fields<'_, '_>, key: &str) -> Option<String> {
    let name = f.str(key)?;
    if let Some(problem) = utf8_name_problem(&name) {
        f.errors.push(f.at(key), problem);
    }
    Some(name)
}

/// What is wrong with `name` as a `utf8_name`, if anything.
pub(super) fn utf8_name_problem(name: &str) -> Option<String> {
    let ok = name
        .chars()
        .all(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || ".-_~".contains(c));
    (!ok).then(|| format!(
        "invalid value '{name}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
    ))
}

/// Kong's `typedefs.host` for a host without a port: an IPv4 or IPv6 address, or a name of
/// letters, digits, `-`, `.` and `_` whose labels do not end in `-` (a trailing dot
/// allowed). Four dotted runs of digits are an IPv4 address, each at most 255.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let numeric = |l: &&str| !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit());
    if labels.len() == 4 && labels.iter().all(numeric) {
        return labels
            .iter()
            .all(|l| l.parse::<u16>().is_ok_and(|n| n <= 255));
    }
    let last = labels.len() - 1;
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && labels
            .iter()
            .enumerate()
            .all(|(i, l)| !l.ends_with('-') && (!l.is_empty() || i == last))
}

/// Kong's `typedefs.path`: only RFC 3986's unreserved and reserved characters, and every
/// `%` starting an escape of two hex digits.
pub fn rfc3986_path(path: &str) -> Result<(), String> {
    let allowed = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'.' | b'-'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'%'
                    | b':'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    };
    if !path.bytes().all(allowed) {
        return Err(format!(
            "invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"
        ));
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'%').map(|p| i + p) {
        let escape = bytes.get(at + 1..at + 3);
        if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
            let end = (at + 3).min(path.len());
            return Err(format!("invalid url-encoded value: '{}'", &path[at..end]));
        }
        i = at + 3;
    }
    Ok(())
}

#[cfg(test)]
mod host_and_path_tests {
    use super::*;

    #[test]
    fn hosts_as_kong_takes_them() {
        for ok in [
            "example.com",
            "a_b.internal",
            "10.0.0.1",
            "::1",
            "fqdn.example.",
            "1.2.3",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["bad host", "a.com/x", "a-.b", "a..b", "999.1.1.1", "x@y"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn paths_as_kong_takes_them() {
        assert!(rfc3986_path("/v1/a%20b;x=1").is_ok());
        assert_eq!(
            rfc3986_path("/a b").expect_err("space"),
            "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"
        );
        assert_eq!(
            rfc3986_path("/a%2").expect_err("short escape"),
            "invalid url-encoded value: '%2'"
        );
        assert_eq!(
            rfc3986_path("/a%zz/b").expect_err("not hex"),
            "invalid url-encoded value: '%zz'"
        );
    }
}
