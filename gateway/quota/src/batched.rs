//! `sync_rate > 0`: counting on the node, flushed to Redis in batches (Kong's batched mode,
//! per node rather than per worker).
//!
//! A window's first request on the node waits for its count from Redis; later requests add
//! to a local delta and read `remote + delta` without I/O. The first requests of many
//! windows share a read: a worker gathers the windows it misses in one turn of its event
//! loop into one `MGET` (with a million clients, most windows a node sees are new to it), on
//! the worker's pipe.
//! Every `sync_rate` seconds a background thread sends the delta of every window counted
//! since the last flush, in pipelines of up to [`FLUSH_CHUNK`] windows (`INCRBY`, and
//! `EXPIREAT ... NX` for the window's end; Kong's script on servers older than 7.0) on a pipe
//! of that thread's own, and reads back each total, which then includes the other nodes'
//! requests. A request is counted as it reads, and a refused one is taken back. A failed
//! flush keeps its deltas for the next one; a window Redis refuses (its key holds no count)
//! keeps its own, and the others of its flush are counted.
//!
//! A window whose key the read did not find is written with `SET key delta EXAT end NX`:
//! one command creates it with its TTL, where `INCRBY` and `EXPIREAT` are two (with many
//! clients, most windows a flush writes are new ones: about 4 commands a request became
//! about 2). When another node created the key after the read, the `SET` answers nil and
//! the delta goes again as `INCRBY` and `EXPIREAT ... NX`, in a second round trip.
//!
//! `EXPIREAT` goes with a window's `INCRBY` only until the key is known to carry its TTL:
//! the read found the key, or an earlier flush set it. With many clients most windows are
//! flushed a few times each, and an `INCRBY` alone costs Redis about half of the pair. An
//! `INCRBY` that answers exactly its delta created the key (it had expired, or Redis lost
//! it), so those keys get their `EXPIREAT ... NX` at once, in a second round trip.
//!
//! Overshoot: a node sees other nodes' requests only at its flushes, so with N nodes, a
//! window admits at most `limit + (N - 1) × (requests one node admits in sync_rate seconds)`
//! requests, and never more than `N × limit`. One node alone is exact.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use gangway_pipeline::quota::{QuotaError, QuotaStore, Usage, UsageResult, Window, window_keys};
use tokio::sync::oneshot;

use super::connect::{Target, round_trip};
use super::pipe::{Counting, integer, unexpected};
use super::realtime::Realtime;
use super::resp::{self, Reply};
use super::slot_table::SlotTable;

/// Windows per flush pipeline: bounds one reply and one call's time.
const FLUSH_CHUNK: usize = 10_000;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Kong's flush script, returning the new total.
const FLUSH: &str = r#"
local existed = redis.call("exists", KEYS[1])
local total = redis.call("incrby", KEYS[1], ARGV[1])
if existed == 0 then
  redis.call("expireat", KEYS[1], ARGV[2])
end
return total
"#;

/// Who set the TTLs of the keys a flush wrote.
enum Expiry {
    /// `EXPIREAT ... NX` went with the windows the flush was asked to expire.
    AsAsked,
    /// Kong's script, which sets the TTL of every key it creates.
    ByScript,
}

/// One window's count on this node.
struct Entry {
    /// The window counted, which the Redis key is written from at each flush: its parts are
    /// shared (the instance's scope by every window, the identifier by a request's windows),
    /// where the key itself would take about 150 bytes a window.
    window: Window,
    /// Redis's count at the last read or flush.
    remote: AtomicI64,
    /// Taken from `delta` by a flush that Redis has not confirmed yet (only the sync thread
    /// writes it): still counted by reads, sent again when a flush fails.
    inflight: AtomicI64,
    /// Requests counted here and not yet flushed; below zero when a refused request was
    /// taken back after its count was flushed.
    delta: AtomicI64,
    /// Queued for the next flush.
    dirty: AtomicBool,
    /// Redis holds the key with its TTL, as far as this node knows: a flush need not send
    /// `EXPIREAT` with it.
    ttl_set: AtomicBool,
    /// Redis had no key for the window when the node read it, and no flush has written it
    /// since: the next flush creates it, TTL and all, in one `SET ... NX`.
    absent: AtomicBool,
}

/// Every client's count in one window (the minute from 12:00, say). The table only grows,
/// and is freed whole once the window has ended and no worker holds it.
struct Generation {
    seconds: u64,
    start_ms: i64,
    /// When the sweep takes the generation out of use, epoch seconds.
    drop_after: u64,
    /// By a 64-bit hash of the window's Kong key (see [`Inner::slot`]).
    entries: SlotTable<Entry>,
    /// Positions of the entries counted since the last flush: a flush visits those, not
    /// every window.
    dirty: Mutex<Vec<usize>>,
}

