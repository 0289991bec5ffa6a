//! The config store as the Admin API sees it: Kong's DAO operations on entities in Kong's JSON
//! shape. DB-less mode serves reads from the published snapshot and refuses writes; a database
//! store validates, persists and announces them.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use uuid::Uuid;

use crate::dao::{DaoError, Kind};

/// What a store operation returns, boxed so stores can be chosen at run time.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DaoError>> + Send + 'a>>;

/// How the Admin API names one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// By primary key.
    Id(Uuid),
    /// By the kind's endpoint key (`name`, `username`, ...; any SNI for certificates).
    Key(String),
}

impl Address {
    /// Kong's rule: a UUID in its 36-character hyphenated form is an id, anything else an
    /// endpoint key. The uuid crate also reads 32 bare hex digits, braces and `urn:uuid:`;
    /// taken as ids, a key-auth key made by `openssl rand -hex 16` could not be found by
    /// its key, and deleting it answered 204 and left it working.
    pub fn parse(segment: &str) -> Address {
        match crate::hyphenated_uuid(segment) {
            Some(id) => Address::Id(id),
            None => Address::Key(segment.to_owned()),
        }
    }
}

/// Kong's `?tags=` filter: `a,b` needs every tag, `a/b` any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// Every tag (`a,b`).
    All(Vec<String>),
    /// Any tag (`a/b`).
    Any(Vec<String>),
}

impl TagFilter {
    /// True when `tags` pass the filter.
    pub fn matches(&self, tags: &[&str]) -> bool {
        match self {
            TagFilter::All(want) => want.iter().all(|w| tags.contains(&w.as_str())),
            TagFilter::Any(want) => want.iter().any(|w| tags.contains(&w.as_str())),
        }
    }
}

/// One page request.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Rows per page, 1..=1000; default 100.
    pub size: usize,
    /// Where the previous page ended (the store's own token); `None` starts at the top.
    pub offset: Option<String>,
    /// Only rows with these tags.
    pub tags: Option<TagFilter>,
    /// Only rows whose foreign key `field` is this id (`/services/{s}/routes`).
    pub parent: Option<(&'static str, Uuid)>,
    /// Only consumers with this `custom_id` (`GET /consumers?custom_id=`).
    pub custom_id: Option<String>,
}

/// One page of rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The rows, in Kong's JSON shape.
    pub data: Vec<Value>,
    /// The token of the next page; `None` on the last one.
    pub offset: Option<String>,
}

/// Kong's DAO operations. Entities go in and come out in Kong's JSON shape.
pub trait ConfigStore: Send + Sync + 'static {
    /// One entity, or `None`.
    fn select<'a>(&'a self, kind: &'static Kind, at: &'a Address)
    -> StoreFuture<'a, Option<Value>>;

    /// A page of a collection.
    fn page<'a>(&'a self, kind: &'static Kind, query: &'a PageQuery) -> StoreFuture<'a, Page>;

    /// Creates an entity (`POST`); returns it as stored.
    fn insert<'a>(&'a self, kind: &'static Kind, entity: Value) -> StoreFuture<'a, Value>;

    /// Merges `patch` into an entity (`PATCH`); `None` when there is no such entity.
    fn update<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
        patch: Value,
    ) -> StoreFuture<'a, Option<Value>>;

    /// Creates or fully replaces an entity (`PUT`).
    fn upsert<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
        entity: Value,
    ) -> StoreFuture<'a, Value>;

    /// Deletes an entity and what cascades from it; deleting nothing is not an error.
    fn delete<'a>(&'a self, kind: &'static Kind, at: &'a Address) -> StoreFuture<'a, ()>;

    /// Kong's `/tags`: every `(entity_name, entity_id, tag)` of every tagged entity, or only
    /// those with `tag`, a page at a time (`query.size` and `query.offset` only).
    fn tags<'a>(&'a self, tag: Option<&'a str>, query: &'a PageQuery) -> StoreFuture<'a, Page>;

    /// Tells the other nodes on the store that `target` of `upstream` (one address, or all
    /// of them) was set healthy or unhealthy. No default: a store that wraps another must
    /// pass it on.
    fn broadcast_target_health<'a>(
        &'a self,
        upstream: &'a str,
        target: &'a str,
        address: Option<std::net::IpAddr>,
        healthy: bool,
    ) -> StoreFuture<'a, ()>;

    /// True when the store answers (the Admin API's `/status` `database.reachable`).
    /// Default true (a store without a database is always there).
    fn reachable(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(std::future::ready(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hyphenated_form_of_a_uuid_is_an_id() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(Address::parse(id), Address::Key(id.into()));
        let braced = "{01234567-89ab-cdef-0123-456789abcdef}";
        assert_eq!(Address::parse(braced), Address::Key(braced.into()));
        assert!(matches!(
            Address::parse("01234567-89AB-cdef-0123-456789abcdef"),
            Address::Id(_)
        ));
    }
}
