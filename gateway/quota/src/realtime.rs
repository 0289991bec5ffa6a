//! `sync_rate = -1`: Kong's realtime counting. One round trip per request counts it in every
//! window at once and answers each window's count before it, so blocked requests are counted
//! too, as in Kong. A new key gets the window's length as its TTL.
//!
//! On Redis 7 and later that round trip is a pipeline of `INCR key` and `EXPIRE key ttl NX`
//! per window: the same effect as Kong's script (the TTL is set once, when the key is new),
//! at about half the server's CPU, since no Lua runs. Older servers get the script. On a
//! worker's [`Pipe`] the version is asked as the pipe connects; through the redis crate
//! (cluster, sentinel, shared connections), once per Redis, inside the first call.

use std::future::Future;
use std::sync::Arc;

use gangway_pipeline::quota::{QuotaError, QuotaStore, Usage, UsageResult, Window};
use sha1::{Digest, Sha1};

use super::connect::{Target, round_trip};
use super::pipe::{self, Counting, Pipe, unexpected};
use super::resp::{self, Reply};

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
}

impl Realtime {
    /// Counts in `target`.
    pub fn new(target: Arc<Target>) -> Realtime {
        Realtime {
            target,
            script: Arc::new(redis::Script::new(INCREMENT)),
        }
    }

    /// The usage `counting` answers; a failure is recorded (and logged, rate-limited).
    fn reported(&self, counting: impl Future<Output = UsageResult> + 'static) -> Usage {
        let target = self.target.clone();
        Usage::Pending(Box::pin(async move {
            let counted = counting.await;
            if let Err(e) = &counted {
                let what = format!("counting on {}", target.describe);
                target.stats.record(&what, e);
            }
            counted
        }))
    }
}

impl QuotaStore for Realtime {
    fn usage(&self, windows: &[Window]) -> Usage {
        let target = self.target.clone();
        if target.pipes() {
            // The common case, connected to a Redis 7: the commands are queued now, and
            // the future only waits for their replies.
            if let Some(pipe) = target
                .live_pipe()
                .filter(|p| p.counting == Counting::ExpireNx)
            {
                return self.reported(round_trip(&target, incr_expire(&pipe, windows)));
            }
            let windows = windows.to_vec();
            return self.reported(async move { count_on_pipe(&target, &windows).await });
        }
        let keys: Vec<String> = windows.iter().map(|w| target.key(w)).collect();
        let ttls: Vec<u64> = windows.iter().map(|w| w.seconds).collect();
        let script = self.script.clone();
        self.reported(async move {
            target
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
                .await
        })
    }

    fn increment(&self, _windows: &[Window]) {}
}

/// Counts in every window on this worker's [`Pipe`](super::pipe::Pipe): one round trip,
/// and a second only when a script the server had not cached has to be sent whole.
async fn count_on_pipe(target: &Arc<Target>, windows: &[Window]) -> UsageResult {
    let pipe = target.pipe().await?;
    if pipe.counting == Counting::ExpireNx {
        return round_trip(target, incr_expire(&pipe, windows)).await;
    }
    let sha = script_sha().as_bytes();
    let evalsha = pipe.call(1, |out| script_call(out, b"EVALSHA", sha, windows));
    let mut replies = round_trip(target, evalsha).await;
    if let Ok([Reply::Error(e)]) = replies.as_deref()
        && e.starts_with("NOSCRIPT")
    {
        let script = INCREMENT.as_bytes();
        let eval = pipe.call(1, |out| script_call(out, b"EVAL", script, windows));
        replies = round_trip(target, eval).await;
    }
    replies.and_then(|replies| match replies.as_slice() {
        [Reply::Array(Some(items))] if items.len() == windows.len() => {
            items.iter().map(integer).collect()
        }
        [other] => Err(unexpected(other)),
        _ => Err(QuotaError::Store("Redis answered with no reply".into())),
    })
}

/// Queues `INCR key` and `EXPIRE key ttl NX` for every window; the future answers each
/// window's count before this one.
fn incr_expire(pipe: &Pipe, windows: &[Window]) -> impl Future<Output = UsageResult> + use<> {
    let n = windows.len();
    let call = pipe.call(2 * n, |out| encode_incr_expire(out, windows));
    async move {
        let replies = call.await?;
        let mut counts = Vec::with_capacity(n);
        for (i, reply) in replies.iter().enumerate() {
            let after = integer(reply)?;
            if i % 2 == 0 {
                counts.push(after.saturating_sub(1));
            }
        }
        Ok(counts)
    }
}

/// The fixed parts of `INCR key` and `EXPIRE key ttl NX` on the wire, written whole: this
/// runs for every request counted in realtime.
const INCR: &[u8] = b"*2\r\n$4\r\nINCR\r\n";
const EXPIRE: &[u8] = b"*4\r\n$6\r\nEXPIRE\r\n";
const NX: &[u8] = b"$2\r\nNX\r\n";

/// `INCR key` and `EXPIRE key ttl NX` for every window; each key is encoded once and copied.
fn encode_incr_expire(out: &mut Vec<u8>, windows: &[Window]) {
    let (mut start, mut ttl) = (itoa::Buffer::new(), itoa::Buffer::new());
    for window in windows {
        out.extend_from_slice(INCR);
        let key_at = out.len();
        resp::bulk(out, &window.key_parts(&mut start));
        let key = key_at..out.len();
        out.extend_from_slice(EXPIRE);
        out.extend_from_within(key);
        resp::bulk(out, &[ttl.format(window.seconds).as_bytes()]);
        out.extend_from_slice(NX);
    }
}

/// `EVALSHA sha n key... ttl...` (or `EVAL`): Kong's script over every window.
fn script_call(out: &mut Vec<u8>, verb: &[u8], script: &[u8], windows: &[Window]) {
    let mut number = itoa::Buffer::new();
    resp::array(out, 3 + 2 * windows.len());
    resp::bulk(out, &[verb]);
    resp::bulk(out, &[script]);
    resp::bulk(out, &[number.format(windows.len()).as_bytes()]);
    for window in windows {
        resp::bulk(out, &window.key_parts(&mut number));
    }
    for window in windows {
        resp::bulk(out, &[number.format(window.seconds).as_bytes()]);
    }
}

/// The SHA-1 of [`INCREMENT`], in hex (the `EVALSHA` name).
fn script_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| {
        Sha1::digest(INCREMENT.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// A count from an integer reply.
fn integer(reply: &Reply) -> Result<u64, QuotaError> {
    pipe::integer(reply).map(|n| n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incr_and_expire_are_written_as_the_commands_they_stand_for() {
        let windows: Vec<Window> = [("minute", 60), ("hour", 3600)]
            .into_iter()
            .map(|(period, seconds)| Window {
                scope: "ratelimit:r:s:".into(),
                identifier: "192.0.2.7".into(),
                period,
                start_ms: 1_796_292_000_000,
                seconds,
            })
            .collect();
        let mut want = Vec::new();
        for w in &windows {
            let key = w.key();
            resp::command(&mut want, &[b"INCR", key.as_bytes()]);
            let ttl = w.seconds.to_string();
            resp::command(
                &mut want,
                &[b"EXPIRE", key.as_bytes(), ttl.as_bytes(), b"NX"],
            );
        }
        let mut got = b"already queued".to_vec();
        encode_incr_expire(&mut got, &windows);
        assert_eq!(
            String::from_utf8_lossy(&got[14..]),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn the_script_is_named_by_the_sha1_redis_gives_it() {
        assert_eq!(script_sha(), redis::Script::new(INCREMENT).get_hash());
    }
}