impl Generation {
    /// A generation for `window`'s period and start, with room for `capacity` windows.
    fn new(window: &Window, capacity: usize) -> Generation {
        Generation {
            seconds: window.seconds,
            start_ms: window.start_ms,
            drop_after: ends_at(window) + LINGER,
            entries: SlotTable::with_capacity(capacity),
            dirty: Mutex::new(Vec::new()),
        }
    }

    fn holds(&self, window: &Window) -> bool {
        self.seconds == window.seconds && self.start_ms == window.start_ms
    }

    /// Queues the entry at `position` for the next flush, unless it is queued already.
    fn mark(&self, position: usize, entry: &Entry) {
        if !entry.dirty.load(Ordering::Acquire) && !entry.dirty.swap(true, Ordering::AcqRel) {
            self.dirty
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(position);
        }
    }

    /// The entries queued since the last call.
    fn take_marked(&self) -> Vec<usize> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// An entry queued for a flush, and where to queue it again.
struct Marked<'g> {
    generation: &'g Generation,
    position: usize,
    entry: &'g Entry,
}

/// A window's total after a flush: `None` for a [`Write::Create`] that found the key; an
/// error for a window Redis refused to count (its key holds something that is no count).
type Total = Result<Option<i64>, QuotaError>;

/// How a flush writes one window's delta on Redis 7 and later.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Write {
    /// `SET key delta EXAT end NX`: the key was not there at the read. One command instead of
    /// `INCRBY` and `EXPIREAT`; with many clients most windows a flush writes are new ones.
    /// Answers nil when another node created the key meanwhile, and the delta then goes as
    /// [`Write::AddAndExpire`].
    Create,
    /// `INCRBY key delta` and `EXPIREAT key end NX`.
    AddAndExpire,
    /// `INCRBY key delta`: the key carries its TTL.
    Add,
}

impl Entry {
    fn write(&self) -> Write {
        if self.absent.load(Ordering::Acquire) {
            Write::Create
        } else if self.ttl_set.load(Ordering::Acquire) {
            Write::Add
        } else {
            Write::AddAndExpire
        }
    }

    /// Takes Redis's `total` after a flush of `delta` written as `write`; a key the flush's
    /// `INCRBY` created without a TTL goes to `created`.
    fn confirm<'e>(
        &'e self,
        total: i64,
        delta: i64,
        write: Write,
        expiry: &Expiry,
        created: &mut Vec<&'e Entry>,
    ) {
        // Redis's total first: a read in between counts the delta twice.
        self.remote.store(total, Ordering::Release);
        self.inflight.fetch_sub(delta, Ordering::AcqRel);
        self.absent.store(false, Ordering::Release);
        if write != Write::Add || matches!(expiry, Expiry::ByScript) {
            self.ttl_set.store(true, Ordering::Release);
        } else if total == delta {
            self.ttl_set.store(false, Ordering::Release);
            created.push(self);
        }
    }

    /// When the window ends, epoch seconds (the key's EXPIREAT).
    fn ends_at(&self) -> u64 {
        ends_at(&self.window)
    }

    /// Queues `EXPIREAT key end NX` (its reply ignored) on a redis crate pipeline.
    fn queue_expireat(&self, pipe: &mut redis::Pipeline, key: &str) {
        pipe.cmd("EXPIREAT")
            .arg(key)
            .arg(self.ends_at())
            .arg("NX")
            .ignore();
    }

    /// Writes `verb key args...` for a pipe (a standalone server: the key as
    /// [`Window::key`] writes it).
    fn encode(&self, out: &mut Vec<u8>, verb: &[u8], args: &[&[u8]]) {
        let mut start = itoa::Buffer::new();
        resp::array(out, 2 + args.len());
        resp::bulk(out, &[verb]);
        resp::bulk(out, &self.window.key_parts(&mut start));
        for arg in args {
            resp::bulk(out, &[arg]);
        }
    }

    /// Writes `EXPIREAT key end NX` for a pipe.
    fn encode_expireat(&self, out: &mut Vec<u8>, ends: &mut itoa::Buffer) {
        let at = ends.format(self.ends_at()).as_bytes();
        self.encode(out, b"EXPIREAT", &[at, b"NX"]);
    }
}

/// A batched store.
pub struct Batched {
    inner: Arc<Inner>,
}

struct Inner {
    /// Names this store's read queue on each worker.
    id: u64,
    target: Arc<Target>,
    /// The windows counted on this node, a generation per period and start: a handful.
    generations: ArcSwap<Vec<Arc<Generation>>>,
    /// How many windows the last generation of each length (seconds) held when it ended.
    ended_sizes: papaya::HashMap<u64, usize>,
    hasher: RandomState,
    /// The flush script (its SHA-1 computed once).
    flush_script: redis::Script,
    /// The most windows of one generation the node keeps; 0 for no bound.
    max_windows: usize,
    /// Counts the windows past `max_windows` in Redis, a round trip per request.
    overflow: Realtime,
}

