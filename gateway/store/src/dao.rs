//! Kong's DAO operations on Postgres ([`PgStore`], a [`ConfigStore`]).
//!
//! A write is validated by the declarative loader's own rules (`load_fragment`: the entity
//! alone, its references resolved against the database), stored as Kong's JSON with the
//! columns the schema enforces, and logged by the table's trigger. Foreign keys come in any
//! form Kong accepts (`{"id": ..}`, `{"name": ..}`, `{"username": ..}`) and are stored by id.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use deadpool_postgres::Pool;
use gangway_config::dao::{DaoError, Kind, kind_named};
use gangway_config::declarative::{Existing, load_fragment};
use gangway_config::store::{Address, ConfigStore, Page, PageQuery, StoreFuture, TagFilter};
use gangway_config::{Config, ConfigErrors, PluginSchemas};
use serde_json::{Map, Value, json};
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The Admin API's store when `database = postgres`.
pub struct PgStore {
    pool: Pool,
    /// The read replica (`pg_ro_*`), for reads that need not see a write just made.
    replica: Option<Pool>,
    plugins: Arc<dyn PluginSchemas + Send + Sync>,
}

impl PgStore {
    /// A store over `pool` (and `replica` for reads, when given), validating plugin
    /// configs against `plugins`.
    pub fn new(
        pool: Pool,
        replica: Option<Pool>,
        plugins: Arc<dyn PluginSchemas + Send + Sync>,
    ) -> PgStore {
        PgStore {
            pool,
            replica,
            plugins,
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DaoError> {
        self.pool
            .get()
            .await
            .map_err(|e| DaoError::unavailable(&crate::explain(&e)))
    }

    /// A connection for a read: the replica's when there is one.
    async fn reader(&self) -> Result<deadpool_postgres::Object, DaoError> {
        let pool = self.replica.as_ref().unwrap_or(&self.pool);
        pool.get()
            .await
            .map_err(|e| DaoError::unavailable(&crate::explain(&e)))
    }
}

/// The column a kind's endpoint key lives in (certificates are found through their SNIs).
fn key_column(kind: &Kind) -> Option<&'static str> {
    match kind.name {
        "services" | "routes" | "upstreams" | "snis" => Some("name"),
        "consumers" => Some("username"),
        "plugins" => Some("instance_name"),
        "keyauth_credentials" => Some("key"),
        "targets" => Some("target"),
        _ => None,
    }
}

/// True when the database is not there to answer: no server error at all (the connection
/// failed or closed), or a server shutting down or starting up (SQLSTATE class 57, such as
/// 57P01 `admin_shutdown`, which a killed server sends to its clients) or a connection
/// exception (class 08).
fn unavailable(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none_or(|dbe| {
        let code = dbe.code().code();
        code.starts_with("57") || code.starts_with("08")
    })
}

/// Maps driver errors to Kong's: an unreachable database is a 503, anything else a
/// database error (500).
fn db(e: tokio_postgres::Error) -> DaoError {
    if unavailable(&e) {
        return DaoError::unavailable(&crate::explain(&e));
    }
    DaoError::new(
        gangway_config::dao::ErrorCode::DatabaseError,
        crate::explain(&e),
    )
}

/// The SELECT list every read uses: the stored JSON, plus what Kong renders from elsewhere
/// (a key's seconds left, a certificate's SNIs). Seconds left count from the clock when read
/// (`clock_timestamp()`): `now()` is the transaction's start, and a write reads its row back
/// in the transaction that began before the expiry was computed.
fn select_list(kind: &Kind) -> &'static str {
    match kind.name {
        "keyauth_credentials" => {
            "t.entity, ceil(extract(epoch from (t.ttl - clock_timestamp())))::bigint AS ttl_left, \
             NULL::text[] AS snis"
        }
        "certificates" => {
            "t.entity, NULL::bigint AS ttl_left, \
             (SELECT coalesce(array_agg(s.name ORDER BY s.name), '{}') FROM snis s WHERE s.certificate_id = t.id) AS snis"
        }
        _ => "t.entity, NULL::bigint AS ttl_left, NULL::text[] AS snis",
    }
}

/// Rows of TTL kinds that expired are invisible.
fn alive(kind: &Kind) -> &'static str {
    if kind.ttl {
        " AND (t.ttl IS NULL OR t.ttl > now())"
    } else {
        ""
    }
}

fn render(kind: &Kind, row: &tokio_postgres::Row) -> Value {
    let mut entity: Value = row.get(0);
    if kind.ttl {
        let left: Option<i64> = row.get(1);
        entity["ttl"] = json!(left.map(|s| s.max(0)));
    }
    if kind.name == "certificates" {
        let snis: Option<Vec<String>> = row.get(2);
        entity["snis"] = json!(snis.unwrap_or_default());
    }
    entity
}

