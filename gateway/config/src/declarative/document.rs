//! A declarative document assembled entity by entity, as a database store streams its rows.
//! Consumers, key-auth credentials and ACLs go into their model types as they arrive (the
//! same fast path a streamed `kong.yml` takes), so a million of them are never held as JSON
//! trees; plugin rows in the usual shape become plain plugins (`plain_plugins`), and the few
//! routing entities are kept as values and validated at the end.

use serde_json::{Map, Value};

use super::fast::{self, Fast};
use super::node::Node;
use super::plain_plugins::{PluginRow, Position, TopPlugin};
use super::{Existing, now, parse_doc};
use crate::{Config, ConfigErrors, PluginSchemas};

/// A plugin config added to a [`DocumentBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRef(u32);

/// A `_format_version: "3.0"` document built one entity at a time; [`finish`] validates it
/// exactly as [`super::parse_value`] validates the same document given whole.
///
/// [`finish`]: DocumentBuilder::finish
pub struct DocumentBuilder {
    top: Map<String, Value>,
    fast: Fast,
    /// Elements pushed so far into each fast list (their index in the document).
    fast_len: [usize; fast::KINDS.len()],
}

impl Default for DocumentBuilder {
    fn default() -> Self {
        DocumentBuilder::new()
    }
}

impl DocumentBuilder {
    /// An empty document at the current load time.
    pub fn new() -> DocumentBuilder {
        let mut top = Map::new();
        top.insert("_format_version".into(), Value::String("3.0".into()));
        DocumentBuilder {
            top,
            fast: Fast::new(now()),
            fast_len: [0; fast::KINDS.len()],
        }
    }

    /// Starts the top-level list `kind` (present even if nothing is pushed to it). Lists
    /// keep the order in which they were started.
    pub fn begin(&mut self, kind: &str) {
        if fast::KINDS.contains(&kind) {
            self.fast.seen(kind);
            // As in a whole document, the key stays (as null) to keep the top-level order.
            self.top.entry(kind).or_insert(Value::Null);
        } else {
            self.top
                .entry(kind)
                .or_insert_with(|| Value::Array(Vec::new()));
        }
    }

    /// Appends `entity` to the list `kind`, starting the list if needed.
    pub fn push(&mut self, kind: &str, entity: Value) {
        self.begin(kind);
        if let Some(k) = fast::KINDS.iter().position(|f| *f == kind) {
            self.fast
                .push(kind, self.fast_len[k], Node::from_value(entity));
            self.fast_len[k] += 1;
        } else if kind == "plugins" {
            self.fast.top_plugins.push(TopPlugin::Generic(entity, None));
        } else if let Some(Value::Array(list)) = self.top.get_mut(kind) {
            list.push(entity);
        }
    }

    /// Adds a plugin config, as JSON text, for [`push_plugin_row`](Self::push_plugin_row):
    /// equal texts are parsed once and share one copy.
    pub fn add_config(&mut self, text: &str) -> Result<ConfigRef, serde_json::Error> {
        let index = self
            .fast
            .configs
            .intern_text(text, |t| serde_json::from_str(t))?;
        Ok(ConfigRef(index))
    }

    /// Appends the plugin stored as `row`, whose config is `config`; fails when the row's
    /// other fields are not a JSON object.
    pub fn push_plugin_row(
        &mut self,
        row: PluginRow<'_>,
        config: Option<ConfigRef>,
    ) -> Result<(), serde_json::Error> {
        self.begin("plugins");
        let at = Position(self.fast.top_plugins.len() as u32);
        let plugin = TopPlugin::read(row, config.map(|c| c.0), at, &mut self.fast.plugin_rests)?;
        self.fast.top_plugins.push(plugin);
        Ok(())
    }

    /// Validates the document and builds the config.
    pub fn finish(self, plugins: &dyn PluginSchemas) -> Result<Config, ConfigErrors> {
        parse_doc(self.top, self.fast, plugins, None)
    }

    /// Validates the document as [`super::load_fragment`] does: references it cannot
    /// resolve are looked up in `existing`.
    pub fn finish_fragment(
        self,
        existing: &dyn Existing,
        plugins: &dyn PluginSchemas,
    ) -> Result<Config, ConfigErrors> {
        parse_doc(self.top, self.fast, plugins, Some(existing))
    }
}
