//! rate-limiting (priority 910): Kong's fixed-window limits per second, minute, hour, day,
//! month and year, counted on the node (`local`), in Redis (`redis`, realtime or batched by
//! `sync_rate`) or in the database (`cluster`), with Kong's keys, headers and errors
//! (kong-reference.md 4.3).
//!
//! The counters live in the process's [`Quotas`], never in the instance, so a config reload
//! keeps every count.

mod schema;
pub mod windows;

use std::borrow::Cow;
use std::sync::Arc;

use gangway_pipeline::Plugin;
use gangway_pipeline::catalog::{Build, ConfigProblem};
use gangway_pipeline::context::AccessCtx;
use gangway_pipeline::edits::{HeaderEdits, StaticName};
use gangway_pipeline::flow::{Flow, Pending};
use gangway_pipeline::quota::{
    QuotaStore, Quotas, RedisConf, RedisMode, Usage, UsageResult, Window,
};
use serde::Deserialize;
use windows::Period;

pub use schema::schema;

/// Kong's name.
pub const NAME: &str = "rate-limiting";
/// Kong's PRIORITY.
pub const PRIORITY: i32 = 910;

/// Kong's key part for a scope the instance does not have.
const EMPTY_UUID: &str = "00000000-0000-0000-0000-000000000000";

const RATELIMIT_LIMIT: StaticName = StaticName::new("RateLimit-Limit");
const RATELIMIT_REMAINING: StaticName = StaticName::new("RateLimit-Remaining");
const RATELIMIT_RESET: StaticName = StaticName::new("RateLimit-Reset");
const RETRY_AFTER: StaticName = StaticName::new("Retry-After");

#[derive(Debug, Deserialize)]
struct Config {
    second: Option<f64>,
    minute: Option<f64>,
    hour: Option<f64>,
    day: Option<f64>,
    month: Option<f64>,
    year: Option<f64>,
    limit_by: String,
    header_name: Option<String>,
    path: Option<String>,
    policy: String,
    fault_tolerant: bool,
    redis: RedisConf,
    hide_client_headers: bool,
    error_code: f64,
    error_message: String,
    sync_rate: f64,
}

impl Config {
    fn limit(&self, period: Period) -> Option<f64> {
        match period {
            Period::Second => self.second,
            Period::Minute => self.minute,
            Period::Hour => self.hour,
            Period::Day => self.day,
            Period::Month => self.month,
            Period::Year => self.year,
        }
    }
}

/// What a request is counted by (Kong's `get_identifier`); each falls back to the client IP.
#[derive(Debug)]
enum LimitBy {
    Consumer,
    Credential,
    Ip,
    Service,
    Header(String),
    Path(String),
}

/// The clock windows are cut from: epoch milliseconds.
pub type Clock = fn() -> i64;

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct RateLimiting {
    limits: Box<[(Period, f64)]>,
    limit_by: LimitBy,
    /// `ratelimit:<route_id>:<service_id>:`, the start of every key of this instance.
    key_prefix: Arc<str>,
    store: Arc<dyn QuotaStore>,
    fault_tolerant: bool,
    hide_client_headers: bool,
    error_code: u16,
    error_message: Cow<'static, str>,
    clock: Clock,
}

/// Builds the plugin from its validated config and scope.
pub fn build(build: &Build<'_>) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    build_with_clock(build, system_clock)
}

