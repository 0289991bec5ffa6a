//! A parsed YAML/JSON value before it becomes a `serde_json::Value`.
//!
//! Maps are plain vectors of pairs: no hashing and no index table per map, and cheap to take
//! apart. Strings up to 24 bytes (keys, plugin names, most values) are held inline, without
//! an allocation each. The fast path reads consumers from nodes; everything else becomes a
//! `Value`.

use compact_str::CompactString;
use serde_json::{Map, Number, Value};

/// A value with its maps as ordered pairs (a repeated key appears twice).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(Number),
    /// A string.
    Str(CompactString),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(CompactString, Node)>),
}

impl Node {
    /// The `serde_json::Value` the generic loader builds: a repeated key keeps its first
    /// position and takes the last value, as `serde_json::Map::insert` does.
    pub fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Num(n) => Value::Number(n),
            Node::Str(s) => Value::String(s.into_string()),
            Node::Seq(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            Node::Map(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(k.into_string(), v.into_value());
                }
                Value::Object(map)
            }
        }
    }

    /// The node of a parsed value (for documents that did not come through the stream).
    pub fn from_value(v: Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => Node::Num(n),
            Value::String(s) => Node::Str(s.into()),
            Value::Array(items) => Node::Seq(items.into_iter().map(Node::from_value).collect()),
            Value::Object(map) => Node::Map(
                map.into_iter()
                    .map(|(k, v)| (k.into(), Node::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The integer, as `serde_json::Value::as_i64` reads it.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Node::Num(n) => n.as_i64(),
            _ => None,
        }
    }
}

/// JSON text of the node as written: maps keep every pair, in order. Equal texts are equal
/// nodes, which is all the config interning needs.
impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Num(n) => n.serialize(s),
            Node::Str(v) => s.serialize_str(v),
            Node::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k.as_str(), v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Node;

    #[test]
    fn repeated_keys_keep_the_first_place_and_the_last_value() {
        let node = Node::Map(vec![
            ("a".into(), Node::Bool(true)),
            ("b".into(), Node::Null),
            ("a".into(), Node::Str("x".into())),
        ]);
        let value = node.into_value();
        assert_eq!(value, serde_json::json!({"a": "x", "b": null}));
        let keys: Vec<_> = value.as_object().expect("map").keys().cloned().collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(Node::from_value(value.clone()).into_value(), value);
    }
}