/// The WHERE clause and parameter finding the entity at `at`.
fn locate(kind: &Kind, at: &Address) -> Result<(String, Box<dyn ToSql + Sync + Send>), DaoError> {
    match at {
        Address::Id(id) => Ok(("t.id = $1".into(), Box::new(*id))),
        Address::Key(key) => match (kind.name, key_column(kind)) {
            ("certificates", _) => Ok((
                "t.id = (SELECT certificate_id FROM snis WHERE name = $1)".into(),
                Box::new(key.clone()),
            )),
            (_, Some(column)) => Ok((format!("t.{column} = $1"), Box::new(key.clone()))),
            // Kinds addressed by id only: a key finds nothing.
            (_, None) => Ok(("false AND $1::text IS NULL".into(), Box::new(key.clone()))),
        },
    }
}

async fn select_one(
    client: &impl GenericClient,
    kind: &Kind,
    at: &Address,
) -> Result<Option<Value>, DaoError> {
    let (filter, param) = locate(kind, at)?;
    let sql = format!(
        "SELECT {} FROM {} t WHERE {filter}{}",
        select_list(kind),
        kind.name,
        alive(kind)
    );
    let row = client.query_opt(&sql, &[&*param]).await.map_err(db)?;
    Ok(row.map(|r| render(kind, &r)))
}

/// Kong's offset: the base64 of the JSON array of the last row's primary key.
fn encode_offset(id: Uuid) -> String {
    STANDARD_NO_PAD.encode(json!([id]).to_string())
}

fn decode_offset(token: &str) -> Result<Uuid, DaoError> {
    let bytes = STANDARD_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| DaoError::invalid_offset(token, "bad base64 encoding"))?;
    let pk: Value = serde_json::from_slice(&bytes)
        .map_err(|_| DaoError::invalid_offset(token, "bad json encoding"))?;
    pk[0]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DaoError::invalid_offset(token, "bad json encoding"))
}

async fn page(
    client: &impl GenericClient,
    kind: &Kind,
    query: &PageQuery,
) -> Result<Page, DaoError> {
    let mut filters = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut param =
        |value: Box<dyn ToSql + Sync + Send>, filters: &mut Vec<String>, clause: &str| {
            params.push(value);
            filters.push(clause.replace('?', &format!("${}", params.len())));
        };
    if let Some(token) = &query.offset {
        param(Box::new(decode_offset(token)?), &mut filters, "t.id > ?");
    }
    if let Some((field, id)) = query.parent {
        param(Box::new(id), &mut filters, &format!("t.{field}_id = ?"));
    }
    match &query.tags {
        Some(TagFilter::All(tags)) => param(Box::new(tags.clone()), &mut filters, "t.tags @> ?"),
        Some(TagFilter::Any(tags)) => param(Box::new(tags.clone()), &mut filters, "t.tags && ?"),
        None => {}
    }
    if let Some(custom_id) = &query.custom_id {
        param(Box::new(custom_id.clone()), &mut filters, "t.custom_id = ?");
    }
    let size = query.size.clamp(1, 1000);
    let mut sql = format!(
        "SELECT {}, t.id FROM {} t WHERE true",
        select_list(kind),
        kind.name
    );
    for f in &filters {
        sql.push_str(" AND ");
        sql.push_str(f);
    }
    sql.push_str(alive(kind));
    sql.push_str(&format!(" ORDER BY t.id LIMIT {}", size + 1));
    let refs: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&sql, &refs).await.map_err(db)?;
    let more = rows.len() > size;
    let rows = &rows[..rows.len().min(size)];
    let offset = more
        .then(|| rows.last().map(|r| encode_offset(r.get(3))))
        .flatten();
    Ok(Page {
        data: rows.iter().map(|r| render(kind, r)).collect(),
        offset,
    })
}

/// References a write resolved before validation: the loader finds them here.
struct Resolved(HashSet<(&'static str, Uuid)>);

impl Existing for Resolved {
    fn resolve(&self, kind: &str, key: &str) -> Option<Uuid> {
        let id: Uuid = key.parse().ok()?;
        self.0
            .iter()
            .any(|(k, i)| *k == kind && *i == id)
            .then_some(id)
    }
}

/// Rewrites every foreign key of `entity` to `{"id": ..}`, checking that it exists: an
/// unknown id is Kong's code 4, an unknown name code 13.
async fn resolve_foreign_keys(
    client: &impl GenericClient,
    kind: &Kind,
    entity: &mut Map<String, Value>,
) -> Result<Resolved, DaoError> {
    let mut resolved = HashSet::new();
    for fk in kind.foreign {
        let Some(parent) = kind_named(fk.kind) else {
            continue;
        };
        let reference = match entity.get(fk.field) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => ("id", s.clone()),
            Some(Value::Object(o)) => {
                match ["id", "name", "username"].iter().find_map(|k| {
                    o.get(*k)
                        .and_then(Value::as_str)
                        .map(|v| (*k, v.to_owned()))
                }) {
                    Some(found) => found,
                    // Let the loader report the shape problem with its message.
                    None => continue,
                }
            }
            Some(_) => continue,
        };
        let explicit_id = matches!(entity.get(fk.field), Some(Value::Object(_)));
        let at = match reference.0 {
            "id" => match gangway_config::hyphenated_uuid(&reference.1) {
                Some(id) => Address::Id(id),
                // `{"id": "x"}` must be a UUID (Kong's schema says so); a bare string may
                // also be a name.
                None if explicit_id => {
                    return Err(DaoError::schema_violation(&[(
                        format!("{}.id", fk.field),
                        "expected a valid UUID".into(),
                    )]));
                }
                None => Address::Key(reference.1.clone()),
            },
            _ => Address::Key(reference.1.clone()),
        };
        let found = select_one(client, parent, &at).await?;
        let Some(id) = found
            .as_ref()
            .and_then(|p| p["id"].as_str())
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            return Err(match at {
                Address::Id(id) => {
                    DaoError::foreign_key_missing(fk.field, &id.to_string(), parent.name)
                }
                Address::Key(value) => {
                    DaoError::foreign_key_unresolved(fk.field, reference.0, &value, parent.name)
                }
            });
        };
        entity.insert(fk.field.to_owned(), json!({ "id": id }));
        resolved.insert((parent.name, id));
    }
    Ok(Resolved(resolved))
}

