//! `sync_rate = -1`: Kong's realtime counting. One round trip per request counts it in every
//! window at once and answers each window's count before it, so blocked requests are counted
//! too, as in Kong. A new key gets the window's length as its TTL.
//!
//! On Redis 7 and later that round trip is a pipeline of `INCR key` and `EXPIRE key ttl NX`
//! per window: the same effect as Kong's script (the TTL is set once, when the key is new),
//! at about half the server's CPU, since no Lua runs. Older servers get the script. On a
//! worker's [`Pipe`] the version is asked as the pipe connects; through the redis crate
//! (cluster, sentinel, shared connections), once per Redis, inside the first call.
//!
//! On a pipe, a worker remembers the keys of the current windows it has seen counted, whose
//! TTL is therefore set (by its own `EXPIRE ... NX`, or by the node that created the key),
//! and sends `INCR` alone for those: an `EXPIRE` costs Redis about as much as the `INCR`.
//! A key is created with its `EXPIRE` in the same pipeline, as before, whenever this
//! worker has not seen it. An `INCR` sent alone that answers 1 created the key again
//! (Redis lost it: an eviction, a failover), and its `EXPIRE ... NX` follows at once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::RandomState;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gangway_pipeline::quota::{QuotaError, QuotaStore, Usage, UsageResult, Window, window_keys};
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

/// Keys a worker remembers per window length; past this, their `EXPIRE` is sent with every
/// `INCR` (a full set takes 512 KiB, per window length and worker).
const KNOWN_PER_LENGTH: usize = 1 << 18;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A realtime store.
pub struct Realtime {
    /// Names this store's [`KnownTtls`] on each worker.
    id: u64,
    target: Arc<Target>,
    script: Arc<redis::Script>,
    /// Hashes a window's Kong key for [`KnownTtls`].
    hasher: RandomState,
}

/// The current windows' keys a worker has seen counted: Redis holds them with their TTL.
#[derive(Default)]
struct KnownTtls {
    /// Per window length (seconds): the window's start and its keys' hashes.
    by_length: Vec<(u64, i64, KeyBits)>,
}

impl KnownTtls {
    /// Whether `key` (of a window of `seconds` that starts at `start_ms`) has its TTL.
    fn has(&self, seconds: u64, start_ms: i64, key: u64) -> bool {
        self.by_length
            .iter()
            .find(|(length, start, _)| *length == seconds && *start == start_ms)
            .is_some_and(|(_, _, keys)| keys.has(key))
    }

    /// Notes that `key` has its TTL; a newer window of its length replaces the older one's
    /// keys. True when it did: a window of this length has just begun.
    fn insert(&mut self, seconds: u64, start_ms: i64, key: u64) -> bool {
        let (at, first) = match self.by_length.iter().position(|(l, _, _)| *l == seconds) {
            Some(at) => (at, false),
            None => {
                self.by_length.push((seconds, start_ms, KeyBits::default()));
                (self.by_length.len() - 1, true)
            }
        };
        let (_, start, keys) = &mut self.by_length[at];
        let began = first || start_ms > *start;
        if began {
            *start = start_ms;
            keys.clear();
        }
        if start_ms == *start {
            keys.insert(key);
        }
        began
    }

    /// Forgets `key`: its next `INCR` goes with `EXPIRE ... NX` again.
    fn forget(&mut self, seconds: u64, start_ms: i64, key: u64) {
        if let Some((_, _, keys)) = self
            .by_length
            .iter_mut()
            .find(|(length, start, _)| *length == seconds && *start == start_ms)
        {
            keys.remove(key);
        }
    }
}

/// Key hashes as bits of a bitmap: a lookup is one cache miss, where a hash set took two
/// and hashed the hash again (with a million clients, about 0.5 us a request in perf for
/// two windows). Each bitmap is kept at most 1/16 full, so a key of a window this worker has
/// not counted reads as known at most about once in 8 (two bitmaps are read while one
/// grows). That costs nothing: the `INCR` sent without its `EXPIRE` answers 1 for a key it
/// created, and the `EXPIRE ... NX` follows at once, as for a key Redis lost.
#[derive(Default)]
struct KeyBits {
    words: Vec<u64>,
    /// Bits set in `words`.
    set: usize,
    /// The bitmap before the last growth, still read: its keys were learned in this window.
    older: Vec<u64>,
}

impl KeyBits {
    /// The smallest bitmap: 512 bytes.
    const MIN_BITS: usize = 1 << 12;

