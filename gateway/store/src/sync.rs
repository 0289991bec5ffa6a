//! A node following the database: it loads every entity once, then applies the change log
//! in sequence order, woken by `NOTIFY gangway_changes` (and by a poll every second, should a
//! notification be lost). Consumers, keys and ACL groups change the identity index by delta;
//! anything else reloads the routing entities (a few rows) and recompiles only the parts
//! whose entities changed (the router, TLS, a balancer, the plugin chains), keeping the index.
//!
//! While Postgres is away the node keeps serving its last snapshot and reconnects with
//! back-off; it then catches up from the last sequence number it applied. A node that never
//! loaded serves nothing but Kong's 404 and says not ready.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gangway_config::dao::{Kind, kind_named};
use gangway_config::declarative::{Existing, load_fragment};
use gangway_config::settings::Settings;
use gangway_config::{Config, ConfigErrors};
use gangway_pipeline::identity::Identities;
use gangway_proxy::Gateway;
use serde_json::{Map, Value, json};
use tokio_postgres::Client;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::snapshot::{as_input, building};
use crate::{StoreError, health_notice};

/// Kinds changed by delta on a running node.
const IDENTITY_KINDS: [&str; 3] = ["consumers", "keyauth_credentials", "acls"];

/// Kinds reloaded whole when one of them changes (few rows, compiled together).
const ROUTING_KINDS: [&str; 8] = [
    "certificates",
    "ca_certificates",
    "services",
    "routes",
    "upstreams",
    "targets",
    "snis",
    "plugins",
];

/// How many change-log rows a node reads at once.
const BATCH: i64 = 10_000;

/// References to consumers resolved in the node's identity index.
struct IndexedConsumers<'a>(&'a Identities);

impl Existing for IndexedConsumers<'_> {
    fn resolve(&self, kind: &str, key: &str) -> Option<Uuid> {
        if kind != "consumers" {
            return None;
        }
        let found = self.0.consumer_by_id_or_username(key)?;
        Some(self.0.consumer(found).id)
    }
}

fn invalid(e: ConfigErrors) -> StoreError {
    StoreError::Config(format!("the database holds an invalid config:\n{e}"))
}

/// Loads everything and publishes it; returns the sequence number it includes.
async fn load_all(client: &mut Client, gateway: &Arc<Gateway>) -> Result<i64, StoreError> {
    let mut kinds: Vec<&str> = ROUTING_KINDS.to_vec();
    kinds.extend(IDENTITY_KINDS);
    let (doc, seq) = building(client, &kinds).await?;
    let catalog = gateway.shared.catalog.clone();
    let publishing = gateway.clone();
    let published = off_thread(move || {
        let published = publishing.replace_config(|| doc.finish(catalog.as_ref()));
        gangway_proxy::gateway::release_freed_memory();
        published
    })
    .await
    .map_err(invalid)?;
    info!(
        config.version = published.version,
        seq,
        consumers = published.identities.consumer_count(),
        "config loaded from postgres"
    );
    Ok(seq)
}

/// A batch of the change log: each changed entity once, by kind; the last sequence number
/// read; and how long ago, by the database's clock, its oldest change was written.
struct Changes {
    changed: BTreeMap<String, BTreeSet<Uuid>>,
    last: i64,
    oldest_age: Duration,
}

/// The change log after `seq`.
async fn changes_after(client: &Client, seq: i64) -> Result<Changes, StoreError> {
    let rows = client
        .query(
            "SELECT seq, kind, id, extract(epoch from clock_timestamp() - at)::float8 \
             FROM gangway_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&seq, &BATCH],
        )
        .await?;
    let mut changes = Changes {
        changed: BTreeMap::new(),
        last: seq,
        oldest_age: Duration::ZERO,
    };
    for row in &rows {
        changes.last = row.get(0);
        changes
            .changed
            .entry(row.get(1))
            .or_default()
            .insert(row.get(2));
        let age = Duration::try_from_secs_f64(row.get::<_, f64>(3)).unwrap_or_default();
        changes.oldest_age = changes.oldest_age.max(age);
    }
    Ok(changes)
}