/// What a validated entity stores.
pub(crate) struct Stored {
    id: Uuid,
    entity: Value,
    /// Column values beyond id, entity, tags and created_at, by column name.
    columns: Vec<(&'static str, Box<dyn ToSql + Sync + Send>)>,
    tags: Option<Vec<String>>,
    created_at: i64,
}

impl Stored {
    /// The names of the columns beyond id, entity, tags and created_at.
    pub(crate) fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|(c, _)| *c).collect()
    }
}

fn entity_uuid(entity: &Value) -> Option<Uuid> {
    entity["id"].as_str().and_then(|s| s.parse().ok())
}

fn fk_id(entity: &Value, field: &str) -> Option<Uuid> {
    entity[field]["id"].as_str().and_then(|s| s.parse().ok())
}

fn text(entity: &Value, field: &str) -> Option<String> {
    entity[field].as_str().map(str::to_owned)
}

/// The children kong.yml nests under a parent, by the parent's kind and the field: fields
/// the Admin API does not take.
const NESTED_CHILDREN: [(&str, &str); 7] = [
    ("services", "routes"),
    ("services", "plugins"),
    ("routes", "plugins"),
    ("consumers", "plugins"),
    ("consumers", "keyauth_credentials"),
    ("consumers", "acls"),
    ("upstreams", "targets"),
];

/// The first entity of `kind` in `config`, as Kong's JSON, and for keys their expiry.
fn take(config: &Config, kind: &Kind) -> Option<(Value, Option<SystemTime>)> {
    let value = match kind.name {
        "services" => serde_json::to_value(config.services.first()?),
        "routes" => serde_json::to_value(config.routes.first()?),
        "consumers" => serde_json::to_value(config.consumers.first()?),
        "plugins" => serde_json::to_value(config.plugins.first()?),
        "upstreams" => serde_json::to_value(config.upstreams.first()?),
        "targets" => serde_json::to_value(config.targets.first()?),
        "certificates" => serde_json::to_value(config.certificates.first()?),
        "snis" => serde_json::to_value(config.snis.first()?),
        "ca_certificates" => serde_json::to_value(config.ca_certificates.first()?),
        "acls" => serde_json::to_value(config.acls.first()?),
        "keyauth_credentials" => {
            let cred = config.keyauth_credentials.first()?;
            let expires = cred
                .expires_at
                .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.get().max(0) as u64));
            return serde_json::to_value(cred).ok().map(|v| (v, expires));
        }
        _ => return None,
    };
    value.ok().map(|v| (v, None))
}

/// Validates `input` as one entity of `kind` by the loader's rules; returns what to store.
fn validate(
    kind: &Kind,
    input: Map<String, Value>,
    resolved: &Resolved,
    plugins: &dyn PluginSchemas,
) -> Result<Stored, DaoError> {
    // The declarative format nests children (a service's routes, a consumer's keys); the
    // Admin API takes one entity, and Kong refuses those fields rather than drop them.
    let nested: Vec<(String, String)> = NESTED_CHILDREN
        .iter()
        .filter(|(parent, child)| *parent == kind.name && input.contains_key(*child))
        .map(|(_, child)| ((*child).to_owned(), "unknown field".to_owned()))
        .collect();
    if !nested.is_empty() {
        return Err(DaoError::schema_violation(&nested));
    }
    let doc = json!({ "_format_version": "3.0", kind.name: [Value::Object(input)] });
    let config = load_fragment(doc, resolved, plugins).map_err(|e| violation(kind, &e))?;
    let (entity, expires) = take(&config, kind).ok_or_else(|| {
        DaoError::new(gangway_config::dao::ErrorCode::SchemaViolation, "no entity")
    })?;
    Ok(stored(kind, entity, expires))
}