impl Batched {
    /// A store on `target` that flushes every `sync_rate` seconds from a thread of its own.
    /// Each generation keeps at most `max_windows` windows on the node (0: no bound); a
    /// request in a window past that is counted in Redis at once, as in realtime mode, so a
    /// flood of distinct keys cannot take memory without bound.
    pub fn start(target: Arc<Target>, sync_rate: f64, max_windows: usize) -> Arc<Batched> {
        let inner = Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            overflow: Realtime::new(target.clone()),
            target,
            generations: ArcSwap::default(),
            ended_sizes: papaya::HashMap::new(),
            hasher: RandomState::new(),
            flush_script: redis::Script::new(FLUSH),
            max_windows,
        });
        let weak = Arc::downgrade(&inner);
        // Kong's schema sets no upper bound; a Duration past its range (1e20 s) panics.
        let every = Duration::from_secs_f64(sync_rate.clamp(0.02, 86_400.0));
        let spawned = std::thread::Builder::new()
            .name("gangway-ratelimit-sync".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "rate-limiting: no runtime for Redis sync");
                        return;
                    }
                };
                // A LocalSet: the flusher's connection drives itself as a local task.
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    // Flushes to a standalone server go through a pipe of this thread's own.
                    crate::pipe::install::<gangway_net::epoll::Epoll>();
                    // The first flush one period in: at the start there is nothing to send.
                    let first = tokio::time::Instant::now() + every;
                    let mut tick = tokio::time::interval_at(first, every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut ended = Vec::new();
                    loop {
                        tick.tick().await;
                        let Some(inner) = weak.upgrade() else { return };
                        inner.flush().await;
                        inner.sweep(&mut ended);
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "rate-limiting: cannot start the Redis sync thread");
        }
        Arc::new(Batched { inner })
    }
}

impl Inner {
    /// Sends the delta of every window counted since the last flush, in pipelines of
    /// [`FLUSH_CHUNK`] windows (in a cluster, one script call per window), and takes back the
    /// totals.
    async fn flush(&self) {
        // Unmarked before its delta is taken: a request counted after that marks it again.
        // The delta moves to `inflight` before it leaves `delta`, so a read in between
        // counts it twice rather than not at all. A request and its refund cancel out to
        // nothing to send.
        let generations = self.generations.load_full();
        let mut live = Vec::new();
        let mut deltas = Vec::new();
        for generation in generations.iter() {
            for position in generation.take_marked() {
                let Some(entry) = generation.entries.at(position) else {
                    continue;
                };
                entry.dirty.store(false, Ordering::Release);
                let delta = entry.delta.load(Ordering::Acquire);
                if delta != 0 {
                    entry.inflight.fetch_add(delta, Ordering::AcqRel);
                    entry.delta.fetch_sub(delta, Ordering::AcqRel);
                }
                let sending = entry.inflight.load(Ordering::Acquire);
                if sending != 0 {
                    live.push(Marked {
                        generation,
                        position,
                        entry,
                    });
                    deltas.push(sending);
                }
            }
        }
        if live.is_empty() {
            return;
        }
        // A chunk that failed may have been counted anyway (a reply lost to a timeout): its
        // deltas go again, which can only overcount.
        let mut sent = 0;
        for (marked, deltas) in live.chunks(FLUSH_CHUNK).zip(deltas.chunks(FLUSH_CHUNK)) {
            let entries: Vec<&Entry> = marked.iter().map(|m| m.entry).collect();
            if let Err(e) = self.flush_chunk(&entries, deltas).await {
                // Their deltas stay in `inflight`, still counted, for the next flush.
                for queued in &live[sent..] {
                    queued.generation.mark(queued.position, queued.entry);
                }
                self.target
                    .stats
                    .record(&format!("sync to {}", self.target.describe), &e);
                return;
            }
            sent += entries.len();
        }
    }

    /// Sends one chunk of a flush and takes back its totals.
    async fn flush_chunk(&self, entries: &[&Entry], deltas: &[i64]) -> Result<(), QuotaError> {
        let writes: Vec<Write> = entries.iter().map(|e| e.write()).collect();
        let (totals, expiry) = self.send(entries, deltas, &writes).await?;
        let mut created = Vec::new();
        let mut raced = Vec::new();
        // A window Redis refused keeps its delta in flight, to go again; the others of the
        // chunk are counted all the same (were they sent again too, every flush while the
        // refused key lives would add their deltas once more).
        let mut refused = Ok(());
        for (((entry, total), &delta), &write) in
            entries.iter().zip(totals).zip(deltas).zip(&writes)
        {
            match total {
                Ok(Some(total)) => entry.confirm(total, delta, write, &expiry, &mut created),
                Ok(None) => raced.push((*entry, delta)),
                Err(e) => refused = Err(e),
            }
        }
        let added = match raced.is_empty() {
            true => Ok(()),
            false => self.add_to_raced(raced, &mut created).await,
        };
        // Whatever became of the raced ones: a key created without a TTL gets it now.
        if !created.is_empty() {
            self.expire_created(&created).await;
        }
        refused.and(added)
    }

