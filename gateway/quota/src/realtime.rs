//! `sync_rate = -1`: Kong's realtime counting. One round trip per request counts it in every
//! window at once and answers each window's count before it, so blocked requests are counted
//! too, as in Kong. A new key gets the window's length as its TTL.
//!
//! On Redis 7 and later that round trip is a pipeline of `INCR key` and `EXPIRE key ttl NX`
//! per window: the same effect as Kong's script (the TTL is set once, when the key is new),
//! at about half the server's CPU, since no Lua runs. Older servers get the script. The
//! version is asked once per Redis, inside the first call.

use std::sync::Arc;

use gangway_pipeline::quota::{QuotaStore, Usage, Window};

use super::connect::Target;
use super::stats::Stats;

/// Kong's increment script, for all of a request's windows in one round trip.
const INCREMENT: &str = r#"
local before = {}
for i, key in ipairs(KEYS) do
  local count = redis.call("incr", key)
  if count == 1 then
    redis.call("expire", key, ARGV[i])
  end
  before[i] = count - 1
end
return before
"#;

/// A realtime store.
pub struct Realtime {
    target: Arc<Target>,
    script: Arc<redis::Script>,
    stats: Arc<Stats>,
}

impl Realtime {
    /// Counts in `target`.
    pub fn new(target: Arc<Target>, stats: Arc<Stats>) -> Realtime {
        Realtime {
            target,
            script: Arc::new(redis::Script::new(INCREMENT)),
            stats,
        }
    }
}

impl QuotaStore for Realtime {
    fn usage(&self, windows: &[Window]) -> Usage {
        let keys: Vec<String> = windows.iter().map(|w| self.target.key(w)).collect();
        let ttls: Vec<u64> = windows.iter().map(|w| w.seconds).collect();
        let target = self.target.clone();
        let script = self.script.clone();
        let stats = self.stats.clone();
        Usage::Pending(Box::pin(async move {
            let counted = target
                .run(async |conn| {
                    if target.expire_nx(conn).await? {
                        let mut pipe = redis::pipe();
                        for (key, ttl) in keys.iter().zip(&ttls) {
                            pipe.cmd("INCR").arg(key);
                            pipe.cmd("EXPIRE").arg(key).arg(ttl).arg("NX").ignore();
                        }
                        let after: Vec<u64> = pipe.query_async(&mut *conn).await?;
                        return Ok(after.into_iter().map(|n| n.saturating_sub(1)).collect());
                    }
                    let mut call = script.prepare_invoke();
                    for (key, ttl) in keys.iter().zip(&ttls) {
                        call.key(key).arg(ttl);
                    }
                    call.invoke_async::<Vec<u64>>(conn).await
                })
                .await;
            if let Err(e) = &counted {
                stats.record(&format!("counting on {}", target.describe), e);
            }
            counted
        }))
    }

    fn increment(&self, _windows: &[Window]) {}
}