/// What storing a validated entity (Kong's JSON; a key's expiry) writes.
pub(crate) fn stored(kind: &Kind, entity: Value, expires: Option<SystemTime>) -> Stored {
    let id: Uuid = entity["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let tags = entity["tags"].as_array().map(|tags| {
        tags.iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    });
    let created_at = entity["created_at"].as_i64().unwrap_or(0);
    let mut columns: Vec<(&'static str, Box<dyn ToSql + Sync + Send>)> = Vec::new();
    for fk in kind.foreign {
        let column: &'static str = match fk.field {
            "client_certificate" => "client_certificate_id",
            "service" => "service_id",
            "route" => "route_id",
            "consumer" => "consumer_id",
            "upstream" => "upstream_id",
            "certificate" => "certificate_id",
            _ => continue,
        };
        columns.push((column, Box::new(fk_id(&entity, fk.field))));
    }
    match kind.name {
        "services" | "routes" | "upstreams" | "snis" => {
            columns.push(("name", Box::new(text(&entity, "name"))));
        }
        "consumers" => {
            columns.push(("username", Box::new(text(&entity, "username"))));
            columns.push(("custom_id", Box::new(text(&entity, "custom_id"))));
        }
        "plugins" => {
            let scope = |f: &str| {
                fk_id(&entity, f)
                    .map(|id| id.to_string())
                    .unwrap_or_default()
            };
            let name = text(&entity, "name").unwrap_or_default();
            let cache_key = format!(
                "plugins:{name}:{}:{}:{}",
                scope("route"),
                scope("service"),
                scope("consumer")
            );
            columns.push(("name", Box::new(name)));
            columns.push(("instance_name", Box::new(text(&entity, "instance_name"))));
            columns.push(("cache_key", Box::new(cache_key)));
        }
        "keyauth_credentials" => {
            columns.push(("key", Box::new(text(&entity, "key"))));
            columns.push(("ttl", Box::new(expires)));
        }
        "acls" => columns.push(("group_name", Box::new(text(&entity, "group")))),
        "targets" => columns.push(("target", Box::new(text(&entity, "target")))),
        "ca_certificates" => columns.push(("cert_digest", Box::new(text(&entity, "cert_digest")))),
        _ => {}
    }
    Stored {
        id,
        entity,
        columns,
        tags,
        created_at,
    }
}

/// The loader's errors for a one-entity document, as Kong's schema violation.
fn violation(kind: &Kind, errors: &ConfigErrors) -> DaoError {
    DaoError::from_config_errors(&format!("{}[0]", kind.name), errors)
}

/// Kong's message for a unique constraint the database refused.
fn unique_error(kind: &Kind, stored: &Stored, constraint: &str) -> DaoError {
    let field = [
        "instance_name",
        "username",
        "custom_id",
        "cert_digest",
        "cache_key",
        "group_name",
        "target",
        "name",
        "key",
    ]
    .into_iter()
    .find(|f| constraint.contains(f));
    match field {
        Some("cache_key") => {
            let name = text(&stored.entity, "name").unwrap_or_default();
            let scope = |f: &str| match fk_id(&stored.entity, f) {
                Some(id) => format!("{{id=\"{id}\"}}"),
                None => "null".to_owned(),
            };
            DaoError {
                code: gangway_config::dao::ErrorCode::UniqueViolation,
                message: format!(
                    "UNIQUE violation detected on '{{consumer={},name=\"{name}\",route={},service={}}}'",
                    scope("consumer"),
                    scope("route"),
                    scope("service")
                ),
                fields: Some(json!({
                    "consumer": stored.entity["consumer"], "name": name,
                    "route": stored.entity["route"], "service": stored.entity["service"],
                })),
            }
        }
        Some("group_name") => {
            DaoError::unique_violation("group", &text(&stored.entity, "group").unwrap_or_default())
        }
        Some(f) if f != "_pkey" => {
            let value = text(&stored.entity, f).unwrap_or_default();
            DaoError::unique_violation(f, &value)
        }
        _ => {
            let _ = kind;
            DaoError::primary_key_violation(&stored.id.to_string())
        }
    }
}

/// Maps a refused write to Kong's error.
fn write_error(kind: &Kind, stored: &Stored, e: tokio_postgres::Error) -> DaoError {
    let Some(dbe) = e.as_db_error().filter(|_| !unavailable(&e)) else {
        return DaoError::unavailable(&crate::explain(&e));
    };
    let constraint = dbe.constraint().unwrap_or_default();
    match dbe.code().code() {
        "23505" if constraint.ends_with("_pkey") => {
            DaoError::primary_key_violation(&stored.id.to_string())
        }
        "23505" => unique_error(kind, stored, constraint),
        "23503" => {
            // The referenced row vanished between the check and the write.
            let field = kind
                .foreign
                .iter()
                .find(|f| constraint.contains(f.field))
                .map_or("id", |f| f.field);
            let parent = kind
                .foreign
                .iter()
                .find(|f| f.field == field)
                .map_or("", |f| f.kind);
            let id = fk_id(&stored.entity, field)
                .map(|i| i.to_string())
                .unwrap_or_default();
            DaoError::foreign_key_missing(field, &id, parent)
        }
        _ => db(e),
    }
}