    /// Sends the deltas of windows whose `SET ... NX` found the key (another node created it
    /// between this node's read and the flush) as `INCRBY` and `EXPIREAT ... NX`.
    async fn add_to_raced<'e>(
        &self,
        raced: Vec<(&'e Entry, i64)>,
        created: &mut Vec<&'e Entry>,
    ) -> Result<(), QuotaError> {
        let (entries, deltas): (Vec<&Entry>, Vec<i64>) = raced.into_iter().unzip();
        for entry in &entries {
            entry.absent.store(false, Ordering::Release);
        }
        let writes = vec![Write::AddAndExpire; entries.len()];
        let (totals, expiry) = self.send(&entries, &deltas, &writes).await?;
        let mut refused = Ok(());
        for ((entry, total), &delta) in entries.iter().zip(totals).zip(&deltas) {
            match total {
                Ok(Some(total)) => {
                    entry.confirm(total, delta, Write::AddAndExpire, &expiry, created)
                }
                Ok(None) => refused = Err(QuotaError::Store("Redis answered nil to INCRBY".into())),
                Err(e) => refused = Err(e),
            }
        }
        refused
    }

    /// Takes the generations whose windows have ended out of use (counts not flushed by
    /// then are of windows Redis has expired), and frees those no worker holds any more, here
    /// rather than on a worker.
    fn sweep(&self, ended: &mut Vec<Arc<Generation>>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.generations.load().iter().any(|g| g.drop_after <= now) {
            let before = self.generations.rcu(|all| {
                all.iter()
                    .filter(|g| g.drop_after > now)
                    .cloned()
                    .collect::<Vec<_>>()
            });
            let sizes = self.ended_sizes.pin();
            for generation in before.iter().filter(|g| g.drop_after <= now) {
                sizes.insert(generation.seconds, generation.entries.len());
                ended.push(generation.clone());
            }
        }
        ended.retain(|generation| Arc::strong_count(generation) > 1);
    }

    /// Sets the TTL of keys a flush's `INCRBY` created without one; a failure leaves them
    /// to the next flush that counts them.
    async fn expire_created(&self, created: &[&Entry]) {
        let expired = if self.target.pipes() {
            self.expire_on_pipe(created).await
        } else {
            self.target
                .run(async |conn| {
                    let mut pipe = redis::pipe();
                    for entry in created {
                        entry.queue_expireat(&mut pipe, &self.target.key(&entry.window));
                    }
                    pipe.query_async::<()>(&mut *conn).await
                })
                .await
        };
        match expired {
            Ok(()) => {
                for entry in created {
                    entry.ttl_set.store(true, Ordering::Release);
                }
            }
            Err(e) => self
                .target
                .stats
                .record(&format!("sync to {}", self.target.describe), &e),
        }
    }

