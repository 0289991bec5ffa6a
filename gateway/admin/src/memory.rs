//! The DB-less store: reads come from the snapshot the proxy serves, writes are refused with
//! Kong's `cannot <verb> '<kind>' entities when not using a database` (405, code 12).
//!
//! Pages are cut from the typed entities and only the page is rendered as JSON, so listing
//! a million consumers costs one pass over compact structs, not a million JSON objects.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gangway_config::dao::{DaoError, Kind};
use gangway_config::model::{
    Acl, CaCertificate, Certificate, Consumer, KeyauthCredential, Plugin, Route, Service, Sni,
    Target, Upstream,
};
use gangway_config::store::{Address, ConfigStore, Page, PageQuery, StoreFuture};
use gangway_proxy::{Gateway, Snapshot};
use serde_json::{Value, json};
use uuid::Uuid;

/// Serves the Admin API's reads from the gateway's current snapshot.
pub struct MemoryStore {
    gateway: Arc<Gateway>,
}

impl MemoryStore {
    /// A store over `gateway`'s snapshots.
    pub fn new(gateway: Arc<Gateway>) -> MemoryStore {
        MemoryStore { gateway }
    }
}

/// One entity of the snapshot, borrowed.
#[derive(Clone, Copy)]
enum Row<'s> {
    Service(&'s Service),
    Route(&'s Route),
    Consumer(&'s Consumer),
    Plugin(&'s Plugin),
    Credential(&'s KeyauthCredential),
    Acl(&'s Acl),
    Upstream(&'s Upstream),
    Target(&'s Target),
    Certificate(&'s Certificate),
    Sni(&'s Sni),
    CaCertificate(&'s CaCertificate),
}

fn tags_of(tags: Option<&[String]>) -> Vec<&str> {
    tags.into_iter().flatten().map(String::as_str).collect()
}

fn compact_tags(tags: &gangway_config::model::CompactTags) -> Vec<&str> {
    tags.iter().flat_map(|t| t.iter()).map(|t| &**t).collect()
}

impl<'s> Row<'s> {
    fn id(self) -> Uuid {
        match self {
            Row::Service(e) => e.id,
            Row::Route(e) => e.id,
            Row::Consumer(e) => e.id,
            Row::Plugin(e) => e.id,
            Row::Credential(e) => e.id,
            Row::Acl(e) => e.id,
            Row::Upstream(e) => e.id,
            Row::Target(e) => e.id,
            Row::Certificate(e) => e.id,
            Row::Sni(e) => e.id,
            Row::CaCertificate(e) => e.id,
        }
    }

    fn tags(self) -> Vec<&'s str> {
        match self {
            Row::Service(e) => tags_of(e.tags.as_deref()),
            Row::Route(e) => tags_of(e.tags.as_deref()),
            Row::Consumer(e) => compact_tags(&e.tags),
            Row::Plugin(e) => tags_of(e.tags.as_deref()),
            Row::Credential(e) => compact_tags(&e.tags),
            Row::Acl(e) => compact_tags(&e.tags),
            Row::Upstream(e) => tags_of(e.tags.as_deref()),
            Row::Target(e) => tags_of(e.tags.as_deref()),
            Row::Certificate(e) => tags_of(e.tags.as_deref()),
            Row::Sni(e) => tags_of(e.tags.as_deref()),
            Row::CaCertificate(e) => tags_of(e.tags.as_deref()),
        }
    }

    /// The id foreign key `field` points at.
    fn foreign(self, field: &str) -> Option<Uuid> {
        let fk = match (self, field) {
            (Row::Service(e), "client_certificate") => e.client_certificate,
            (Row::Route(e), "service") => e.service,
            (Row::Plugin(e), "route") => e.route,
            (Row::Plugin(e), "service") => e.service,
            (Row::Plugin(e), "consumer") => e.consumer,
            (Row::Credential(e), "consumer") => Some(e.consumer),
            (Row::Acl(e), "consumer") => Some(e.consumer),
            (Row::Upstream(e), "client_certificate") => e.client_certificate,
            (Row::Target(e), "upstream") => Some(e.upstream),
            (Row::Sni(e), "certificate") => Some(e.certificate),
            _ => None,
        };
        fk.map(|f| f.id)
    }

    /// True when the kind's endpoint key equals `key` (any SNI name, for certificates).
    fn has_key(self, key: &str, snapshot: &Snapshot) -> bool {
        match self {
            Row::Service(e) => e.name.as_deref() == Some(key),
            Row::Route(e) => e.name.as_deref() == Some(key),
            Row::Consumer(e) => e.username.as_deref() == Some(key),
            Row::Plugin(e) => e.instance_name.as_deref() == Some(key),
            Row::Credential(e) => &*e.key == key,
            Row::Upstream(e) => e.name == key,
            Row::Target(e) => e.target == key,
            Row::Sni(e) => e.name == key,
            Row::Certificate(e) => snapshot
                .config
                .snis
                .iter()
                .any(|s| s.certificate.id == e.id && s.name == key),
            Row::Acl(_) | Row::CaCertificate(_) => false,
        }
    }

    /// Kong's JSON for the entity, at `now` (epoch seconds).
    fn to_json(self, snapshot: &Snapshot, now: i64) -> Value {
        let rendered = match self {
            Row::Service(e) => serde_json::to_value(e),
            Row::Route(e) => serde_json::to_value(e),
            Row::Consumer(e) => serde_json::to_value(e),
            Row::Plugin(e) => serde_json::to_value(e),
            Row::Credential(e) => serde_json::to_value(e).map(|mut v| {
                // Kong returns the seconds left, not the expiry time.
                let ttl = e.expires_at.map(|t| (t.get() - now).max(0));
                v["ttl"] = json!(ttl);
                v
            }),
            Row::Acl(e) => serde_json::to_value(e),
            Row::Upstream(e) => serde_json::to_value(e),
            Row::Target(e) => serde_json::to_value(e),
            Row::Certificate(e) => serde_json::to_value(e).map(|mut v| {
                let names: Vec<&str> = snapshot
                    .config
                    .snis
                    .iter()
                    .filter(|s| s.certificate.id == e.id)
                    .map(|s| s.name.as_str())
                    .collect();
                v["snis"] = json!(names);
                v
            }),
            Row::Sni(e) => serde_json::to_value(e),
            Row::CaCertificate(e) => serde_json::to_value(e),
        };
        rendered.unwrap_or(Value::Null)
    }

    /// Expired credentials are invisible, as Kong's TTL rows are.
    fn alive(self, now: i64) -> bool {
        match self {
            Row::Credential(e) => e.expires_at.is_none_or(|t| t.get() > now),
            _ => true,
        }
    }
}

/// Every entity of `kind` in the snapshot, in config order.
fn rows<'s>(snapshot: &'s Snapshot, kind: &Kind) -> Box<dyn Iterator<Item = Row<'s>> + 's> {
    let config = &snapshot.config;
    let identities = &snapshot.identities;
    match kind.name {
        "services" => Box::new(config.services.iter().map(Row::Service)),
        "routes" => Box::new(config.routes.iter().map(Row::Route)),
        "consumers" => Box::new(identities.consumers().map(Row::Consumer)),
        "plugins" => Box::new(config.plugins.iter().map(Row::Plugin)),
        "keyauth_credentials" => {
            Box::new(identities.credentials().map(|(_, c)| Row::Credential(c)))
        }
        "acls" => Box::new(identities.acls().map(Row::Acl)),
        "upstreams" => Box::new(config.upstreams.iter().map(Row::Upstream)),
        "targets" => Box::new(config.targets.iter().map(Row::Target)),
        "certificates" => Box::new(config.certificates.iter().map(Row::Certificate)),
        "snis" => Box::new(config.snis.iter().map(Row::Sni)),
        "ca_certificates" => Box::new(config.ca_certificates.iter().map(Row::CaCertificate)),
        _ => Box::new(std::iter::empty()),
    }
}

/// The entity of `kind` at `at`, using the identity index where it has one.
fn find<'s>(snapshot: &'s Snapshot, kind: &Kind, at: &Address) -> Option<Row<'s>> {
    let identities = &snapshot.identities;
    match (kind.name, at) {
        ("consumers", Address::Id(id)) => identities
            .consumer_by_id(*id)
            .map(|c| Row::Consumer(identities.consumer(c))),
        ("consumers", Address::Key(name)) => identities
            .consumer_by_username(name)
            .map(|c| Row::Consumer(identities.consumer(c))),
        ("keyauth_credentials", Address::Id(id)) => identities
            .credential_by_id(*id)
            .map(|c| Row::Credential(identities.credential(c))),
        ("keyauth_credentials", Address::Key(key)) => identities
            .credential_by_key(key)
            .map(|c| Row::Credential(identities.credential(c))),
        (_, Address::Id(id)) => rows(snapshot, kind).find(|r| r.id() == *id),
        (_, Address::Key(key)) => {
            kind.endpoint_key?;
            rows(snapshot, kind).find(|r| r.has_key(key, snapshot))
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The offset token: how many matching rows earlier pages returned.
fn encode_offset(position: usize) -> String {
    URL_SAFE_NO_PAD.encode(position.to_string())
}

fn decode_offset(token: &str) -> Result<usize, DaoError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| DaoError::invalid_offset(token, "bad base64 encoding"))?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DaoError::invalid_offset(token, "bad offset string"))
}

fn page(snapshot: &Snapshot, kind: &Kind, query: &PageQuery) -> Result<Page, DaoError> {
    let start = match &query.offset {
        Some(token) => decode_offset(token)?,
        None => 0,
    };
    let now = now();
    let size = query.size.max(1);
    let matching = rows(snapshot, kind).filter(|row| {
        row.alive(now)
            && query
                .parent
                .is_none_or(|(field, id)| row.foreign(field) == Some(id))
            && query
                .tags
                .as_ref()
                .is_none_or(|filter| filter.matches(&row.tags()))
            && query.custom_id.as_deref().is_none_or(
                |want| matches!(row, Row::Consumer(c) if c.custom_id.as_deref() == Some(want)),
            )
    });
    let mut data = Vec::with_capacity(size.min(1000));
    let mut more = false;
    for row in matching.skip(start) {
        if data.len() == size {
            more = true;
            break;
        }
        data.push(row.to_json(snapshot, now));
    }
    let offset = more.then(|| encode_offset(start + size));
    Ok(Page { data, offset })
}

/// Every tagged entity's tags, kind by kind in Kong's order, as `/tags` rows.
fn tags_page(snapshot: &Snapshot, tag: Option<&str>, query: &PageQuery) -> Result<Page, DaoError> {
    let start = match &query.offset {
        Some(token) => decode_offset(token)?,
        None => 0,
    };
    let size = query.size.max(1);
    let rows = gangway_config::dao::KINDS.iter().flat_map(|kind| {
        rows(snapshot, kind).flat_map(move |row| {
            let id = row.id();
            row.tags()
                .into_iter()
                .filter(move |t| tag.is_none_or(|want| want == *t))
                .map(move |t| json!({"entity_name": kind.name, "entity_id": id, "tag": t}))
        })
    });
    let mut data = Vec::with_capacity(size.min(1000));
    let mut more = false;
    for row in rows.skip(start) {
        if data.len() == size {
            more = true;
            break;
        }
        data.push(row);
    }
    Ok(Page {
        data,
        offset: more.then(|| encode_offset(start + size)),
    })
}

impl ConfigStore for MemoryStore {
    /// A node without a database has no other node to tell.
    fn broadcast_target_health<'a>(
        &'a self,
        _upstream: &'a str,
        _target: &'a str,
        _address: Option<std::net::IpAddr>,
        _healthy: bool,
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn tags<'a>(&'a self, tag: Option<&'a str>, query: &'a PageQuery) -> StoreFuture<'a, Page> {
        let snapshot = self.gateway.snapshot();
        Box::pin(std::future::ready(tags_page(&snapshot, tag, query)))
    }

    fn select<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
    ) -> StoreFuture<'a, Option<Value>> {
        let snapshot = self.gateway.snapshot();
        let now = now();
        let found = find(&snapshot, kind, at)
            .filter(|row| row.alive(now))
            .map(|row| row.to_json(&snapshot, now));
        Box::pin(std::future::ready(Ok(found)))
    }

    fn page<'a>(&'a self, kind: &'static Kind, query: &'a PageQuery) -> StoreFuture<'a, Page> {
        let snapshot = self.gateway.snapshot();
        Box::pin(std::future::ready(page(&snapshot, kind, query)))
    }

    fn insert<'a>(&'a self, kind: &'static Kind, _entity: Value) -> StoreFuture<'a, Value> {
        refuse("create", kind)
    }

    fn update<'a>(
        &'a self,
        kind: &'static Kind,
        _at: &'a Address,
        _patch: Value,
    ) -> StoreFuture<'a, Option<Value>> {
        refuse("update", kind)
    }

    fn upsert<'a>(
        &'a self,
        kind: &'static Kind,
        _at: &'a Address,
        _entity: Value,
    ) -> StoreFuture<'a, Value> {
        refuse("create or update", kind)
    }

    fn delete<'a>(&'a self, kind: &'static Kind, _at: &'a Address) -> StoreFuture<'a, ()> {
        refuse("remove", kind)
    }
}

fn refuse<'a, T: Send + 'a>(verb: &str, kind: &Kind) -> StoreFuture<'a, T> {
    let error = DaoError::unsupported_without_database(verb, kind.name);
    Box::pin(std::future::ready(Err(error)))
}