/// [`build`] with the clock windows are cut from (tests move it instead of waiting).
pub fn build_with_clock(
    build: &Build<'_>,
    clock: Clock,
) -> Result<Box<dyn Plugin>, Vec<ConfigProblem>> {
    let conf: Config = serde_json::from_value(build.config.clone())
        .map_err(|e| vec![(String::new(), e.to_string())])?;
    let store = store(&conf, build.quotas).map_err(|e| vec![e])?;
    let limit_by = match conf.limit_by.as_str() {
        "credential" => LimitBy::Credential,
        "ip" => LimitBy::Ip,
        "service" => LimitBy::Service,
        "header" => LimitBy::Header(
            conf.header_name
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase(),
        ),
        "path" => LimitBy::Path(conf.path.clone().unwrap_or_default()),
        _ => LimitBy::Consumer,
    };
    let id = |id: Option<uuid::Uuid>| id.map_or_else(|| EMPTY_UUID.to_owned(), |u| u.to_string());
    let error_message = if conf.error_message == "API rate limit exceeded" {
        Cow::Borrowed("API rate limit exceeded")
    } else {
        Cow::Owned(conf.error_message.clone())
    };
    Ok(Box::new(RateLimiting {
        limits: Period::ALL
            .iter()
            .filter_map(|&p| conf.limit(p).map(|l| (p, l)))
            .collect(),
        limit_by,
        key_prefix: format!("ratelimit:{}:{}:", id(build.route), id(build.service)).into(),
        store,
        fault_tolerant: conf.fault_tolerant,
        hide_client_headers: conf.hide_client_headers,
        error_code: error_status(conf.error_code),
        error_message,
        clock,
    }))
}

/// The status a refused request gets. Kong's schema only asks `error_code > 0`, and its
/// `kong.response.error` fails on anything but a whole 400 to 599, which ends in a 500; a
/// bare cast would write 1000 or 42.5 into the status line.
fn error_status(code: f64) -> u16 {
    if code.fract() == 0.0 && (400.0..=599.0).contains(&code) {
        code as u16
    } else {
        500
    }
}

/// The counter store of `policy`.
fn store(conf: &Config, quotas: &Quotas) -> Result<Arc<dyn QuotaStore>, ConfigProblem> {
    match conf.policy.as_str() {
        "redis" => {
            let Some(redis) = &quotas.redis else {
                return Err((
                    "policy".into(),
                    "the redis policy needs gangway built with the quota feature".into(),
                ));
            };
            let mode = if conf.sync_rate == -1.0 {
                RedisMode::Realtime
            } else {
                RedisMode::Batched(conf.sync_rate)
            };
            redis
                .store(&conf.redis, mode)
                .map_err(|e| ("redis".into(), e))
        }
        "cluster" => match (&quotas.cluster, quotas.database) {
            (Some(cluster), _) => Ok(cluster.clone()),
            // A stored plugin must not stop the node from loading its config: in a build
            // without the Postgres store, a cluster instance counts per node, and says so.
            (None, true) => {
                tracing::warn!(
                    "rate-limiting: policy cluster needs gangway built with the store feature; counting on this node (local)"
                );
                Ok(quotas.local.clone())
            }
            // Kong's schema offers no cluster policy without a database.
            (None, false) => Err(("policy".into(), "expected one of: local, redis".into())),
        },
        _ => Ok(quotas.local.clone()),
    }
}

/// What a waiting access hands to `resume`.
struct Waited {
    now_ms: i64,
    windows: Vec<Window>,
    usage: UsageResult,
}

impl RateLimiting {
    /// Kong's `get_identifier`.
    fn identifier(&self, ctx: &AccessCtx<'_>) -> Arc<str> {
        let found = match &self.limit_by {
            LimitBy::Consumer => ctx
                .state
                .consumer
                .map(|c| uuid_text(&ctx.identities.consumer(c).id))
                .or_else(|| credential_id(ctx)),
            LimitBy::Credential => credential_id(ctx),
            LimitBy::Service => ctx.service.map(|s| uuid_text(&s.id)),
            LimitBy::Header(name) => ctx.header(name).map(|v| String::from_utf8_lossy(v).into()),
            LimitBy::Path(path) => (ctx.path() == path.as_bytes()).then(|| path.as_str().into()),
            LimitBy::Ip => None,
        };
        found.unwrap_or_else(|| ctx.client_ip.to_string().into())
    }

    fn windows(&self, identifier: Arc<str>, now_ms: i64) -> Vec<Window> {
        self.limits
            .iter()
            .map(|&(period, _)| Window {
                scope: self.key_prefix.clone(),
                identifier: identifier.clone(),
                period: period.name(),
                start_ms: period.start_ms(now_ms),
                seconds: period.seconds(),
            })
            .collect()
    }