    /// The word of `words` holding `key`'s bit, and the bit.
    fn bit(words: &[u64], key: u64) -> Option<(usize, u64)> {
        let i = key as usize & (words.len() * 64).checked_sub(1)?;
        Some((i / 64, 1 << (i % 64)))
    }

    fn is_set(words: &[u64], key: u64) -> bool {
        Self::bit(words, key).is_some_and(|(word, mask)| words[word] & mask != 0)
    }

    fn has(&self, key: u64) -> bool {
        Self::is_set(&self.words, key) || Self::is_set(&self.older, key)
    }

    /// Sets `key`'s bit. A bitmap 1/16 full grows sixteenfold, up to [`KNOWN_PER_LENGTH`]
    /// keys; it starts empty, with the one before it still read, so a worker that starts
    /// (and learns every key anew) forgets only the few keys of two bitmaps back, whose next
    /// `INCR` carries the `EXPIRE` again.
    fn insert(&mut self, key: u64) {
        let bits = self.words.len() * 64;
        if self.set * 16 >= bits {
            if self.set >= KNOWN_PER_LENGTH {
                return;
            }
            let grown = (bits * 16).clamp(Self::MIN_BITS, KNOWN_PER_LENGTH * 16);
            self.older = std::mem::replace(&mut self.words, vec![0; grown / 64]);
            self.set = 0;
        }
        if let Some((word, mask)) = Self::bit(&self.words, key)
            && self.words[word] & mask == 0
        {
            self.words[word] |= mask;
            self.set += 1;
        }
    }

    fn remove(&mut self, key: u64) {
        if let Some((word, mask)) = Self::bit(&self.words, key)
            && self.words[word] & mask != 0
        {
            self.words[word] &= !mask;
            self.set -= 1;
        }
        if let Some((word, mask)) = Self::bit(&self.older, key) {
            self.older[word] &= !mask;
        }
    }

    /// Forgets every key and keeps the room: the next window holds about as many.
    fn clear(&mut self) {
        self.words.fill(0);
        self.older = Vec::new();
        self.set = 0;
    }
}

/// A request's windows while their count is unanswered. Keys this worker knows go without
/// `EXPIRE`, and Redis may have lost one and the `INCR` created it again with no TTL, which
/// only its reply tells. When the reply is lost (a failure, a timeout, the request gone),
/// dropping this sends those keys' `EXPIRE ... NX` anyway and this worker forgets them:
/// otherwise such a counter could live forever.
struct Unanswered {
    pipe: Rc<Pipe>,
    store: u64,
    windows: Vec<Window>,
    hashes: Vec<u64>,
    /// Bit `i`: window `i` went without `EXPIRE` and its reply has not come.
    known: u64,
}

impl Unanswered {
    /// Sends `EXPIRE ... NX` for the windows in `mask` (not waited for) and forgets them.
    fn expire_and_forget(&self, mask: u64) {
        let picked: Vec<usize> = (0..self.windows.len())
            .filter(|i| mask & (1 << i) != 0)
            .collect();
        if picked.is_empty() {
            return;
        }
        let windows: Vec<&Window> = picked.iter().map(|&i| &self.windows[i]).collect();
        drop(
            self.pipe
                .call(windows.len(), |out| encode_expire(out, &windows)),
        );
        // try_with: a worker's thread locals may be gone when its last futures drop.
        let _ = KNOWN.try_with(|known| {
            if let Some(mine) = known.borrow_mut().get_mut(&self.store) {
                for &i in &picked {
                    let w = &self.windows[i];
                    mine.forget(w.seconds, w.start_ms, self.hashes[i]);
                }
            }
        });
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        self.expire_and_forget(self.known);
    }
}

/// Drops every store's keys of windows of `seconds` that started before `start_ms`. A store
/// that has not counted in the current window (a config change replaced it, or its traffic
/// stopped) would clear them at its next count anyway; until then they are only memory, up
/// to [`KNOWN_PER_LENGTH`] keys each. Run when a window begins, so once per window.
fn drop_older_windows(known: &mut HashMap<u64, KnownTtls>, seconds: u64, start_ms: i64) {
    for ttls in known.values_mut() {
        ttls.by_length
            .retain(|(length, start, _)| *length != seconds || *start >= start_ms);
    }
    known.retain(|_, ttls| !ttls.by_length.is_empty());
}

thread_local! {
    /// Each worker's [`KnownTtls`], by store.
    static KNOWN: RefCell<HashMap<u64, KnownTtls>> = RefCell::new(HashMap::new());
}

