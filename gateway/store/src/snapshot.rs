//! Reading the database in one consistent snapshot, as declarative input: Kong's JSON,
//! foreign keys by id, a key's remaining `ttl`, a certificate without its rendered SNI names.
//! Rows arrive as the server sends them, so a million are never in memory at once.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use gangway_config::declarative::{ConfigRef, DocumentBuilder, PluginRow};
use serde_json::{Map, Value, json};
use tokio_postgres::{Client, GenericClient};

use crate::StoreError;

/// What a snapshot streams out, in order.
enum Streamed<'r> {
    /// An entity of a kind.
    Entity(&'r str, Value),
    /// A distinct plugin config, as JSON text, by its md5; it comes before the plugins
    /// that use it.
    PluginConfig { md5: &'r str, text: &'r str },
    /// A plugin without its config, and its config's md5.
    Plugin(PluginRow<'r>, Option<&'r str>),
}

/// How plugins are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plugins {
    /// Each with its config.
    Whole,
    /// Each distinct config once, then every plugin without one: a portal's 100,000
    /// per-consumer instances of a handful of plans are mostly config, and printing each
    /// row's jsonb would cost the server more than everything else a node loads.
    ConfigsApart,
}

/// Streams every row of `kind` into `take`.
async fn each_row(
    client: &impl GenericClient,
    kind: &str,
    plugins: Plugins,
    take: &mut impl FnMut(Streamed<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if kind == "plugins" && plugins == Plugins::ConfigsApart {
        return each_plugin(client, take).await;
    }
    let sql = match kind {
        "keyauth_credentials" => "SELECT entity, ceil(extract(epoch from (ttl - now())))::bigint \
             FROM keyauth_credentials WHERE ttl IS NULL OR ttl > now()"
            .to_owned(),
        _ => format!("SELECT entity, NULL::bigint FROM {kind}"),
    };
    let rows = client.query_raw(&sql, no_params()).await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        take(Streamed::Entity(kind, as_input(&row)))?;
    }
    Ok(())
}

/// Streams the distinct plugin configs, then the plugins without theirs.
async fn each_plugin(
    client: &impl GenericClient,
    take: &mut impl FnMut(Streamed<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let configs = client
        .query_raw(
            "SELECT d.config_md5, (SELECT (p.entity->'config')::text FROM plugins p \
               WHERE p.config_md5 = d.config_md5 LIMIT 1) \
             FROM (SELECT DISTINCT config_md5 FROM plugins WHERE config_md5 IS NOT NULL) d",
            no_params(),
        )
        .await?;
    futures_util::pin_mut!(configs);
    while let Some(row) = configs.try_next().await? {
        take(Streamed::PluginConfig {
            md5: row.get(0),
            text: row.get(1),
        })?;
    }
    // The fields besides the columns, config and timestamps (`shape`) repeat from row to
    // row: the builder parses each distinct text once.
    let plugins = client
        .query_raw(
            "SELECT id, name, instance_name, route_id, service_id, consumer_id, config_md5, \
               shape, created_at \
             FROM plugins",
            no_params(),
        )
        .await?;
    futures_util::pin_mut!(plugins);
    while let Some(row) = plugins.try_next().await? {
        let plugin = PluginRow {
            id: row.get(0),
            name: row.get(1),
            instance_name: row.get(2),
            route: row.get(3),
            service: row.get(4),
            consumer: row.get(5),
            rest: row.get(7),
            created_at: row.get(8),
        };
        take(Streamed::Plugin(plugin, row.get(6)))?;
    }
    Ok(())
}

fn no_params() -> [&'static (dyn tokio_postgres::types::ToSql + Sync); 0] {
    []
}

/// A row (`entity`, a key's seconds left) as declarative input: a key's `ttl` is what it has
/// left, at least a second.
pub(crate) fn as_input(row: &tokio_postgres::Row) -> Value {
    let mut entity: Value = row.get(0);
    if let Some(left) = row.get::<_, Option<i64>>(1) {
        entity["ttl"] = json!(left.max(1));
    }
    entity
}

/// Streams every row of `kinds` into `take`, read in one snapshot of the database; returns
/// the last change-log sequence number that snapshot includes.
async fn snapshot(
    client: &mut Client,
    kinds: &[&str],
    plugins: Plugins,
    mut take: impl FnMut(Streamed<'_>) -> Result<(), StoreError>,
) -> Result<i64, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let seq: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) FROM gangway_changes", &[])
        .await?
        .get(0);
    for kind in kinds {
        each_row(&tx, kind, plugins, &mut take).await?;
    }
    tx.commit().await?;
    Ok(seq)
}

/// A declarative document of `kinds` (every list present, perhaps empty), read in one
/// snapshot of the database, and the last change-log sequence number that snapshot includes.
pub(crate) async fn document(
    client: &mut Client,
    kinds: &[&str],
) -> Result<(Value, i64), StoreError> {
    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));
    for kind in kinds {
        doc.insert((*kind).to_owned(), Value::Array(Vec::new()));
    }
    let seq = snapshot(client, kinds, Plugins::Whole, |streamed| {
        if let Streamed::Entity(kind, entity) = streamed {
            if let Some(Value::Array(list)) = doc.get_mut(kind) {
                list.push(entity);
            }
        }
        Ok(())
    })
    .await?;
    Ok((Value::Object(doc), seq))
}

/// The entities of `kinds`, read in one snapshot, in a document under construction, and the
/// last change-log sequence number that snapshot includes.
pub(crate) async fn building(
    client: &mut Client,
    kinds: &[&str],
) -> Result<(DocumentBuilder, i64), StoreError> {
    let mut doc = DocumentBuilder::new();
    for kind in kinds {
        doc.begin(kind);
    }
    let mut configs: HashMap<String, ConfigRef> = HashMap::new();
    let seq = snapshot(client, kinds, Plugins::ConfigsApart, |streamed| {
        match streamed {
            Streamed::Entity(kind, entity) => doc.push(kind, entity),
            Streamed::PluginConfig { md5, text } => {
                let config = doc.add_config(text).map_err(|e| {
                    StoreError::Config(format!("a stored plugin config is not JSON: {e}"))
                })?;
                configs.insert(md5.to_owned(), config);
            }
            Streamed::Plugin(row, md5) => {
                let config = md5.and_then(|m| configs.get(m)).copied();
                doc.push_plugin_row(row, config).map_err(|e| {
                    StoreError::Config(format!(
                        "a stored plugin's fields are not a JSON object: {e}"
                    ))
                })?;
            }
        }
        Ok(())
    })
    .await?;
    Ok((doc, seq))
}