    /// Kong's access handler once the usage is known.
    fn decide(&self, ctx: &mut AccessCtx<'_>, waited: Waited) -> Flow {
        let usage = match waited.usage {
            Ok(usage) => usage,
            Err(e) if self.fault_tolerant => {
                tracing::debug!(error = %e, "rate-limiting: no usage, proxying without limits");
                return Flow::Continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "rate-limiting: no usage");
                // A store may have counted the windows it knew before another failed; the
                // request goes no further, so like Kong it is not counted.
                self.store.refund(&waited.windows);
                return Flow::error(500, "An unexpected error occurred");
            }
        };
        // At most one limit per period.
        let mut remaining = [0.0; 6];
        for ((left, &(_, limit)), &used) in remaining.iter_mut().zip(&self.limits).zip(&usage) {
            *left = limit - used as f64;
        }
        let remaining = &remaining[..self.limits.len().min(usage.len())];
        let stop = remaining.iter().rposition(|&r| r <= 0.0);
        // Kong's time is whole seconds.
        let now_ms = waited.now_ms.div_euclid(1000) * 1000;
        let mut reset = 0;
        if !self.hide_client_headers {
            let mut least: Option<(f64, u64, f64)> = None;
            for (i, &(period, limit)) in self.limits.iter().enumerate() {
                let mut left = remaining[i];
                if stop.is_none_or(|s| s == i) {
                    left -= 1.0;
                }
                let left = left.max(0.0);
                let window = period.seconds();
                let wins = least.is_none_or(|(l, w, _)| left < l || (left == l && window > w));
                if wins {
                    least = Some((left, window, limit));
                    let elapsed = (now_ms - waited.windows[i].start_ms).div_euclid(1000);
                    reset = (window as i64 - elapsed).max(1);
                }
                let headers = &mut ctx.state.response_headers;
                set_lua_number(headers, period.limit_header(), limit);
                set_lua_number(headers, period.remaining_header(), left);
            }
            if let Some((left, _, limit)) = least {
                let headers = &mut ctx.state.response_headers;
                set_lua_number(headers, RATELIMIT_LIMIT, limit);
                set_lua_number(headers, RATELIMIT_REMAINING, left);
                headers.set_number(RATELIMIT_RESET, reset);
            }
        }
        if stop.is_some() {
            self.store.refund(&waited.windows);
            if !self.hide_client_headers {
                ctx.state.response_headers.set_number(RETRY_AFTER, reset);
            }
            return Flow::error(self.error_code, self.error_message.clone());
        }
        self.store.increment(&waited.windows);
        Flow::Continue
    }
}

fn credential_id(ctx: &AccessCtx<'_>) -> Option<Arc<str>> {
    ctx.state
        .credential
        .map(|c| uuid_text(&ctx.identities.credential(c).id))
}

/// An id as Kong writes it in keys (hyphenated, lower case).
fn uuid_text(id: &uuid::Uuid) -> Arc<str> {
    Arc::from(
        &*id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
}

/// Sets `name` to a number as Lua prints it: `100`, `0.5`.
fn set_lua_number(headers: &mut HeaderEdits, name: StaticName, n: f64) {
    let whole = n as i64;
    if whole as f64 == n && n.abs() < 1e15 {
        headers.set_number(name, whole);
    } else {
        headers.set(name, format!("{n}").as_bytes());
    }
}

impl Plugin for RateLimiting {
    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let now_ms = (self.clock)();
        let identifier = self.identifier(ctx);
        let windows = self.windows(identifier, now_ms);
        match self.store.usage(&windows) {
            Usage::Ready(usage) => self.decide(
                ctx,
                Waited {
                    now_ms,
                    windows,
                    usage,
                },
            ),
            Usage::Pending(pending) => Flow::Await(Pending::new(async move {
                Waited {
                    now_ms,
                    windows,
                    usage: pending.await,
                }
            })),
        }
    }

    fn resume(&self, ctx: &mut AccessCtx<'_>, output: Box<dyn std::any::Any>) -> Flow {
        match output.downcast::<Waited>() {
            Ok(waited) => self.decide(ctx, *waited),
            Err(_) => Flow::error(500, "An unexpected error occurred"),
        }
    }
}

#[cfg(test)]
mod tests;