/// The current rows of `kind` among `ids` (absent ones were deleted).
async fn current(
    client: &Client,
    kind: &Kind,
    ids: &BTreeSet<Uuid>,
) -> Result<Vec<Value>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    let sql = if kind.ttl {
        "SELECT entity, ceil(extract(epoch from (ttl - now())))::bigint FROM keyauth_credentials \
         WHERE id = ANY($1) AND (ttl IS NULL OR ttl > now())"
            .to_owned()
    } else {
        format!(
            "SELECT entity, NULL::bigint FROM {} WHERE id = ANY($1)",
            kind.name
        )
    };
    let found = client.query(&sql, &[&ids]).await?;
    Ok(found.iter().map(as_input).collect())
}

/// Applies changed consumers, keys and groups to the index (deletions first, then the rows
/// as they are now).
async fn apply_identities(
    client: &Client,
    gateway: &Gateway,
    changed: &BTreeMap<String, BTreeSet<Uuid>>,
) -> Result<(), StoreError> {
    let mut now_rows: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for kind in IDENTITY_KINDS {
        if let (Some(ids), Some(k)) = (changed.get(kind), kind_named(kind)) {
            now_rows.insert(kind, current(client, k, ids).await?);
        }
    }
    let catalog = gateway.shared.catalog.clone();
    gateway.write_identities(|ids| -> Result<Identities, StoreError> {
        let mut next = ids.clone();
        // Typed entities through the loader's rules, consumers resolved in the index.
        let mut doc = Map::new();
        doc.insert("_format_version".into(), json!("3.0"));
        for (kind, list) in &now_rows {
            doc.insert((*kind).to_owned(), Value::Array(list.clone()));
        }
        let typed: Config =
            load_fragment(Value::Object(doc), &IndexedConsumers(ids), catalog.as_ref())
                .map_err(invalid)?;
        let present = |kind: &str, id: &Uuid| {
            now_rows
                .get(kind)
                .is_some_and(|rows| rows.iter().any(|r| r["id"] == json!(id)))
        };
        for kind in ["acls", "keyauth_credentials", "consumers"] {
            for id in changed.get(kind).into_iter().flatten() {
                if present(kind, id) {
                    continue;
                }
                let removed = match kind {
                    "acls" => next.without_acl(*id),
                    "keyauth_credentials" => next.without_credential(*id),
                    _ => next.without_consumer(*id),
                };
                // Already gone (a row made and deleted between two reads): nothing to do.
                if let Ok(ids) = removed {
                    next = ids;
                }
            }
        }
        for consumer in typed.consumers {
            next = upsert(next.upsert_consumer(consumer))?;
        }
        for cred in typed.keyauth_credentials {
            next = upsert(next.upsert_credential(cred))?;
        }
        for acl in typed.acls {
            next = upsert(next.upsert_acl(acl))?;
        }
        Ok(next)
    })
}

fn upsert(
    result: Result<Identities, gangway_pipeline::identity::IdentityError>,
) -> Result<Identities, StoreError> {
    result.map_err(|e| StoreError::Config(format!("applying a change: {e}")))
}

/// Reloads routes, services, upstreams, certificates and plugins and recompiles them.
async fn reload_routing(client: &mut Client, gateway: &Arc<Gateway>) -> Result<(), StoreError> {
    let (doc, _) = building(client, &ROUTING_KINDS).await?;
    let catalog = gateway.shared.catalog.clone();
    let publishing = gateway.clone();
    off_thread(move || {
        publishing.replace_keeping_identities(|identities| {
            doc.finish_fragment(&IndexedConsumers(identities), catalog.as_ref())
        })
    })
    .await
    .map_err(invalid)?;
    Ok(())
}