/// A request's windows as [`Realtime::plan`] found them on this worker.
struct Plan {
    store: u64,
    hashes: Vec<u64>,
    /// Send `EXPIRE ... NX` with the window's `INCR`.
    expire: Vec<bool>,
}

/// Queues the count of `windows` on `pipe` as `plan` says; the future answers each window's
/// count before this one, sets the TTL of a known key Redis had lost, and remembers the keys
/// that now have their TTL.
fn count_planned(
    pipe: Rc<Pipe>,
    windows: &[Window],
    plan: Plan,
) -> impl Future<Output = UsageResult> + use<> {
    let counting = incr_expire(&pipe, windows, &plan.expire);
    let known = (plan.expire.iter().enumerate())
        .filter(|(_, expire)| !**expire)
        .fold(0, |mask, (i, _)| mask | 1 << i);
    let mut unanswered = Unanswered {
        pipe,
        store: plan.store,
        windows: windows.to_vec(),
        hashes: plan.hashes,
        known,
    };
    let expire = plan.expire;
    async move {
        let counts = counting.await?;
        unanswered.known = 0;
        // A known key whose INCR answered 1 was created again, without its TTL.
        let created = (counts.iter().zip(&expire).enumerate())
            .filter(|(_, (before, expired))| !**expired && **before == 0)
            .fold(0, |mask, (i, _)| mask | 1 << i);
        unanswered.expire_and_forget(created);
        let (windows, hashes) = (&unanswered.windows, &unanswered.hashes);
        KNOWN.with(|known| {
            let mut known = known.borrow_mut();
            let mine = known.entry(unanswered.store).or_default();
            let mut began = Vec::new();
            for ((w, &h), &expired) in windows.iter().zip(hashes).zip(&expire) {
                if expired && mine.insert(w.seconds, w.start_ms, h) {
                    began.push((w.seconds, w.start_ms));
                }
            }
            for (seconds, start_ms) in began {
                drop_older_windows(&mut known, seconds, start_ms);
            }
        });
        Ok(counts)
    }
}

impl Realtime {
    /// Counts in `target`.
    pub fn new(target: Arc<Target>) -> Realtime {
        Realtime {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            target,
            script: Arc::new(redis::Script::new(INCREMENT)),
            hasher: RandomState::new(),
        }
    }