/// Kong's rule that dynamic plugin ordering never coexists with consumer-scoped plugins,
/// held across the stored plugins: a plugin write that would break it is refused, as the
/// loader would refuse the whole config (and no node could load it). The writes it concerns
/// take one transaction-scoped lock first, so two racing ones cannot both pass.
async fn check_ordering_scope(
    tx: &impl GenericClient,
    kind: &Kind,
    stored: &Stored,
) -> Result<(), DaoError> {
    if kind.name != "plugins" {
        return Ok(());
    }
    let ordered = !stored.entity["ordering"].is_null();
    let scoped = !stored.entity["consumer"].is_null();
    let refused = || {
        DaoError::schema_violation(&[(
            "ordering".into(),
            "dynamic plugin ordering cannot be combined with consumer-scoped plugins".into(),
        )])
    };
    match (ordered, scoped) {
        (false, false) => return Ok(()),
        (true, true) => return Err(refused()),
        _ => {}
    }
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('gangway plugin ordering'))",
        &[],
    )
    .await
    .map_err(db)?;
    let others = if ordered {
        "SELECT EXISTS (SELECT 1 FROM plugins WHERE consumer_id IS NOT NULL AND id <> $1)"
    } else {
        "SELECT EXISTS (SELECT 1 FROM plugins \
           WHERE coalesce(jsonb_typeof(rest->'ordering'), 'null') <> 'null' AND id <> $1)"
    };
    let conflict: bool = tx
        .query_one(others, &[&stored.id])
        .await
        .map_err(db)?
        .get(0);
    if conflict {
        return Err(refused());
    }
    Ok(())
}

pub(crate) async fn write(
    client: &impl GenericClient,
    kind: &Kind,
    stored: &Stored,
    replace: bool,
) -> Result<(), DaoError> {
    // An expired key is invisible but its row still holds the key's unique index: Kong
    // deletes expired rows, so the key is free to use again.
    if let Some((_, key)) = stored.columns.iter().find(|(c, _)| *c == "key") {
        if kind.ttl {
            let sql = format!(
                "DELETE FROM {} WHERE key = $1 AND id <> $2 AND ttl IS NOT NULL AND ttl <= now()",
                kind.name
            );
            let key: &(dyn ToSql + Sync) = &**key;
            client.execute(&sql, &[key, &stored.id]).await.map_err(db)?;
        }
    }
    client
        .execute(&write_sql(kind, stored, replace), &write_params(stored))
        .await
        .map(|_| ())
        .map_err(|e| write_error(kind, stored, e))
}

/// [`write`] with the statement prepared once (by [`write_sql`]) for many rows of a kind.
pub(crate) async fn write_prepared(
    client: &impl GenericClient,
    statement: &tokio_postgres::Statement,
    kind: &Kind,
    stored: &Stored,
) -> Result<(), DaoError> {
    client
        .execute(statement, &write_params(stored))
        .await
        .map(|_| ())
        .map_err(|e| write_error(kind, stored, e))
}

/// The INSERT (an upsert by id with `replace`) of `stored`'s columns into `kind`'s table.
pub(crate) fn write_sql(kind: &Kind, stored: &Stored, replace: bool) -> String {
    let mut names = vec!["id", "entity", "tags", "created_at"];
    names.extend(stored.columns.iter().map(|(c, _)| *c));
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        kind.name,
        names.join(", "),
        placeholders.join(", ")
    );
    if replace {
        let updates: Vec<String> = names[1..]
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        sql.push_str(&format!(
            " ON CONFLICT (id) DO UPDATE SET {}",
            updates.join(", ")
        ));
    }
    sql
}

fn write_params(stored: &Stored) -> Vec<&(dyn ToSql + Sync)> {
    let mut params: Vec<&(dyn ToSql + Sync)> =
        vec![&stored.id, &stored.entity, &stored.tags, &stored.created_at];
    params.extend(
        stored
            .columns
            .iter()
            .map(|(_, v)| &**v as &(dyn ToSql + Sync)),
    );
    params
}

/// Kong expands a plugin PATCH's deprecated fields before the merge: `config.redis_host`
/// sets `config.redis.host`. Merged first, the stored `redis.host` would stand beside the
/// patch's `redis_host` and fail as a mismatch, so the stored values they replace go.
fn drop_stored_shorthand_targets(current: &mut Value, patch: &Value, plugins: &dyn PluginSchemas) {
    let name = patch
        .get("name")
        .or_else(|| current.get("name"))
        .and_then(Value::as_str);
    let (Some(schema), Some(Value::Object(changes))) =
        (name.and_then(|n| plugins.schema(n)), patch.get("config"))
    else {
        return;
    };
    for shorthand in &schema.config.shorthands {
        if changes.get(shorthand.name).is_none_or(Value::is_null) {
            continue;
        }
        let (parent, last) = match shorthand.target.rsplit_once('.') {
            Some((parent, last)) => (format!("/config/{}", parent.replace('.', "/")), last),
            None => ("/config".to_owned(), shorthand.target),
        };
        if let Some(Value::Object(record)) = current.pointer_mut(&parent) {
            record.remove(last);
        }
    }
}

