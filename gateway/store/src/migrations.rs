//! Schema migrations (`gangway migrations bootstrap | up | finish | status | reset`), safe to
//! run from several nodes at once: each command holds a session advisory lock, and each
//! migration runs in a transaction that records it.

use tokio_postgres::Client;

use crate::StoreError;

/// Every migration, in order: a name and its SQL.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("001_base", include_str!("../migrations/001_base.sql")),
    (
        "002_ratelimiting_metrics",
        include_str!("../migrations/002_ratelimiting_metrics.sql"),
    ),
    (
        "003_plugin_snapshot",
        include_str!("../migrations/003_plugin_snapshot.sql"),
    ),
    (
        "004_plugin_shape",
        include_str!("../migrations/004_plugin_shape.sql"),
    ),
];

/// The advisory lock migrations hold; distinct from the change log's.
const LOCK: i64 = 7_467_731;

/// Where the schema stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The bookkeeping table exists.
    pub bootstrapped: bool,
    /// Migrations run, in order.
    pub executed: Vec<String>,
    /// Migrations not run yet, in order.
    pub pending: Vec<String>,
}

impl Status {
    /// True when the schema is bootstrapped and nothing is pending: nodes may serve from it.
    pub fn is_current(&self) -> bool {
        self.bootstrapped && self.pending.is_empty()
    }

    /// Kong's `migrations status` JSON: `{"executed": [...], "pending": [...], ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "bootstrapped": self.bootstrapped,
            "executed": self.executed,
            "pending": self.pending,
        })
    }
}

/// Reads where the schema stands.
pub async fn status(client: &Client) -> Result<Status, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('gangway_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(Status {
            bootstrapped: false,
            executed: Vec::new(),
            pending: MIGRATIONS.iter().map(|(n, _)| (*n).to_owned()).collect(),
        });
    }
    let rows = client
        .query("SELECT name FROM gangway_migrations ORDER BY name", &[])
        .await?;
    let executed: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let pending = MIGRATIONS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .filter(|n| !executed.contains(n))
        .collect();
    Ok(Status {
        bootstrapped: true,
        executed,
        pending,
    })
}

/// What a migration command did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// These migrations ran.
    Ran(Vec<String>),
    /// Nothing to do; the message says why.
    Nothing(&'static str),
}

/// Creates the schema and runs every migration; on a bootstrapped database, does nothing.
pub async fn bootstrap(client: &mut Client) -> Result<Outcome, StoreError> {
    locked(client, async |client: &mut Client| {
        if status(client).await?.bootstrapped {
            return Ok(Outcome::Nothing("database already bootstrapped"));
        }
        client
            .batch_execute(
                "CREATE TABLE gangway_migrations (
                   name text PRIMARY KEY,
                   executed_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
        run_pending(client).await
    })
    .await
}

/// Runs the migrations not run yet.
pub async fn up(client: &mut Client) -> Result<Outcome, StoreError> {
    locked(client, async |client: &mut Client| {
        if !status(client).await?.bootstrapped {
            return Err(StoreError::NotBootstrapped);
        }
        run_pending(client).await
    })
    .await
}

/// Kong splits migrations into up and finish (teardown) steps; gangway's have no teardown,
/// so there is never anything to finish.
pub async fn finish(client: &mut Client) -> Result<Outcome, StoreError> {
    if !status(client).await?.bootstrapped {
        return Err(StoreError::NotBootstrapped);
    }
    Ok(Outcome::Nothing("no pending migrations to finish"))
}

/// Drops everything gangway created.
pub async fn reset(client: &mut Client) -> Result<Outcome, StoreError> {
    locked(client, async |client: &mut Client| {
        if !status(client).await?.bootstrapped {
            return Ok(Outcome::Nothing(
                "database not bootstrapped, nothing to reset",
            ));
        }
        client
            .batch_execute(
                "DROP TABLE IF EXISTS gangway_changes, snis, targets, upstreams, acls,
                   keyauth_credentials, plugins, consumers, routes, services, ca_certificates,
                   certificates, ratelimiting_metrics, gangway_migrations CASCADE;
                 DROP FUNCTION IF EXISTS gangway_log_change();",
            )
            .await?;
        Ok(Outcome::Ran(vec!["reset".to_owned()]))
    })
    .await
}

async fn run_pending(client: &mut Client) -> Result<Outcome, StoreError> {
    let pending = status(client).await?.pending;
    if pending.is_empty() {
        return Ok(Outcome::Nothing("database is up to date"));
    }
    for name in &pending {
        let Some((_, sql)) = MIGRATIONS.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO gangway_migrations (name) VALUES ($1)", &[name])
            .await?;
        tx.commit().await?;
        tracing::info!(migration = %name, "migration executed");
    }
    Ok(Outcome::Ran(pending))
}

/// Runs `work` holding the migrations lock, so two nodes migrating at once take turns.
async fn locked<F>(client: &mut Client, work: F) -> Result<Outcome, StoreError>
where
    F: AsyncFnOnce(&mut Client) -> Result<Outcome, StoreError>,
{
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let result = work(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    let outcome = result?;
    unlocked?;
    Ok(outcome)
}
