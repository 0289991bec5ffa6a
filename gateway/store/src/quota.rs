//! The rate-limiting plugin's `cluster` policy: counts in Postgres, in Kong's
//! `ratelimiting_metrics` table, so every node (and any Kong node on the same database)
//! shares them.
//!
//! As Kong does: a request reads its windows' counts (one query for all of them), and an
//! allowed request is counted afterwards, off the request's path, with one upsert for all of
//! its windows. Two requests that read at once may both pass at the edge of a limit, as in
//! Kong. Expired rows are deleted at most once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use uuid::Uuid;

use gangway_config::settings::Settings;
use gangway_pipeline::quota::{QuotaError, QuotaStore, Usage, Window};

use crate::StoreError;

/// Kong's scope id for a plugin without a route or service.
const EMPTY: Uuid = Uuid::nil();

/// How often expired rows are deleted, at most.
const SWEEP_EVERY_MS: i64 = 60_000;

/// One window, as Kong's table keys it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    identifier: String,
    period: String,
    /// Epoch seconds of the window's start.
    period_date: f64,
    service_id: Uuid,
    route_id: Uuid,
    /// Seconds until the row may be deleted (the window's length).
    ttl_seconds: f64,
}

/// A window as the table's columns: the route and service ids come from the scope part of
/// Kong's key, `ratelimit:<route>:<service>:`.
fn row(window: &Window) -> Option<Row> {
    let rest = window.scope.strip_prefix("ratelimit:")?;
    let (route, rest) = rest.split_once(':')?;
    let (service, _) = rest.split_once(':')?;
    Some(Row {
        identifier: window.identifier.to_string(),
        period: window.period.to_owned(),
        period_date: (window.start_ms / 1000) as f64,
        service_id: service.parse().unwrap_or(EMPTY),
        route_id: route.parse().unwrap_or(EMPTY),
        ttl_seconds: window.seconds as f64,
    })
}

/// Counts in Postgres.
pub struct ClusterCounters {
    pool: Pool,
    timeout: Duration,
    last_sweep_ms: Arc<AtomicI64>,
}

impl ClusterCounters {
    /// Counters on the database `settings` name, with a pool of their own (so rate limiting
    /// never waits behind the Admin API). Nothing connects until the first request.
    pub fn new(settings: &Settings) -> Result<ClusterCounters, StoreError> {
        Ok(ClusterCounters {
            pool: crate::connect::pool(settings)?,
            timeout: Duration::from_millis(settings.pg_timeout.max(1)),
            last_sweep_ms: Arc::new(AtomicI64::new(0)),
        })
    }
}

/// The windows as parallel arrays, for `unnest`.
struct Columns {
    identifiers: Vec<String>,
    periods: Vec<String>,
    dates: Vec<f64>,
    services: Vec<Uuid>,
    routes: Vec<Uuid>,
    ttls: Vec<f64>,
}

fn columns(windows: &[Window]) -> Result<Columns, QuotaError> {
    let mut c = Columns {
        identifiers: Vec::new(),
        periods: Vec::new(),
        dates: Vec::new(),
        services: Vec::new(),
        routes: Vec::new(),
        ttls: Vec::new(),
    };
    for w in windows {
        let r =
            row(w).ok_or_else(|| QuotaError::Store(format!("not a counter key: {}", w.key())))?;
        c.identifiers.push(r.identifier);
        c.periods.push(r.period);
        c.dates.push(r.period_date);
        c.services.push(r.service_id);
        c.routes.push(r.route_id);
        c.ttls.push(r.ttl_seconds);
    }
    Ok(c)
}

const USAGE: &str = "SELECT w.i, coalesce(m.value, 0)::bigint \
     FROM unnest($1::text[], $2::text[], $3::float8[], $4::uuid[], $5::uuid[]) \
          WITH ORDINALITY AS w(identifier, period, period_date, service_id, route_id, i) \
     LEFT JOIN ratelimiting_metrics m \
       ON m.identifier = w.identifier AND m.period = w.period \
      AND m.period_date = to_timestamp(w.period_date) \
      AND m.service_id = w.service_id AND m.route_id = w.route_id \
     ORDER BY w.i";

const INCREMENT: &str = "INSERT INTO ratelimiting_metrics \
       (identifier, period, period_date, service_id, route_id, value, ttl) \
     SELECT w.identifier, w.period, to_timestamp(w.period_date), w.service_id, w.route_id, 1, \
            now() + make_interval(secs => w.ttl) \
     FROM unnest($1::text[], $2::text[], $3::float8[], $4::uuid[], $5::uuid[], $6::float8[]) \
          AS w(identifier, period, period_date, service_id, route_id, ttl) \
     ON CONFLICT (identifier, period, period_date, service_id, route_id) \
     DO UPDATE SET value = ratelimiting_metrics.value + EXCLUDED.value";

impl QuotaStore for ClusterCounters {
    fn usage(&self, windows: &[Window]) -> Usage {
        let columns = match columns(windows) {
            Ok(c) => c,
            Err(e) => return Usage::Ready(Err(e)),
        };
        let pool = self.pool.clone();
        let timeout = self.timeout;
        Usage::Pending(Box::pin(async move {
            let read = async {
                let client = pool
                    .get()
                    .await
                    .map_err(|e| QuotaError::Store(crate::explain(&e)))?;
                let rows = client
                    .query(
                        USAGE,
                        &[
                            &columns.identifiers,
                            &columns.periods,
                            &columns.dates,
                            &columns.services,
                            &columns.routes,
                        ],
                    )
                    .await
                    .map_err(|e| QuotaError::Store(crate::explain(&e)))?;
                Ok(rows
                    .iter()
                    .map(|r| r.get::<_, i64>(1).max(0) as u64)
                    .collect())
            };
            match tokio::time::timeout(timeout, read).await {
                Ok(result) => result,
                Err(_) => Err(QuotaError::Timeout(timeout.as_millis() as u64)),
            }
        }))
    }

    fn increment(&self, windows: &[Window]) {
        let Ok(columns) = columns(windows) else {
            return;
        };
        let pool = self.pool.clone();
        let timeout = self.timeout;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        let sweep = now - last >= SWEEP_EVERY_MS
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        tokio::spawn(async move {
            let write = async {
                let client = pool.get().await.map_err(|e| crate::explain(&e))?;
                client
                    .execute(
                        INCREMENT,
                        &[
                            &columns.identifiers,
                            &columns.periods,
                            &columns.dates,
                            &columns.services,
                            &columns.routes,
                            &columns.ttls,
                        ],
                    )
                    .await
                    .map_err(|e| crate::explain(&e))?;
                if sweep {
                    client
                        .execute("DELETE FROM ratelimiting_metrics WHERE ttl < now()", &[])
                        .await
                        .map_err(|e| crate::explain(&e))?;
                }
                Ok::<(), String>(())
            };
            match tokio::time::timeout(timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "rate-limiting: cluster counter not incremented")
                }
                Err(_) => {
                    tracing::warn!("rate-limiting: cluster counter not incremented: timed out")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_maps_to_the_table_s_columns() {
        let window = Window {
            scope: format!("ratelimit:{}:{EMPTY}:", Uuid::from_u128(7)).into(),
            identifier: "2001:db8::1".into(),
            period: "minute",
            start_ms: 1_796_292_900_000,
            seconds: 60,
        };
        assert_eq!(
            row(&window),
            Some(Row {
                identifier: "2001:db8::1".into(),
                period: "minute".into(),
                period_date: 1_796_292_900.0,
                service_id: EMPTY,
                route_id: Uuid::from_u128(7),
                ttl_seconds: 60.0,
            })
        );
    }
}
