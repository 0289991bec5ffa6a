//! Plugin configs as many instances repeat them: a portal gives each of 100,000 consumers its
//! own rate-limiting instance, but of a handful of plans. Each distinct config text is kept
//! (and later validated) once; the instances refer to it by index.

use std::sync::Arc;

use hashbrown::HashMap;

use serde_json::Value;

use super::node::Node;

/// Distinct plugin configs, by the text they were read from.
#[derive(Default)]
pub(crate) struct SharedConfigs {
    by_text: HashMap<Box<str>, u32>,
    values: Vec<Value>,
    /// Reused for the text of each node interned.
    scratch: Vec<u8>,
}

impl SharedConfigs {
    /// The index of the config written as `text`, parsed by `parse` the first time it is seen.
    pub fn intern_text<E>(
        &mut self,
        text: &str,
        parse: impl FnOnce(&str) -> Result<Value, E>,
    ) -> Result<u32, E> {
        if let Some(&i) = self.by_text.get(text) {
            return Ok(i);
        }
        let value = parse(text)?;
        Ok(self.insert(text.into(), value))
    }

    /// The index of `value` (equal values share one).
    pub fn intern(&mut self, value: Value) -> u32 {
        let text = value.to_string();
        match self.by_text.get(text.as_str()) {
            Some(&i) => i,
            None => self.insert(text.into_boxed_str(), value),
        }
    }

    /// The index of the config `node` (equal nodes share one), converted to a value the
    /// first time it is seen.
    pub fn intern_node(&mut self, node: Node) -> u32 {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, &node)
            .expect("invariant: a node serializes (string keys, finite numbers)");
        let text = std::str::from_utf8(&self.scratch).expect("invariant: JSON is UTF-8");
        match self.by_text.get(text) {
            Some(&i) => i,
            None => {
                let text: Box<str> = text.into();
                self.insert(text, node.into_value())
            }
        }
    }

    fn insert(&mut self, text: Box<str>, value: Value) -> u32 {
        let i = self.values.len() as u32;
        self.values.push(value);
        self.by_text.insert(text, i);
        i
    }

    /// The config at `index`.
    pub fn get(&self, index: u32) -> &Value {
        &self.values[index as usize]
    }
}

/// Names that many entities repeat (ACL groups, plugin names), one copy of each.
#[derive(Default)]
pub(crate) struct SharedNames(hashbrown::HashSet<Arc<str>>);

impl SharedNames {
    /// The shared copy of `name`.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.0.insert(shared.clone());
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_texts_and_values_share_one_entry_and_parse_once() {
        let mut shared = SharedConfigs::default();
        let parses = std::cell::Cell::new(0);
        let parse = |t: &str| {
            parses.set(parses.get() + 1);
            serde_json::from_str::<Value>(t)
        };
        let a = shared.intern_text(r#"{"minute":5}"#, parse).expect("JSON");
        let b = shared.intern_text(r#"{"minute":5}"#, parse).expect("JSON");
        let c = shared.intern_text(r#"{"minute":6}"#, parse).expect("JSON");
        assert_eq!((a, b), (0, 0));
        assert_eq!(c, 1);
        assert_eq!(parses.get(), 2);
        assert_eq!(shared.intern(json!({"minute": 6})), 1);
        assert_eq!(shared.intern(json!({"hour": 6})), 2);
        assert_eq!(shared.get(2), &json!({"hour": 6}));
        assert!(shared.intern_text("{", parse).is_err());
    }
}