    /// [`Inner::expire_created`] on this thread's pipe.
    async fn expire_on_pipe(&self, created: &[&Entry]) -> Result<(), QuotaError> {
        let pipe = self.target.pipe().await?;
        let mut ends = itoa::Buffer::new();
        let call = pipe.call(created.len(), |out| {
            for entry in created {
                entry.encode_expireat(out, &mut ends);
            }
        });
        let replies = round_trip(&self.target, call).await?;
        match replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            Some(refused) => Err(unexpected(refused)),
            None => Ok(()),
        }
    }

    /// Adds `deltas` to the windows' keys in Redis, each written as `writes` says (Kong's
    /// script instead on servers older than 7.0), and answers their new totals: `None` for a
    /// [`Write::Create`] that found the key.
    async fn send(
        &self,
        live: &[&Entry],
        deltas: &[i64],
        writes: &[Write],
    ) -> Result<(Vec<Total>, Expiry), QuotaError> {
        if self.target.pipes() {
            return self.send_on_pipe(live, deltas, writes).await;
        }
        let script = &self.flush_script;
        let cluster = self.target.cluster;
        let answered = self
            .target
            .run(async |conn| {
                if self.target.expire_nx(conn).await? {
                    let mut pipe = redis::pipe();
                    // A window Redis refuses answers its error in place of its total.
                    pipe.ignore_errors();
                    for ((entry, delta), &write) in live.iter().zip(deltas).zip(writes) {
                        let key = self.target.key(&entry.window);
                        if write == Write::Create {
                            pipe.cmd("SET")
                                .arg(&key)
                                .arg(delta)
                                .arg("EXAT")
                                .arg(entry.ends_at())
                                .arg("NX");
                            continue;
                        }
                        pipe.cmd("INCRBY").arg(&key).arg(delta);
                        if write == Write::AddAndExpire {
                            entry.queue_expireat(&mut pipe, &key);
                        }
                    }
                    let values = pipe.query_async::<Vec<redis::Value>>(&mut *conn).await?;
                    return Ok(Answered::Written(values));
                }
                // A cluster gets the script, one call per window (a pipeline may not cross
                // slots).
                if cluster {
                    let mut totals = Vec::with_capacity(live.len());
                    for (entry, delta) in live.iter().zip(deltas) {
                        let mut call = script.prepare_invoke();
                        call.key(self.target.key(&entry.window))
                            .arg(delta)
                            .arg(entry.ends_at());
                        totals.push(match call.invoke_async::<i64>(&mut *conn).await {
                            Ok(total) => Ok(Some(total)),
                            // The server refused this window; the others still go.
                            Err(e) if e.code().is_some() => Err(QuotaError::Store(e.to_string())),
                            Err(e) => return Err(e),
                        });
                        if totals.len() > 1 {
                            self.target.stats.round_trip();
                        }
                    }
                    return Ok(Answered::Scripted(totals));
                }
                // A pipeline of EVALSHA after one SCRIPT LOAD, so a fresh server works too.
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(FLUSH)
                    .query_async::<String>(&mut *conn)
                    .await?;
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for (entry, delta) in live.iter().zip(deltas) {
                    pipe.cmd("EVALSHA")
                        .arg(script.get_hash())
                        .arg(1)
                        .arg(self.target.key(&entry.window))
                        .arg(delta)
                        .arg(entry.ends_at());
                }
                let values = pipe.query_async::<Vec<redis::Value>>(&mut *conn).await?;
                Ok(Answered::Scripted(
                    values
                        .into_iter()
                        .map(|value| match value {
                            redis::Value::Int(total) => Ok(Some(total)),
                            other => Err(unexpected_value(other)),
                        })
                        .collect(),
                ))
            })
            .await?;
        match answered {
            Answered::Scripted(totals) if totals.len() == live.len() => {
                Ok((totals, Expiry::ByScript))
            }
            Answered::Scripted(_) => Err(QuotaError::Store(
                "Redis answered a flush with too few replies".into(),
            )),
            Answered::Written(values) if values.len() == live.len() => {
                let totals = values
                    .iter()
                    .zip(writes)
                    .zip(deltas)
                    .map(|((value, &write), &delta)| match (write, value) {
                        (Write::Create, redis::Value::Okay) => Ok(Ok(Some(delta))),
                        (Write::Create, redis::Value::Nil) => Ok(Ok(None)),
                        (Write::Add | Write::AddAndExpire, redis::Value::Int(n)) => {
                            Ok(Ok(Some(*n)))
                        }
                        (_, refused @ redis::Value::ServerError(_)) => {
                            Ok(Err(unexpected_value(refused.clone())))
                        }
                        (_, other) => Err(unexpected_value(other.clone())),
                    })
                    .collect::<Result<_, _>>()?;
                Ok((totals, Expiry::AsAsked))
            }
            Answered::Written(_) => Err(QuotaError::Store(
                "Redis answered a flush with too few replies".into(),
            )),
        }
    }

    /// [`Inner::send`] on this thread's pipe, in one round trip: each window as `writes`
    /// says, or `SCRIPT LOAD` and Kong's script per window.
    async fn send_on_pipe(
        &self,
        live: &[&Entry],
        deltas: &[i64],
        writes: &[Write],
    ) -> Result<(Vec<Total>, Expiry), QuotaError> {
        let pipe = self.target.pipe().await?;
        let (mut delta, mut ends) = (itoa::Buffer::new(), itoa::Buffer::new());
        let windows = live.iter().zip(deltas);
        match pipe.counting {
            Counting::ExpireNx => {
                let expires = writes.iter().filter(|&&w| w == Write::AddAndExpire).count();
                let call = pipe.call(live.len() + expires, |out| {
                    for ((entry, &n), &write) in windows.zip(writes) {
                        let n = delta.format(n).as_bytes();
                        if write == Write::Create {
                            let at = ends.format(entry.ends_at()).as_bytes();
                            entry.encode(out, b"SET", &[n, b"EXAT", at, b"NX"]);
                            continue;
                        }
                        entry.encode(out, b"INCRBY", &[n]);
                        if write == Write::AddAndExpire {
                            entry.encode_expireat(out, &mut ends);
                        }
                    }
                });
                let replies = round_trip(&self.target, call).await?;
                Ok((written_totals(&replies, writes, deltas)?, Expiry::AsAsked))
            }
            Counting::Script => {
                let sha = self.flush_script.get_hash().as_bytes();
                let call = pipe.call(1 + live.len(), |out| {
                    resp::command(out, &[b"SCRIPT", b"LOAD", FLUSH.as_bytes()]);
                    let mut start = itoa::Buffer::new();
                    for (entry, &n) in windows {
                        let (n, at) = (delta.format(n).as_bytes(), ends.format(entry.ends_at()));
                        resp::array(out, 6);
                        for arg in [b"EVALSHA", sha, b"1"] {
                            resp::bulk(out, &[arg]);
                        }
                        resp::bulk(out, &entry.window.key_parts(&mut start));
                        resp::bulk(out, &[n]);
                        resp::bulk(out, &[at.as_bytes()]);
                    }
                });
                let replies = round_trip(&self.target, call).await?;
                // SCRIPT LOAD's reply, then a total or a refusal per window.
                match replies.split_first() {
                    Some((Reply::Error(e), _)) => Err(QuotaError::Store(e.clone())),
                    Some((_, totals)) if totals.len() == live.len() => Ok((
                        totals.iter().map(|t| integer(t).map(Some)).collect(),
                        Expiry::ByScript,
                    )),
                    _ => Err(QuotaError::Store("Redis answered too few replies".into())),
                }
            }
        }
    }

    /// The map key of `window`, without building its Kong key.
    fn slot(&self, window: &Window) -> u64 {
        let mut state = self.hasher.build_hasher();
        window.hash_key(&mut state);
        state.finish()
    }

    /// Counts a request in `window` and answers the count before it; `None` when this node
    /// has no count for the window yet.
    fn count(&self, window: &Window) -> Option<u64> {
        self.with_entry(window, counted)
    }

    /// Where a request's count in `window` comes from, counting it when the node has the
    /// window (one lookup of the generation and the entry); `slot` is its [`Inner::slot`].
    fn source(&self, window: &Window, slot: u64) -> Source {
        let generations = self.generations.load();
        let Some(generation) = generations.iter().find(|g| g.holds(window)) else {
            return Source::Read;
        };
        if let Some((position, entry)) = generation.entries.get(slot) {
            return Source::Counted(counted(generation, position, entry));
        }
        if self.max_windows == 0 || generation.entries.len() < self.max_windows {
            return Source::Read;
        }
        // The first time a request finds the generation full, and at every power of two
        // after, the log says so.
        let n = self.target.stats.count_past_max_keys();
        if n.is_power_of_two() {
            tracing::warn!(
                counted_in_redis = n,
                max_windows = self.max_windows,
                "rate-limiting: the node keeps as many sync_rate windows of this length as \
                 it may (rate_limiting_local_max_keys); requests with new keys are counted \
                 in Redis on every request until the window rolls over"
            );
        }
        Source::Overflow
    }

    /// `f` of `window`'s generation, entry and its position, if this node has it.
    fn with_entry<R>(
        &self,
        window: &Window,
        f: impl FnOnce(&Generation, usize, &Entry) -> R,
    ) -> Option<R> {
        let generations = self.generations.load();
        let generation = generations.iter().find(|g| g.holds(window))?;
        let (position, entry) = generation.entries.get(self.slot(window))?;
        Some(f(generation, position, entry))
    }

    /// `window`'s generation, added when new.
    fn generation(&self, window: &Window) -> Arc<Generation> {
        let find = |all: &[Arc<Generation>]| all.iter().find(|g| g.holds(window)).cloned();
        let generations = self.generations.load();
        if let Some(found) = find(&generations) {
            return found;
        }
        // Sized as the period's last generation, live or ended: most clients come back in
        // the next window, and a map that grows from empty copies itself a dozen times
        // meanwhile, each copy a stall of the worker that makes it.
        let capacity = generations
            .iter()
            .filter(|g| g.seconds == window.seconds)
            .map(|g| g.entries.len())
            .chain(self.ended_sizes.pin().get(&window.seconds).copied())
            .max()
            .unwrap_or_default();
        let fresh = Arc::new(Generation::new(window, capacity));
        self.generations.rcu(|all| match find(all) {
            Some(_) => Arc::clone(all),
            None => {
                let mut grown = Vec::clone(all);
                grown.push(fresh.clone());
                Arc::new(grown)
            }
        });
        find(&self.generations.load()).unwrap_or(fresh)
    }

    /// Reads `missing` in one `MGET` and keeps their counts.
    async fn read(&self, missing: Vec<Window>) -> Result<(), QuotaError> {
        let read = if self.target.pipes() {
            self.read_on_pipe(&missing).await
        } else {
            let keys: Vec<String> = missing.iter().map(|w| self.target.key(w)).collect();
            self.target
                .run(async |conn| {
                    redis::cmd("MGET")
                        .arg(&keys)
                        .query_async::<Vec<Option<i64>>>(&mut *conn)
                        .await
                })
                .await
        };
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                self.target
                    .stats
                    .record(&format!("reading from {}", self.target.describe), &e);
                return Err(e);
            }
        };
        for (window, remote) in missing.into_iter().zip(read) {
            let (generation, slot) = (self.generation(&window), self.slot(&window));
            generation.entries.get_or_insert_with(slot, || Entry {
                window,
                remote: AtomicI64::new(remote.unwrap_or_default()),
                inflight: AtomicI64::new(0),
                delta: AtomicI64::new(0),
                dirty: AtomicBool::new(false),
                ttl_set: AtomicBool::new(remote.is_some()),
                absent: AtomicBool::new(remote.is_none()),
            });
        }
        Ok(())
    }

    /// `MGET` of the windows' keys on this worker's pipe (a standalone server: the keys as
    /// [`Window::key`] writes them, straight to the wire).
    async fn read_on_pipe(&self, windows: &[Window]) -> Result<Vec<Option<i64>>, QuotaError> {
        let pipe = self.target.pipe().await?;
        let call = pipe.call(1, |out| {
            let mut start = itoa::Buffer::new();
            resp::array(out, 1 + windows.len());
            resp::bulk(out, &[b"MGET"]);
            for window in windows {
                resp::bulk(out, &window.key_parts(&mut start));
            }
        });
        match round_trip(&self.target, call).await?.as_slice() {
            [Reply::Array(Some(values))] if values.len() == windows.len() => {
                values.iter().map(stored_count).collect()
            }
            [other] => Err(unexpected(other)),
            _ => Err(QuotaError::Store("Redis answered with no reply".into())),
        }
    }

    /// Reads every window this worker queued since the task was spawned, and tells each
    /// waiting request.
    async fn read_queued(self: Arc<Inner>) {
        let queued = QUEUED_READS.with(|all| {
            all.borrow_mut()
                .get_mut(&self.id)
                .map(std::mem::take)
                .unwrap_or_default()
        });
        let (missing, waiting): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
        let read = self.read(missing.into_iter().flatten().collect()).await;
        for done in waiting {
            let _ = done.send(read.clone());
        }
    }
}

