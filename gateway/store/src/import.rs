//! `gangway config db_import | db_export`: a declarative file into the database in one
//! transaction (upserts by id, nothing deleted, as Kong's), and the database out as a file.

use std::time::{Duration, SystemTime};

use gangway_config::Config;
use gangway_config::dao::{Kind, kind_named};
use serde_json::Value;
use tokio_postgres::Client;

use crate::StoreError;
use crate::dao::{Stored, stored, write, write_prepared, write_sql};

/// Kinds in the order their foreign keys allow.
const ORDER: [&str; 11] = [
    "certificates",
    "ca_certificates",
    "services",
    "routes",
    "consumers",
    "upstreams",
    "targets",
    "snis",
    "plugins",
    "keyauth_credentials",
    "acls",
];

/// Rows written per round of pipelined statements.
const CHUNK: usize = 1000;

/// Entities of `kind` in `config` as Kong's JSON, each with a key's expiry.
fn entities(config: &Config, kind: &str) -> Vec<(Value, Option<SystemTime>)> {
    fn all<T: serde::Serialize>(items: &[T]) -> Vec<(Value, Option<SystemTime>)> {
        items
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok().map(|v| (v, None)))
            .collect()
    }
    match kind {
        "certificates" => all(&config.certificates),
        "ca_certificates" => all(&config.ca_certificates),
        "services" => all(&config.services),
        "routes" => all(&config.routes),
        "consumers" => all(&config.consumers),
        "upstreams" => all(&config.upstreams),
        "targets" => all(&config.targets),
        "snis" => all(&config.snis),
        "plugins" => all(&config.plugins),
        "acls" => all(&config.acls),
        "keyauth_credentials" => config
            .keyauth_credentials
            .iter()
            .filter_map(|c| {
                let expires = c
                    .expires_at
                    .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.get().max(0) as u64));
                serde_json::to_value(c).ok().map(|v| (v, expires))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Upserts every entity of `config` in one transaction: all of it lands, or none.
/// Returns how many entities of each kind were written.
pub async fn import(
    client: &mut Client,
    config: &Config,
) -> Result<Vec<(&'static str, usize)>, StoreError> {
    let tx = client.transaction().await?;
    let mut counts = Vec::new();
    for name in ORDER {
        let Some(kind) = kind_named(name) else {
            continue;
        };
        let rows: Vec<Stored> = entities(config, name)
            .into_iter()
            .map(|(entity, expires)| stored(kind, entity, expires))
            .collect();
        // Rows of a kind share their columns: one statement, prepared once (a row with
        // other columns, should there be one, goes on its own).
        let statement = match rows.first() {
            Some(first) => Some((
                tx.prepare(&write_sql(kind, first, true)).await?,
                first.column_names(),
            )),
            None => None,
        };
        for (chunk_no, chunk) in rows.chunks(CHUNK).enumerate() {
            // Statements on one connection pipeline: a chunk costs about one round trip.
            let writes = chunk.iter().map(|row| async {
                match &statement {
                    Some((st, columns)) if row.column_names() == *columns => {
                        write_prepared(&tx, st, kind, row).await
                    }
                    _ => write(&tx, kind, row, true).await,
                }
            });
            let results = futures_util::future::join_all(writes).await;
            for (i, result) in results.into_iter().enumerate() {
                if let Err(e) = result {
                    let at = chunk_no * CHUNK + i;
                    return Err(StoreError::Config(format!("{name}[{at}]: {e}")));
                }
            }
        }
        counts.push((kind_name(kind), rows.len()));
    }
    tx.commit().await?;
    Ok(counts)
}

fn kind_name(kind: &'static Kind) -> &'static str {
    kind.name
}

/// Every entity in the database as a declarative document (Kong's `db_export`):
/// `_format_version: "3.0"`, `_transform: false`, every kind flat at the top level.
pub async fn export(client: &mut Client) -> Result<Value, StoreError> {
    let (mut doc, _) = crate::snapshot::document(client, &ORDER).await?;
    if let Value::Object(map) = &mut doc {
        map.insert("_transform".into(), Value::Bool(false));
        map.retain(|_, v| !v.as_array().is_some_and(Vec::is_empty));
    }
    Ok(doc)
}