/// Runs a compile on a blocking thread: the control runtime's one worker also serves the
/// Status and Admin APIs, which compiling a large config there would freeze for its
/// length (the declarative path does the same). A panic goes on unwinding here.
async fn off_thread<T: Send + 'static>(compile: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(compile).await {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Applies the log from `seq` on; returns the last sequence number applied.
async fn catch_up(
    client: &mut Client,
    gateway: &Arc<Gateway>,
    mut seq: i64,
) -> Result<i64, StoreError> {
    loop {
        let Changes {
            changed,
            last,
            oldest_age,
        } = changes_after(client, seq).await?;
        if changed.is_empty() {
            return Ok(seq);
        }
        let read_at = std::time::Instant::now();
        if IDENTITY_KINDS.iter().any(|k| changed.contains_key(*k)) {
            match apply_identities(client, gateway, &changed).await {
                Ok(()) => {}
                // A batch can hold a swap (alice→tmp, bob→alice, tmp→bob): the end state
                // is consistent, but row by row onto the index a name is still held by the
                // row not applied yet. The same batch would fail again each time, so load
                // everything instead.
                Err(StoreError::Config(e)) => {
                    warn!(error = %e, "a change did not apply as a delta; loading the whole config");
                    return load_all(client, gateway).await;
                }
                Err(e) => return Err(e),
            }
        }
        if ROUTING_KINDS.iter().any(|k| changed.contains_key(*k)) {
            reload_routing(client, gateway).await?;
        }
        // From the oldest change's write to its being served by this node.
        let lag = oldest_age + read_at.elapsed();
        metrics::gauge!("gangway_config_sync_lag_seconds").set(lag.as_secs_f64());
        seq = last;
        compact_when_large(gateway);
    }
}

/// Folds a large delta into a fresh index, off the hot path (writes pile up in the delta,
/// and each write copies it).
fn compact_when_large(gateway: &Gateway) {
    const LIMIT: usize = 4096;
    if gateway.snapshot().identities.pending_writes() < LIMIT {
        return;
    }
    let result: Result<(), std::convert::Infallible> =
        gateway.write_identities(|ids| Ok(ids.compact()));
    let _ = result;
}

/// Follows the database for `gateway` until the process ends: connects (retrying with
/// back-off while Postgres is away), loads everything once, then applies the change log.
pub async fn follow(settings: Settings, gateway: Arc<Gateway>) {
    let mut seq: Option<i64> = None;
    let mut delay = Duration::from_millis(200);
    loop {
        match session(&settings, &gateway, &mut seq).await {
            Ok(()) => {}
            Err(e) => {
                if seq.is_none() {
                    error!(error = %e, retry_in = ?delay, "cannot load the config from postgres; not serving until it can");
                } else {
                    warn!(error = %e, retry_in = ?delay, "lost postgres; serving the last config and retrying");
                }
            }
        }
        if gateway.is_draining() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: LISTEN, load or catch up, then apply changes as they come.
async fn session(
    settings: &Settings,
    gateway: &Arc<Gateway>,
    seq: &mut Option<i64>,
) -> Result<(), StoreError> {
    let notify = Arc::new(tokio::sync::Notify::new());
    let notices = gateway.clone();
    let (mut client, driver) = crate::connect::connect_listening(
        settings,
        notify.clone(),
        health_notice::CHANNEL,
        move |payload| health_notice::apply(&notices, payload),
    )
    .await?;
    let status = crate::migrations::status(&client).await?;
    if !status.is_current() {
        return Err(if status.bootstrapped {
            StoreError::Config(format!(
                "migrations pending ({}); run 'gangway migrations up'",
                status.pending.join(", ")
            ))
        } else {
            StoreError::NotBootstrapped
        });
    }
    client
        .batch_execute(&format!(
            "LISTEN gangway_changes; LISTEN {}",
            health_notice::CHANNEL
        ))
        .await?;
    let mut applied = match *seq {
        None => load_all(&mut client, gateway).await?,
        Some(from) => {
            let caught = catch_up(&mut client, gateway, from).await?;
            info!(from, to = caught, "caught up with postgres");
            caught
        }
    };
    *seq = Some(applied);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tick.tick() => {}
        }
        if driver.is_finished() {
            return Err(StoreError::Config("the postgres connection closed".into()));
        }
        applied = catch_up(&mut client, gateway, applied).await?;
        *seq = Some(applied);
    }
}