/// A request's windows to read, and where to say they are in.
type QueuedRead = (Vec<Window>, oneshot::Sender<Result<(), QuotaError>>);

thread_local! {
    /// Each worker's reads not yet sent, by store: the requests of one turn of the event
    /// loop share one `MGET`.
    static QUEUED_READS: RefCell<HashMap<u64, Vec<QueuedRead>>> = RefCell::new(HashMap::new());
}

/// A count `MGET` read: `None` for a key Redis does not have.
fn stored_count(reply: &Reply) -> Result<Option<i64>, QuotaError> {
    match reply {
        Reply::Bulk(None) => Ok(None),
        Reply::Bulk(Some(text)) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .map(Some)
            .ok_or_else(|| unexpected(reply)),
        other => Err(unexpected(other)),
    }
}

/// A reply through the redis crate that is not the one asked for (a refusal among them), as
/// the error it stands for.
fn unexpected_value(value: redis::Value) -> QuotaError {
    QuotaError::Store(match value {
        redis::Value::ServerError(e) => e.to_string(),
        other => format!("unexpected reply from Redis: {other:?}"),
    })
}

/// What a flush through the redis crate answered.
enum Answered {
    /// A reply per window, as its [`Write`] asked (the `EXPIREAT`s' left out).
    Written(Vec<redis::Value>),
    /// Kong's script's totals, or each window's refusal.
    Scripted(Vec<Total>),
}

