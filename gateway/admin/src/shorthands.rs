//! Kong's reads of a plugin echo its config's deprecated shorthand fields beside the fields
//! that replaced them (rate-limiting's `redis_host` beside `redis.host`): Kong's DAO adds
//! them on every select, so Kong's tools see them. The stores keep the new fields only;
//! this store wraps one and adds the shorthands to every plugin it hands out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gangway_config::PluginSchemas;
use gangway_config::dao::Kind;
use gangway_config::store::{Address, ConfigStore, Page, PageQuery, StoreFuture};
use serde_json::Value;

/// A store whose plugins come out with their shorthand fields.
pub struct EchoShorthands {
    inner: Arc<dyn ConfigStore>,
    plugins: Arc<dyn PluginSchemas + Send + Sync>,
}

impl EchoShorthands {
    /// Wraps `inner`; `plugins` knows each plugin's schema.
    pub fn new(
        inner: Arc<dyn ConfigStore>,
        plugins: Arc<dyn PluginSchemas + Send + Sync>,
    ) -> EchoShorthands {
        EchoShorthands { inner, plugins }
    }

    /// Adds the shorthands to `entity` when it is a plugin whose schema has any.
    fn echo(&self, kind: &Kind, entity: &mut Value) {
        if kind.name != "plugins" {
            return;
        }
        let Some(name) = entity["name"].as_str() else {
            return;
        };
        let Some(schema) = self.plugins.schema(name) else {
            return;
        };
        if schema.config.shorthands.is_empty() {
            return;
        }
        if let Some(config) = entity.get_mut("config") {
            schema.config.echo_shorthands(config);
        }
    }

    fn echoed<'a, T: Send + 'a>(
        &'a self,
        kind: &'static Kind,
        read: StoreFuture<'a, T>,
        each: impl FnOnce(&Self, &'static Kind, &mut T) + Send + 'a,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let mut found = read.await?;
            each(self, kind, &mut found);
            Ok(found)
        })
    }
}

fn one(store: &EchoShorthands, kind: &'static Kind, entity: &mut Value) {
    store.echo(kind, entity);
}

fn maybe(store: &EchoShorthands, kind: &'static Kind, entity: &mut Option<Value>) {
    if let Some(entity) = entity {
        store.echo(kind, entity);
    }
}

fn page(store: &EchoShorthands, kind: &'static Kind, page: &mut Page) {
    for entity in &mut page.data {
        store.echo(kind, entity);
    }
}

impl ConfigStore for EchoShorthands {
    fn select<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
    ) -> StoreFuture<'a, Option<Value>> {
        self.echoed(kind, self.inner.select(kind, at), maybe)
    }

    fn page<'a>(&'a self, kind: &'static Kind, query: &'a PageQuery) -> StoreFuture<'a, Page> {
        self.echoed(kind, self.inner.page(kind, query), page)
    }

    fn insert<'a>(&'a self, kind: &'static Kind, entity: Value) -> StoreFuture<'a, Value> {
        self.echoed(kind, self.inner.insert(kind, entity), one)
    }

    fn update<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
        patch: Value,
    ) -> StoreFuture<'a, Option<Value>> {
        self.echoed(kind, self.inner.update(kind, at, patch), maybe)
    }

    fn upsert<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
        entity: Value,
    ) -> StoreFuture<'a, Value> {
        self.echoed(kind, self.inner.upsert(kind, at, entity), one)
    }

    fn delete<'a>(&'a self, kind: &'static Kind, at: &'a Address) -> StoreFuture<'a, ()> {
        self.inner.delete(kind, at)
    }

    fn tags<'a>(&'a self, tag: Option<&'a str>, query: &'a PageQuery) -> StoreFuture<'a, Page> {
        self.inner.tags(tag, query)
    }

    fn broadcast_target_health<'a>(
        &'a self,
        upstream: &'a str,
        target: &'a str,
        address: Option<std::net::IpAddr>,
        healthy: bool,
    ) -> StoreFuture<'a, ()> {
        self.inner
            .broadcast_target_health(upstream, target, address, healthy)
    }

    fn reachable(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        self.inner.reachable()
    }
}
