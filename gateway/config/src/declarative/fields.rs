//! Typed field readers that report Kong's messages at the field's entity path.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ConfigErrors;

/// The id `assign_ids` gave an entity object.
pub(crate) fn id(obj: &Map<String, Value>) -> Uuid {
    obj.get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_default()
}

/// Reads one entity's fields, reporting problems at `path.<field>`.
pub(crate) struct Fields<'a, 'e> {
    pub obj: &'a Map<String, Value>,
    pub path: &'a str,
    pub errors: &'e mut ConfigErrors,
}

impl<'a> Fields<'a, '_> {
    /// Flags fields not in `allowed` (Kong's `unknown field`); `_comment`/`_ignore` are fine.
    pub fn check_known(&mut self, allowed: &[&str]) {
        for key in self.obj.keys() {
            if !allowed.contains(&key.as_str())
                && key != "_comment"
                && key != "_ignore"
                && key != "id"
            {
                self.errors.push(self.at(key), "unknown field");
            }
        }
    }

    /// `path.key`.
    pub fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The raw value, if present and not null.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// An optional string.
    pub fn str(&mut self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.errors.push(self.at(key), "expected a string");
                None
            }
        }
    }

    /// A required string.
    pub fn required_str(&mut self, key: &str) -> String {
        if self.raw(key).is_none() {
            self.errors.push(self.at(key), "required field missing");
            return String::new();
        }
        self.str(key).unwrap_or_default()
    }

    /// An optional integer within `min..=max`.
    pub fn int(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.raw(key)?;
        match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.errors.push(
                    self.at(key),
                    format!("value should be between {min} and {max}"),
                );
                None
            }
            None => {
                self.errors.push(self.at(key), "expected an integer");
                None
            }
        }
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.errors.push(self.at(key), "expected a boolean");
                None
            }
        }
    }

    /// An optional array of strings.
    pub fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        let v = self.raw(key)?;
        let Some(items) = v.as_array() else {
            self.errors.push(self.at(key), "expected an array");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self
                    .errors
                    .push(format!("{}.{key}[{i}]", self.path), "expected a string"),
            }
        }
        Some(out)
    }

    /// Tags: a set of strings, each as Kong's `typedefs.tag` allows.
    pub fn tags(&mut self) -> Option<Vec<String>> {
        let tags = self.strings("tags")?;
        for (i, tag) in tags.iter().enumerate() {
            if !valid_tag(tag) {
                self.errors.push(
                    format!("{}.tags[{i}]", self.path),
                    format!(
                        "invalid tag '{tag}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
                    ),
                );
            }
        }
        Some(tags)
    }

    /// `created_at`, or `now`.
    pub fn created_at(&mut self, now: i64) -> i64 {
        self.int("created_at", 0, i64::MAX).unwrap_or(now)
    }
}

/// A 32-character random `[A-Za-z0-9]` key, as Kong generates for key-auth credentials.
pub(crate) fn random_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Kong's tag rule: not empty, and every byte printable ASCII (a space included) but `,`
/// and `/`, which `?tags=` filters split on, or part of a UTF-8 sequence.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .bytes()
            .all(|b| matches!(b, b' '..=b'~' | 0x80..=0xf4) && b != b',' && b != b'/')
}