/// The totals among a pipe flush's replies, a window's reply followed by its `EXPIREAT`'s
/// where its [`Write`] sent one: `None` where a `SET ... NX` found the key, an error where
/// Redis refused the window's write. Too few replies, or a refused `EXPIREAT`, fail the
/// whole call.
fn written_totals(
    replies: &[Reply],
    writes: &[Write],
    deltas: &[i64],
) -> Result<Vec<Total>, QuotaError> {
    let mut replies = replies.iter();
    let mut next = || {
        replies
            .next()
            .ok_or_else(|| QuotaError::Store("Redis answered too few replies".into()))
    };
    let mut totals = Vec::with_capacity(writes.len());
    for (&write, &delta) in writes.iter().zip(deltas) {
        let reply = next()?;
        totals.push(match (write, reply) {
            (Write::Create, Reply::Status(ok)) if ok == "OK" => Ok(Some(delta)),
            (Write::Create, Reply::Bulk(None)) => Ok(None),
            (Write::Create, other) => Err(unexpected(other)),
            (Write::Add | Write::AddAndExpire, reply) => integer(reply).map(Some),
        });
        if write == Write::AddAndExpire
            && let Reply::Error(e) = next()?
        {
            return Err(QuotaError::Store(e.clone()));
        }
    }
    Ok(totals)
}