/// Merges a PATCH into the stored entity: records merge field by field (a plugin's
/// `config.minute` alone), anything else is replaced, as Kong's `merge_values` does.
fn merge(current: &mut Value, patch: Value) {
    match (current, patch) {
        (Value::Object(base), Value::Object(changes)) => {
            for (k, v) in changes {
                // A route's `headers` is a map, which Kong replaces whole.
                let record =
                    k != "headers" && v.is_object() && base.get(&k).is_some_and(Value::is_object);
                if record {
                    if let Some(slot) = base.get_mut(&k) {
                        merge(slot, v);
                    }
                } else {
                    base.insert(k, v);
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Kong's `ttl` input is seconds from now; stored rows carry the expiry instead, and an
/// output's `ttl` (seconds left) must not be taken for input again.
fn strip_output_only(kind: &Kind, entity: &mut Map<String, Value>) {
    if kind.name == "certificates" {
        entity.remove("snis");
    }
    if kind.ttl {
        entity.remove("ttl");
    }
}

/// A certificate's `snis` in a write body, taken out of it: `None` leaves the names as they
/// are; a list (`null` is the empty one) becomes the certificate's names, sorted, as
/// Kong's certificates DAO makes them.
fn take_snis(kind: &Kind, input: &mut Map<String, Value>) -> Result<Option<Vec<String>>, DaoError> {
    if kind.name != "certificates" {
        return Ok(None);
    }
    let refuse = |message: String| DaoError::schema_violation(&[("snis".to_owned(), message)]);
    let mut names: Vec<String> = match input.remove("snis") {
        None => return Ok(None),
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(name) => Ok(name),
                _ => Err(refuse("expected a string".into())),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(refuse("expected an array".into())),
    };
    names.sort();
    if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(refuse(format!("{} is duplicated", twice[0])));
    }
    Ok(Some(names))
}

impl PgStore {
    /// Makes `names` the SNIs of certificate `cert`: a name another certificate holds is
    /// refused with Kong's message, names no longer listed go, new ones are created.
    async fn set_snis(
        &self,
        conn: &impl GenericClient,
        cert: Uuid,
        names: &[String],
    ) -> Result<(), DaoError> {
        let Some(snis) = kind_named("snis") else {
            return Ok(());
        };
        let mut held = HashSet::new();
        for name in names {
            let owner = conn
                .query_opt("SELECT certificate_id FROM snis WHERE name = $1", &[name])
                .await
                .map_err(db)?
                .map(|row| row.get::<_, Uuid>(0));
            match owner {
                Some(owner) if owner != cert => {
                    return Err(DaoError::schema_violation(&[(
                        "snis".to_owned(),
                        format!("{name} already associated with existing certificate '{owner}'"),
                    )]));
                }
                Some(_) => {
                    held.insert(name);
                }
                None => {}
            }
        }
        conn.execute(
            "DELETE FROM snis WHERE certificate_id = $1 AND NOT (name = ANY($2))",
            &[&cert, &names],
        )
        .await
        .map_err(db)?;
        for name in names.iter().filter(|n| !held.contains(n)) {
            let sni = json!({"id": Uuid::new_v4(), "name": name, "certificate": {"id": cert}});
            let Value::Object(sni) = sni else { continue };
            self.insert_on(conn, snis, sni).await?;
        }
        Ok(())
    }

    /// Resolves, validates, writes and reads back one new entity on `conn`.
    async fn insert_on(
        &self,
        conn: &impl GenericClient,
        kind: &'static Kind,
        mut input: Map<String, Value>,
    ) -> Result<Value, DaoError> {
        let resolved = resolve_foreign_keys(conn, kind, &mut input).await?;
        let stored = validate(kind, input, &resolved, self.plugins.as_ref())?;
        check_ordering_scope(conn, kind, &stored).await?;
        write(conn, kind, &stored, false).await?;
        select_one(conn, kind, &Address::Id(stored.id))
            .await?
            .ok_or_else(|| DaoError::not_found_by_id(&stored.id.to_string()))
    }

    async fn insert_entity(&self, kind: &'static Kind, input: Value) -> Result<Value, DaoError> {
        let Value::Object(mut input) = input else {
            return Err(DaoError::schema_violation(&[(
                String::new(),
                "expected a record".into(),
            )]));
        };
        input.entry("id").or_insert_with(|| json!(Uuid::new_v4()));
        let snis = take_snis(kind, &mut input)?;
        let mut client = self.client().await?;
        // Only a plugin write (for the lock its ordering check holds) and a certificate with
        // names take a transaction: BEGIN and COMMIT are two more round trips, which cost 16
        // concurrent Admin API clients creating consumers and keys about 40% of their rate.
        if kind.name != "plugins" && snis.is_none() {
            return self.insert_on(&**client, kind, input).await;
        }
        let tx = client.transaction().await.map_err(db)?;
        let mut saved = self.insert_on(&*tx, kind, input).await?;
        if let (Some(names), Some(id)) = (snis, entity_uuid(&saved)) {
            self.set_snis(&*tx, id, &names).await?;
            saved = select_one(&*tx, kind, &Address::Id(id))
                .await?
                .ok_or_else(|| DaoError::not_found_by_id(&id.to_string()))?;
        }
        tx.commit().await.map_err(db)?;
        Ok(saved)
    }

    async fn update_entity(
        &self,
        kind: &'static Kind,
        at: &Address,
        patch: Value,
    ) -> Result<Option<Value>, DaoError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut current) = select_one(&*tx, kind, at).await? else {
            return Err(not_found(kind, at));
        };
        // A PATCH leaves what it does not name: the expiry (rendered as the seconds left,
        // then stripped as output-only) and the id, which a body must not move.
        let ttl = patch.get("ttl").or_else(|| current.get("ttl")).cloned();
        let id = current.get("id").cloned();
        let mut patch = patch;
        let snis = match &mut patch {
            Value::Object(fields) => take_snis(kind, fields)?,
            _ => None,
        };
        // Kong expands a shorthand in the patch before the merge: a service's `url` sets
        // all four parts it stands for, so the stored ones must not outvote it.
        let url_given = patch.get("url").is_some_and(|u| !u.is_null());
        if let (true, "services", Value::Object(stored)) = (url_given, kind.name, &mut current) {
            for part in ["protocol", "host", "port", "path"] {
                stored.remove(part);
            }
        }
        if kind.name == "plugins" {
            drop_stored_shorthand_targets(&mut current, &patch, self.plugins.as_ref());
        }
        merge(&mut current, patch);
        let Value::Object(mut input) = current else {
            return Err(not_found(kind, at));
        };
        strip_output_only(kind, &mut input);
        if let Some(ttl) = ttl.filter(|t| kind.ttl && !t.is_null()) {
            input.insert("ttl".into(), ttl);
        }
        if let Some(id) = id {
            input.insert("id".into(), id);
        }
        let resolved = resolve_foreign_keys(&*tx, kind, &mut input).await?;
        let stored = validate(kind, input, &resolved, self.plugins.as_ref())?;
        check_ordering_scope(&*tx, kind, &stored).await?;
        write(&*tx, kind, &stored, true).await?;
        if let Some(names) = snis {
            self.set_snis(&*tx, stored.id, &names).await?;
        }
        let updated = select_one(&*tx, kind, &Address::Id(stored.id)).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    async fn upsert_entity(
        &self,
        kind: &'static Kind,
        at: &Address,
        body: Value,
    ) -> Result<Value, DaoError> {
        let Value::Object(mut input) = body else {
            return Err(DaoError::schema_violation(&[(
                String::new(),
                "expected a record".into(),
            )]));
        };
        let mut snis = take_snis(kind, &mut input)?;
        if kind.name == "certificates" {
            // A PUT replaces the whole certificate, as Kong's: without `snis` it keeps none,
            // and one addressed by a name keeps that name.
            let names = snis.get_or_insert_with(Vec::new);
            if let Address::Key(name) = at {
                if !names.contains(name) {
                    names.push(name.clone());
                    names.sort();
                }
            }
        }
        strip_output_only(kind, &mut input);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let id = match at {
            Address::Id(id) => *id,
            Address::Key(key) => {
                // The URL's key wins over the body's (`PUT /services/foo` names it foo).
                if let Some(column) = key_column(kind) {
                    let field = if column == "username" {
                        "username"
                    } else {
                        column
                    };
                    input.insert(field.to_owned(), json!(key));
                }
                match select_one(&*tx, kind, at).await? {
                    Some(existing) => existing["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(Uuid::new_v4),
                    None => Uuid::new_v4(),
                }
            }
        };
        input.insert("id".into(), json!(id));
        let resolved = resolve_foreign_keys(&*tx, kind, &mut input).await?;
        let stored = validate(kind, input, &resolved, self.plugins.as_ref())?;
        check_ordering_scope(&*tx, kind, &stored).await?;
        write(&*tx, kind, &stored, true).await?;
        if let Some(names) = snis {
            self.set_snis(&*tx, stored.id, &names).await?;
        }
        let saved = select_one(&*tx, kind, &Address::Id(stored.id))
            .await?
            .ok_or_else(|| DaoError::not_found_by_id(&stored.id.to_string()))?;
        tx.commit().await.map_err(db)?;
        Ok(saved)
    }

    async fn delete_entity(&self, kind: &'static Kind, at: &Address) -> Result<(), DaoError> {
        let client = self.client().await?;
        if let (Address::Id(ca), "ca_certificates") = (at, kind.name) {
            // Services list their CAs in the entity, with no foreign key: deleted from under
            // a service, its pinned CA would be gone and verification looser, as Kong refuses.
            let sql = "SELECT id FROM services WHERE entity->'ca_certificates' ? $1 LIMIT 1";
            let ca = ca.to_string();
            if let Some(row) = client.query_opt(sql, &[&ca]).await.map_err(db)? {
                let by: Uuid = row.get(0);
                return Err(DaoError::ca_still_referenced(
                    &ca,
                    "services",
                    &by.to_string(),
                ));
            }
        }
        let (filter, param) = locate(kind, at)?;
        let sql = format!("DELETE FROM {} t WHERE {filter}", kind.name);
        match client.execute(&sql, &[&*param]).await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_db_error() {
                Some(dbe) if dbe.code().code() == "23503" => {
                    let child = dbe.table().unwrap_or("entities").to_owned();
                    Err(DaoError::still_referenced(&child, kind.name))
                }
                _ => Err(db(e)),
            },
        }
    }
}

fn not_found(kind: &Kind, at: &Address) -> DaoError {
    match at {
        Address::Id(id) => DaoError::not_found_by_id(&id.to_string()),
        Address::Key(key) => DaoError::not_found_by_field(kind.endpoint_key.unwrap_or("id"), key),
    }
}

/// Kong's `/tags` rows from every table, ordered by (entity_name, entity_id, tag), keyset
/// paged with the last row as the offset.
async fn tags_page(
    client: &impl GenericClient,
    tag: Option<&str>,
    query: &PageQuery,
) -> Result<Page, DaoError> {
    let union: Vec<String> = gangway_config::dao::KINDS
        .iter()
        .map(|k| {
            format!(
                "SELECT '{0}'::text AS entity_name, id AS entity_id, unnest(tags) AS tag FROM {0}",
                k.name
            )
        })
        .collect();
    let after: Option<(String, Uuid, String)> = match &query.offset {
        Some(token) => {
            let bytes = STANDARD_NO_PAD
                .decode(token.trim_end_matches('='))
                .map_err(|_| DaoError::invalid_offset(token, "bad base64 encoding"))?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|_| DaoError::invalid_offset(token, "bad json encoding"))?;
            let parts = (
                v[0].as_str().map(str::to_owned),
                v[1].as_str().and_then(|s| s.parse().ok()),
                v[2].as_str().map(str::to_owned),
            );
            match parts {
                (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                _ => return Err(DaoError::invalid_offset(token, "bad json encoding")),
            }
        }
        None => None,
    };
    let size = query.size.clamp(1, 1000);
    let sql = format!(
        "SELECT entity_name, entity_id, tag FROM ({}) t          WHERE ($1::text IS NULL OR tag = $1)          AND ($2::text IS NULL OR (entity_name, entity_id, tag) > ($2, $3, $4))          ORDER BY entity_name, entity_id, tag LIMIT {}",
        union.join(" UNION ALL "),
        size + 1
    );
    let (a, b, c) = match &after {
        Some((a, b, c)) => (Some(a.clone()), Some(*b), Some(c.clone())),
        None => (None, None, None),
    };
    let rows = client.query(&sql, &[&tag, &a, &b, &c]).await.map_err(db)?;
    let more = rows.len() > size;
    let rows = &rows[..rows.len().min(size)];
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"entity_name": r.get::<_, String>(0), "entity_id": r.get::<_, Uuid>(1), "tag": r.get::<_, String>(2)})
        })
        .collect();
    let offset = more
        .then(|| {
            data.last().map(|l| {
                STANDARD_NO_PAD
                    .encode(json!([l["entity_name"], l["entity_id"], l["tag"]]).to_string())
            })
        })
        .flatten();
    Ok(Page { data, offset })
}