    /// Which of `windows`' keys this worker has not seen counted, so they go with their
    /// `EXPIRE ... NX`.
    fn plan(&self, windows: &[Window]) -> Plan {
        let hashes: Vec<u64> = window_keys(&self.hasher, windows)
            .map(|(_, hash)| hash)
            .collect();
        let expire = KNOWN.with(|known| {
            let mut known = known.borrow_mut();
            let known = known.entry(self.id).or_default();
            windows
                .iter()
                .zip(&hashes)
                .map(|(w, &h)| !known.has(w.seconds, w.start_ms, h))
                .collect()
        });
        Plan {
            store: self.id,
            hashes,
            expire,
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
                let plan = self.plan(windows);
                return self.reported(round_trip(&target, count_planned(pipe, windows, plan)));
            }
            let plan = self.plan(windows);
            let windows = windows.to_vec();
            return self.reported(async move { count_on_pipe(&target, &windows, plan).await });
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
async fn count_on_pipe(target: &Arc<Target>, windows: &[Window], plan: Plan) -> UsageResult {
    let pipe = target.pipe().await?;
    if pipe.counting == Counting::ExpireNx {
        return round_trip(target, count_planned(pipe, windows, plan)).await;
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

/// Queues `INCR key` for every window, each followed by `EXPIRE key ttl NX` where `expire`
/// says; the future answers each window's count before this one.
fn incr_expire(
    pipe: &Pipe,
    windows: &[Window],
    expire: &[bool],
) -> impl Future<Output = UsageResult> + use<> {
    let n = windows.len();
    let expires = expire.iter().filter(|&&e| e).count();
    let call = pipe.call(n + expires, |out| encode_incr_expire(out, windows, expire));
    let expire = expire.to_vec();
    async move {
        let after = pipe::incr_totals(&call.await?, n, &expire)?;
        Ok(after
            .into_iter()
            .map(|n| (n.max(0) as u64).saturating_sub(1))
            .collect())
    }
}

/// The fixed parts of `INCR key` and `EXPIRE key ttl NX` on the wire, written whole: this
/// runs for every request counted in realtime.
const INCR: &[u8] = b"*2\r\n$4\r\nINCR\r\n";
const EXPIRE: &[u8] = b"*4\r\n$6\r\nEXPIRE\r\n";
const NX: &[u8] = b"$2\r\nNX\r\n";

/// `INCR key` for every window, each followed by `EXPIRE key ttl NX` where `expire` says;
/// each key is encoded once and copied.
fn encode_incr_expire(out: &mut Vec<u8>, windows: &[Window], expire: &[bool]) {
    let (mut start, mut ttl) = (itoa::Buffer::new(), itoa::Buffer::new());
    for (window, &expire) in windows.iter().zip(expire) {
        out.extend_from_slice(INCR);
        let key_at = out.len();
        resp::bulk(out, &window.key_parts(&mut start));
        if expire {
            let key = key_at..out.len();
            out.extend_from_slice(EXPIRE);
            out.extend_from_within(key);
            resp::bulk(out, &[ttl.format(window.seconds).as_bytes()]);
            out.extend_from_slice(NX);
        }
    }
}

/// `EXPIRE key ttl NX` for every window.
fn encode_expire(out: &mut Vec<u8>, windows: &[&Window]) {
    let (mut start, mut ttl) = (itoa::Buffer::new(), itoa::Buffer::new());
    for window in windows {
        out.extend_from_slice(EXPIRE);
        resp::bulk(out, &window.key_parts(&mut start));
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

    /// The bitmap knows the keys set since the growth before its last (a worker learning a
    /// window anew forgets few), reads other keys as known rarely, forgets a removed key,
    /// and stops growing at its bound.
    #[test]
    fn key_bits_know_their_keys_and_stay_within_their_bounds() {
        let hash = |n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        let mut bits = KeyBits::default();
        assert!(!bits.has(hash(1)));
        for n in 0..100_000 {
            bits.insert(hash(n));
        }
        let room = bits.words.len() * 64;
        assert!(bits.set * 16 <= room, "at most 1/16 full");
        let forgotten = (0..100_000).filter(|&n| !bits.has(hash(n))).count();
        assert!(forgotten < 5_000, "{forgotten} of 100,000 keys forgotten");
        assert!((5_000..100_000).all(|n| bits.has(hash(n))));
        let strangers = (1_000_000..1_100_000)
            .filter(|&n| bits.has(hash(n)))
            .count();
        assert!(
            strangers < 100_000 / 8,
            "{strangers} of 100,000 read as known"
        );
        bits.remove(hash(99_999));
        assert!(!bits.has(hash(99_999)));
        bits.clear();
        assert!(!bits.has(hash(99_998)));
        assert_eq!(bits.words.len() * 64, room, "a new window keeps the room");
        for n in 0..(KNOWN_PER_LENGTH as u64 * 2) {
            bits.insert(hash(n));
        }
        assert!(bits.words.len() * 64 <= KNOWN_PER_LENGTH * 16);
        assert!(bits.set <= KNOWN_PER_LENGTH);
    }

    #[test]
    fn a_window_that_begins_drops_every_store_s_keys_of_older_windows_of_its_length() {
        const MINUTE: i64 = 60_000;
        let mut known: HashMap<u64, KnownTtls> = HashMap::new();
        let (live, left_behind) = (1, 2);
        for store in [live, left_behind] {
            let ttls = known.entry(store).or_default();
            assert!(ttls.insert(60, 0, 7), "the first minute begins");
            assert!(ttls.insert(3600, 0, 7), "the first hour begins");
            assert!(!ttls.insert(60, 0, 8), "same minute");
        }
        let began = known
            .get_mut(&live)
            .expect("live store")
            .insert(60, MINUTE, 9);
        assert!(began);
        drop_older_windows(&mut known, 60, MINUTE);
        assert!(known[&live].has(60, MINUTE, 9));
        assert!(known[&live].has(3600, 0, 7), "other lengths stay");
        assert!(!known[&left_behind].has(60, 0, 7), "its old minute is gone");
        assert!(known[&left_behind].has(3600, 0, 7));
        let began = known
            .get_mut(&live)
            .expect("live store")
            .insert(3600, 60 * MINUTE, 9);
        assert!(began);
        drop_older_windows(&mut known, 3600, 60 * MINUTE);
        assert!(
            !known.contains_key(&left_behind),
            "a store with no current window is dropped whole"
        );
    }

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
        encode_incr_expire(&mut got, &windows, &[true, true]);
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