/// Counts a request in `entry` and answers the count before it.
fn counted(generation: &Generation, position: usize, entry: &Entry) -> u64 {
    let before = entry.delta.fetch_add(1, Ordering::AcqRel);
    generation.mark(position, entry);
    // `inflight` before `remote`: a flush confirmed sets `remote` before it empties
    // `inflight`, so whichever this sees, the delta in flight is counted.
    let inflight = entry.inflight.load(Ordering::Acquire);
    (entry.remote.load(Ordering::Acquire) + inflight + before).max(0) as u64
}

fn ends_at(window: &Window) -> u64 {
    (window.end_ms() / 1000).max(0) as u64
}

/// How long a generation outlives its windows, seconds: a request that began as its window
/// ended still finds its count.
const LINGER: u64 = 2;

/// Where a request's count in one window comes from.
enum Source {
    /// The node has the window: counted already, this was the count before.
    Counted(u64),
    /// The node reads the window's count from Redis first.
    Read,
    /// The node holds as many windows of this length as it keeps: counted in Redis.
    Overflow,
}

/// A request is counted as it reads (one lookup per window) and a refused one is taken back,
/// as in the local store: concurrent requests on the node can never pass a limit together.
impl QuotaStore for Batched {
    fn usage(&self, windows: &[Window]) -> Usage {
        let inner = &self.inner;
        let sources: Vec<Source> = window_keys(&inner.hasher, windows)
            .map(|(w, slot)| inner.source(w, slot))
            .collect();
        let all_counted = sources.iter().map(|source| match source {
            Source::Counted(before) => Some(*before),
            Source::Read | Source::Overflow => None,
        });
        if let Some(counted) = all_counted.collect::<Option<Vec<u64>>>() {
            return Usage::Ready(Ok(counted));
        }
        let pick = |wanted: fn(&Source) -> bool| -> Vec<Window> {
            windows
                .iter()
                .zip(&sources)
                .filter(|(_, source)| wanted(source))
                .map(|(w, _)| w.clone())
                .collect()
        };
        let missing = pick(|s| matches!(s, Source::Read));
        let overflowed = pick(|s| matches!(s, Source::Overflow));
        let counted_in_redis = (!overflowed.is_empty()).then(|| inner.overflow.usage(&overflowed));
        let windows = windows.to_vec();
        let inner = inner.clone();
        // The windows known here are counted already; the others once read or counted in
        // Redis.
        let answer = move |inner: &Inner, in_redis: Vec<u64>| -> UsageResult {
            let mut in_redis = in_redis.into_iter();
            Ok(windows
                .iter()
                .zip(sources)
                .map(|(w, source)| match source {
                    Source::Counted(before) => before,
                    Source::Read => inner.count(w).unwrap_or_default(),
                    Source::Overflow => in_redis.next().unwrap_or_default(),
                })
                .collect())
        };
        let in_redis = async move {
            match counted_in_redis {
                None => Ok(Vec::new()),
                Some(Usage::Ready(counted)) => counted,
                Some(Usage::Pending(counting)) => counting.await,
            }
        };
        if missing.is_empty() {
            return Usage::Pending(Box::pin(async move {
                let in_redis = in_redis.await?;
                answer(&inner, in_redis)
            }));
        }
        if inner.target.cluster {
            // One request's keys share a slot; two requests' keys need not.
            return Usage::Pending(Box::pin(async move {
                inner.read(missing).await?;
                let in_redis = in_redis.await?;
                answer(&inner, in_redis)
            }));
        }
        let (done, read) = oneshot::channel();
        let first = QUEUED_READS.with(|all| {
            let mut all = all.borrow_mut();
            let queue = all.entry(inner.id).or_default();
            queue.push((missing, done));
            queue.len() == 1
        });
        if first {
            tokio::task::spawn_local(inner.clone().read_queued());
        }
        Usage::Pending(Box::pin(async move {
            read.await
                .map_err(|_| QuotaError::Store("the read was abandoned".into()))??;
            let in_redis = in_redis.await?;
            answer(&inner, in_redis)
        }))
    }

    fn increment(&self, _windows: &[Window]) {}

    fn refund(&self, windows: &[Window]) {
        let inner = &self.inner;
        for window in windows {
            inner.with_entry(window, |generation, position, entry| {
                entry.delta.fetch_sub(1, Ordering::AcqRel);
                generation.mark(position, entry);
            });
        }
    }
}

#[cfg(test)]
#[path = "batched_tests.rs"]
mod tests;