impl ConfigStore for PgStore {
    fn tags<'a>(&'a self, tag: Option<&'a str>, query: &'a PageQuery) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let client = self.reader().await?;
            tags_page(&**client, tag, query).await
        })
    }

    fn select<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
    ) -> StoreFuture<'a, Option<Value>> {
        Box::pin(async move {
            let client = self.reader().await?;
            select_one(&**client, kind, at).await
        })
    }

    fn page<'a>(&'a self, kind: &'static Kind, query: &'a PageQuery) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let client = self.reader().await?;
            page(&**client, kind, query).await
        })
    }

    fn insert<'a>(&'a self, kind: &'static Kind, entity: Value) -> StoreFuture<'a, Value> {
        Box::pin(self.insert_entity(kind, entity))
    }

    fn update<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
        patch: Value,
    ) -> StoreFuture<'a, Option<Value>> {
        Box::pin(self.update_entity(kind, at, patch))
    }

    fn upsert<'a>(
        &'a self,
        kind: &'static Kind,
        at: &'a Address,
        entity: Value,
    ) -> StoreFuture<'a, Value> {
        Box::pin(self.upsert_entity(kind, at, entity))
    }

    fn delete<'a>(&'a self, kind: &'static Kind, at: &'a Address) -> StoreFuture<'a, ()> {
        Box::pin(self.delete_entity(kind, at))
    }

    fn broadcast_target_health<'a>(
        &'a self,
        upstream: &'a str,
        target: &'a str,
        address: Option<std::net::IpAddr>,
        healthy: bool,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let payload = crate::health_notice::payload(upstream, target, address, healthy);
            let client = self.client().await?;
            client
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&crate::health_notice::CHANNEL, &payload],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn reachable(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            match self.pool.get().await {
                Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
                Err(_) => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_kongs_base64_json_primary_keys() {
        let id = Uuid::from_u128(5);
        let token = encode_offset(id);
        assert_eq!(
            String::from_utf8(STANDARD_NO_PAD.decode(&token).expect("base64")).expect("utf8"),
            format!("[\"{id}\"]")
        );
        assert_eq!(decode_offset(&token), Ok(id));
        assert_eq!(
            decode_offset("!!"),
            Err(DaoError::invalid_offset("!!", "bad base64 encoding"))
        );
    }

    #[test]
    fn patches_merge_records_and_replace_the_rest() {
        let mut current = json!({"name": "p", "config": {"minute": 5, "hour": 100, "policy": "local"},
                                 "headers": {"a": ["1"]}, "tags": ["x"]});
        merge(
            &mut current,
            json!({"config": {"minute": 10}, "headers": {"b": ["2"]}, "tags": ["y"]}),
        );
        assert_eq!(
            current,
            json!({"name": "p", "config": {"minute": 10, "hour": 100, "policy": "local"},
                   "headers": {"b": ["2"]}, "tags": ["y"]})
        );
    }
}
