//! Batched counting against a real redis-server: reads and flushes on a worker's pipe, on
//! both I/O backends, with `EXPIREAT ... NX` and with Kong's script.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gangway_config::settings::RedisConnections;
use gangway_net::Backend;
use gangway_net::epoll::Epoll;
use gangway_net::tls::RootSource;
use gangway_pipeline::quota::{QuotaError, QuotaStore, RedisConf, Usage, UsageResult, Window};
use gangway_test_support::redis::Redis;

use super::{Batched, Generation};
use crate::connect::Target;
use crate::pipe::tests::{await_ttl, calls, on_each_backend, windows_at};
use crate::stats::Stats;

/// A store flushing every 50 ms to the Redis at `port`, as `login` when given.
fn store(port: u16, login: Option<(&str, &str)>) -> (Arc<Batched>, Arc<Target>) {
    store_keeping(port, login, 0)
}

/// [`store`], keeping at most `max_windows` windows of a generation.
fn store_keeping(
    port: u16,
    login: Option<(&str, &str)>,
    max_windows: usize,
) -> (Arc<Batched>, Arc<Target>) {
    store_with(port, login, max_windows, 0.05, RedisConnections::PerWorker)
}

/// A store on the Redis at `port` as every setting of the test says.
fn store_with(
    port: u16,
    login: Option<(&str, &str)>,
    max_windows: usize,
    sync_rate: f64,
    sharing: RedisConnections,
) -> (Arc<Batched>, Arc<Target>) {
    let mut conf = serde_json::json!({"host": "127.0.0.1", "port": port, "timeout": 2000});
    if let Some((user, password)) = login {
        conf["username"] = user.into();
        conf["password"] = password.into();
    }
    let conf: RedisConf = serde_json::from_value(conf).expect("a redis record");
    let roots = RootSource::trusted(false, &[]).expect("an empty trust store");
    let target =
        Target::new(&conf, None, &roots, Arc::new(Stats::default()), sharing).expect("target");
    let target = Arc::new(target);
    (
        Batched::start(target.clone(), sync_rate, max_windows),
        target,
    )
}

/// This minute's and this hour's windows for `identifier`, with 10 s or more of the minute
/// left: a minute that ends mid-test expires its keys (and its entry) under the test.
fn windows(identifier: &str) -> Vec<Window> {
    let mut now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let into_minute = now.as_millis() % 60_000;
    if into_minute > 50_000 {
        std::thread::sleep(Duration::from_millis((60_010 - into_minute) as u64));
        now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    }
    windows_at(identifier, now.as_millis() as i64)
}

async fn usage(store: &Batched, windows: &[Window]) -> UsageResult {
    match store.usage(windows) {
        Usage::Ready(usage) => usage,
        Usage::Pending(pending) => pending.await,
    }
}

/// Waits up to 2 s for `key` to hold `want`.
fn wait_for(redis: &Redis, key: &str, want: &str) {
    let started = Instant::now();
    while redis.cli(&["GET", key]) != want {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{key} holds {:?}, not {want}",
            redis.cli(&["GET", key])
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads a count Redis holds, counts on the node, flushes, and checks Redis and the TTLs.
fn reads_counts_and_flushes(login: Option<(&'static str, &'static str)>, tag: &'static str) {
    let redis = Arc::new(Redis::start());
    if login.is_some() {
        redis.cli(&[
            "ACL", "SETUSER", "counter", "on", ">s3cret", "~*", "+@all", "-info",
        ]);
    }
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, target) = store(server.port(), login);
        assert!(target.pipes(), "{backend}: a worker reads on its pipe");
        let id = format!("{backend}-{tag}");
        let windows = windows(&id);
        let [minute, hour] = [&windows[0], &windows[1]].map(Window::key);
        server.cli(&["SET", &hour, "5"]);
        let first = usage(&store, &windows).await.expect("read");
        assert_eq!(first, [0, 5], "{backend}: counted after what Redis held");
        let second = usage(&store, &windows).await.expect("counted");
        assert_eq!(second, [1, 6], "{backend}: counted on the node");
        wait_for(&server, &minute, "2");
        wait_for(&server, &hour, "7");
        let ttl: i64 = server.cli(&["TTL", &minute]).parse().expect("a ttl");
        assert!((1..=60).contains(&ttl), "{backend}: minute ttl {ttl}");
        assert!(
            target.stats.round_trips() >= 2,
            "{backend}: a read and a flush"
        );

        server.cli(&[
            "SET",
            &format!("ratelimit:r:s:{id}-bad:{}:minute", windows[0].start_ms),
            "many",
        ]);
        let bad = self::windows(&format!("{id}-bad"));
        match usage(&store, &bad).await {
            Err(QuotaError::Store(e)) => assert!(e.contains("unexpected reply"), "{backend}: {e}"),
            other => panic!("{backend}: a count that is no number fails the read: {other:?}"),
        }
    });
    let stats = redis.cli(&["INFO", "commandstats"]);
    let used = |cmd: &str| stats.contains(&format!("cmdstat_{cmd}:"));
    match login {
        None => assert!(used("mget") && used("incrby"), "{stats}"),
        Some(_) => assert!(
            used("mget") && used("evalsha") && used("script|load"),
            "{stats}"
        ),
    }
}

/// Past `max_windows` a generation keeps no more windows: a request in a new one is
/// counted in Redis at once (so its count is exact and costs the node no memory), while the
/// windows kept go on counting on the node.
#[test]
fn past_its_bound_a_generation_counts_new_windows_in_redis_at_once() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _) = store_keeping(server.port(), None, 2);
        let [a, b, c] = ["a", "b", "c"].map(|id| windows(&format!("{backend}-bound-{id}")));
        for kept in [&a, &b] {
            assert_eq!(usage(&store, kept).await.expect("read"), [0, 0]);
        }
        assert_eq!(usage(&store, &c).await.expect("counted"), [0, 0]);
        for key in c.iter().map(Window::key) {
            assert_eq!(
                server.cli(&["GET", &key]),
                "1",
                "{backend}: in Redis at once"
            );
            let ttl: i64 = server.cli(&["TTL", &key]).parse().expect("a ttl");
            assert!(ttl > 0, "{backend}: {key} expires ({ttl})");
        }
        assert_eq!(usage(&store, &c).await.expect("counted"), [1, 1]);
        assert_eq!(server.cli(&["GET", &c[0].key()]), "2", "{backend}");
        assert_eq!(
            usage(&store, &a).await.expect("counted"),
            [1, 1],
            "{backend}: a kept window counts on the node"
        );
        let generations = store.inner.generations.load();
        assert_eq!(generations.len(), 2, "{backend}: minute and hour");
        for generation in generations.iter() {
            assert_eq!(
                generation.entries.len(),
                2,
                "{backend}: no third window kept"
            );
        }
        wait_for(&server, &a[0].key(), "2");
        assert_eq!(
            server.cli(&["GET", &c[0].key()]),
            "2",
            "{backend}: not flushed again"
        );
    });
}

#[test]
fn reads_and_flushes_on_the_pipe_with_expireat_nx() {
    reads_counts_and_flushes(None, "nx");
}

#[test]
fn reads_and_flushes_on_the_pipe_with_kong_s_script_for_a_user_without_info() {
    reads_counts_and_flushes(Some(("counter", "s3cret")), "script");
}

#[test]
fn a_window_s_ttl_is_sent_until_it_is_set_and_again_when_redis_loses_the_key() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _target) = store(server.port(), None);
        let windows = windows(&format!("{backend}-ttl"));
        let [minute, hour] = [&windows[0], &windows[1]].map(Window::key);
        server.cli(&["CONFIG", "RESETSTAT"]);

        usage(&store, &windows).await.expect("read");
        wait_for(&server, &minute, "1");
        wait_for(&server, &hour, "1");
        assert_eq!(
            (calls(&server, "set"), calls(&server, "incrby")),
            (2, 0),
            "{backend}: new keys are created with their TTL"
        );
        for key in [&minute, &hour] {
            await_ttl(&server, key, 3600)
                .await
                .unwrap_or_else(|ttl| panic!("{backend}: {key} has no TTL ({ttl})"));
        }

        usage(&store, &windows).await.expect("counted");
        wait_for(&server, &minute, "2");
        wait_for(&server, &hour, "2");
        assert_eq!(
            calls(&server, "expireat"),
            0,
            "{backend}: a key with its TTL gets INCRBY alone"
        );
        assert_eq!(calls(&server, "incrby"), 2, "{backend}");

        // Lost from Redis (an eviction, a failover): the next INCRBY creates it again.
        server.cli(&["DEL", &minute]);
        usage(&store, &windows).await.expect("counted");
        wait_for(&server, &minute, "1");
        wait_for(&server, &hour, "3");
        await_ttl(&server, &minute, 60)
            .await
            .unwrap_or_else(|ttl| panic!("{backend}: the key created again has no TTL ({ttl})"));
        assert_eq!(
            calls(&server, "expireat"),
            1,
            "{backend}: only the key created again"
        );
        assert_eq!(calls(&server, "incrby"), 4, "{backend}");
        let ttl: i64 = server.cli(&["TTL", &hour]).parse().expect("a ttl");
        assert!((1..=3600).contains(&ttl), "{backend}: hour ttl {ttl}");
    });
}

/// Runs `test` on each I/O backend with a store on each kind of connection (a worker's pipe,
/// the redis crate's shared one) that flushes only when the test calls `flush`; `case` names
/// the backend and the kind.
fn with_flushes_by_hand(
    test: impl AsyncFn(&Redis, Arc<Batched>, Arc<Target>, String) + Clone + Send + 'static,
) {
    let redis = Arc::new(Redis::start());
    on_each_backend(async move |backend| {
        for sharing in [RedisConnections::PerWorker, RedisConnections::Shared] {
            let (store, target) = store_with(redis.port(), None, 0, 3600.0, sharing);
            assert_eq!(target.pipes(), sharing == RedisConnections::PerWorker);
            test(&redis, store, target, format!("{backend}-{sharing:?}")).await;
        }
    });
}

/// A window Redis did not have at the read is created by one `SET ... EXAT ... NX`; when
/// another node created the key meanwhile, the delta is added to that node's count instead,
/// and the key keeps a TTL. Through a worker's pipe and through the redis crate.
#[test]
fn a_new_window_is_created_in_one_command_unless_another_node_created_it_first() {
    with_flushes_by_hand(async |server, store, _target, case| {
        let windows = windows(&format!("{case}-create"));
        let [minute, hour] = [&windows[0], &windows[1]].map(Window::key);
        assert_eq!(usage(&store, &windows).await.expect("read"), [0, 0]);
        assert_eq!(usage(&store, &windows).await.expect("counted"), [1, 1]);
        // Another node creates the hour's key after the read.
        server.cli(&["SET", &hour, "10", "EX", "100"]);
        server.cli(&["CONFIG", "RESETSTAT"]);
        store.inner.flush().await;
        assert_eq!(server.cli(&["GET", &minute]), "2", "{case}: created");
        assert_eq!(server.cli(&["GET", &hour]), "12", "{case}: added to");
        assert_eq!(
            (
                calls(server, "set"),
                calls(server, "incrby"),
                calls(server, "expireat")
            ),
            (2, 1, 1),
            "{case}: a SET each, then INCRBY and EXPIREAT for the key that was there"
        );
        let minute_ttl: i64 = server.cli(&["TTL", &minute]).parse().expect("a ttl");
        assert!(
            (1..=60).contains(&minute_ttl),
            "{case}: minute ttl {minute_ttl}"
        );
        let hour_ttl: i64 = server.cli(&["TTL", &hour]).parse().expect("a ttl");
        assert!(
            (1..=100).contains(&hour_ttl),
            "{case}: the other node's TTL stays"
        );
        assert_eq!(
            usage(&store, &windows).await.expect("counted"),
            [2, 12],
            "{case}: the other node's requests count"
        );
        server.cli(&["CONFIG", "RESETSTAT"]);
        store.inner.flush().await;
        assert_eq!(server.cli(&["GET", &hour]), "13", "{case}");
        assert_eq!(
            (calls(server, "incrby"), calls(server, "set")),
            (2, 0),
            "{case}: written keys get INCRBY alone"
        );
    });
}

/// A key a flush's `INCRBY` created again without a TTL (Redis lost it) gets its TTL even
/// when the same flush fails afterwards, on a key another node created and filled with
/// something that is no count: the failed flush must not leave a key that never expires.
#[test]
fn a_key_created_again_gets_its_ttl_even_when_the_rest_of_its_flush_fails() {
    with_flushes_by_hand(async |server, store, target, case| {
        let lost = windows(&format!("{case}-lost"));
        usage(&store, &lost).await.expect("read");
        store.inner.flush().await;
        usage(&store, &lost).await.expect("counted");
        server.cli(&["DEL", &lost[0].key()]);
        let raced = windows(&format!("{case}-raced"));
        usage(&store, &raced).await.expect("read");
        server.cli(&["SET", &raced[0].key(), "many"]);
        let failures = target.stats.total();
        store.inner.flush().await;
        assert!(
            target.stats.total() > failures,
            "{case}: INCRBY on a value that is no count fails the flush"
        );
        assert_eq!(server.cli(&["GET", &lost[0].key()]), "1", "{case}");
        let ttl: i64 = server.cli(&["TTL", &lost[0].key()]).parse().expect("a ttl");
        assert!(
            (1..=60).contains(&ttl),
            "{case}: the key created again expires ({ttl})"
        );
    });
}

#[test]
fn windows_that_ended_are_dropped_and_live_ones_stay() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _) = store(server.port(), None);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        let two_hours_ago = now.as_millis() as i64 - 7_200_000;
        let ended = windows_at(&format!("{backend}-ended"), two_hours_ago);
        let live = windows(&format!("{backend}-live"));
        // Whether the ended windows are still held right after this depends on the 50 ms
        // sweep, which may already have run: their count is what shows they were taken.
        assert_eq!(usage(&store, &ended).await.expect("read"), [0, 0]);
        usage(&store, &live).await.expect("read");
        let slots = |windows: &[Window]| -> Vec<bool> {
            windows
                .iter()
                .map(|w| store.inner.with_entry(w, |_, _, _| ()).is_some())
                .collect()
        };
        let started = Instant::now();
        while slots(&ended) != [false, false] {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{backend}: ended windows still held: {:?}",
                slots(&ended)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(slots(&live), [true, true], "{backend}: live windows stay");
        assert_eq!(
            usage(&store, &live).await.expect("counted"),
            [1, 1],
            "{backend}: and keep their counts"
        );
    });
}

/// While a flush waits on Redis, the counts it carries still count: a slow or paused Redis
/// used to hide them for the whole round trip, and let that many more requests through.
#[test]
fn counts_in_a_flush_still_count_until_redis_confirms_them() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _) = store(server.port(), None);
        let windows = windows(&format!("{backend}-inflight"));
        assert_eq!(usage(&store, &windows).await.expect("read"), [0, 0]);
        server.cli(&["CLIENT", "PAUSE", "700", "WRITE"]);
        for n in 1..=4 {
            assert_eq!(usage(&store, &windows).await.expect("counted"), [n, n]);
        }
        // Several 50 ms flushes start meanwhile and wait for the pause to end.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            usage(&store, &windows).await.expect("counted"),
            [5, 5],
            "{backend}: the five requests in flight still count"
        );
        wait_for(&server, &windows[0].key(), "6");
        assert_eq!(
            usage(&store, &windows).await.expect("counted"),
            [6, 6],
            "{backend}: and once Redis has them, they count once"
        );
    });
}

/// A generation of `held` entries for `window`.
fn generation_of(window: &Window, held: usize) -> Arc<Generation> {
    let generation = Generation::new(window, held);
    for slot in 0..held as u64 {
        generation
            .entries
            .get_or_insert_with(slot.wrapping_mul(0x9E37_79B9_7F4A_7C15), || super::Entry {
                window: Window {
                    identifier: format!("k{slot}").into(),
                    ..window.clone()
                },
                remote: 0.into(),
                inflight: 0.into(),
                delta: 0.into(),
                dirty: false.into(),
                ttl_set: false.into(),
                absent: false.into(),
            });
    }
    Arc::new(generation)
}

/// An ended generation is freed by the sweep (on the sync thread) once nothing else holds
/// it, and kept until then.
#[test]
fn ended_generations_are_freed_once_no_worker_holds_them() {
    // No Redis: nothing is counted, so nothing is flushed.
    let (store, _) = store(1, None);
    let window = &windows("free")[0];
    let held = generation_of(window, 20_000);
    let free = generation_of(window, 20_000);
    let mut ended = vec![held.clone(), free];
    store.inner.sweep(&mut ended);
    assert_eq!(ended.len(), 1, "the one no one else holds is freed");
    assert!(Arc::ptr_eq(&ended[0], &held), "the held one stays");
    assert_eq!(ended[0].entries.len(), 20_000);
    drop(held);
    store.inner.sweep(&mut ended);
    assert!(ended.is_empty(), "freed once let go");
}

/// The next generation of a length is sized as the last one that ended: a window's first
/// requests then insert without the map copying itself again and again.
#[test]
fn an_ended_generation_leaves_its_size_for_the_next() {
    let (store, _) = store(1, None);
    let two_hours_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 7_200_000;
    let minute = &windows_at("sizes", two_hours_ago)[0];
    let ended = generation_of(minute, 3_000);
    store.inner.generations.rcu(|all| {
        let mut all = Vec::clone(all);
        all.push(ended.clone());
        all
    });
    let mut taken = Vec::new();
    store.inner.sweep(&mut taken);
    assert_eq!(
        store.inner.ended_sizes.pin().get(&minute.seconds).copied(),
        Some(3_000)
    );
    assert!(
        store.inner.generations.load().is_empty(),
        "taken out of use"
    );
}

/// Workers of one node that read the same new windows at once (each its own `MGET`, the
/// replies landing in any order, the first to land making the node's entry) count every
/// request exactly once: between them the requests see every count from 0 up, and once
/// flushed Redis holds one per request.
#[test]
fn workers_reading_a_new_window_at_once_count_each_request_once() {
    const WORKERS: usize = 4;
    const ROUNDS: usize = 20;
    let redis = Redis::start();
    let (store, _target) = store_with(redis.port(), None, 0, 3600.0, RedisConnections::PerWorker);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let rounds: Vec<Vec<Window>> = (0..ROUNDS)
        .map(|round| windows_at(&format!("race-{round}"), now.as_millis() as i64))
        .collect();
    let start = Arc::new(std::sync::Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (store, rounds, start) = (store.clone(), rounds.clone(), start.clone());
            std::thread::spawn(move || {
                Epoll::block_on(async move {
                    crate::pipe::install::<Epoll>();
                    let mut seen = Vec::new();
                    for windows in &rounds {
                        start.wait();
                        seen.push(usage(&store, windows).await.expect("counted"));
                    }
                    seen
                })
            })
        })
        .collect();
    let seen: Vec<Vec<Vec<u64>>> = workers
        .into_iter()
        .map(|w| w.join().expect("a worker"))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&runtime, async {
        crate::pipe::install::<Epoll>();
        store.inner.flush().await;
    });
    for (round, windows) in rounds.iter().enumerate() {
        for (i, window) in windows.iter().enumerate() {
            let mut befores: Vec<u64> = seen.iter().map(|worker| worker[round][i]).collect();
            befores.sort_unstable();
            assert_eq!(
                befores,
                (0..WORKERS as u64).collect::<Vec<_>>(),
                "round {round}, {}: each request saw the ones before it",
                window.period
            );
            assert_eq!(
                redis.cli(&["GET", &window.key()]),
                WORKERS.to_string(),
                "round {round}, {}: Redis counted each request once",
                window.period
            );
        }
    }
}

/// A window whose key Redis refuses to count (another tool wrote something else there)
/// fails its flush and keeps its delta, while the windows flushed with it are counted and
/// not sent again: resending them with it would add their deltas at every flush. With
/// `INCRBY` through a worker's pipe and through the redis crate.
#[test]
fn a_window_redis_refuses_does_not_send_the_rest_of_its_flush_again() {
    with_flushes_by_hand(flush_past_a_refused_window);
}

/// [`a_window_redis_refuses_does_not_send_the_rest_of_its_flush_again`] with Kong's script
/// (a user that may not run `INFO`, so the server's version is unknown), on a worker's pipe.
#[test]
fn a_window_redis_refuses_with_kong_s_script_does_not_resend_the_rest() {
    let redis = Arc::new(Redis::start());
    redis.cli(&[
        "ACL", "SETUSER", "counter", "on", ">s3cret", "~*", "+@all", "-info",
    ]);
    on_each_backend(async move |backend| {
        let login = Some(("counter", "s3cret"));
        let (store, target) =
            store_with(redis.port(), login, 0, 3600.0, RedisConnections::PerWorker);
        flush_past_a_refused_window(&redis, store, target, format!("{backend}-script")).await;
        assert!(
            calls(&redis, "evalsha") > 0,
            "{backend}: counted by the script"
        );
    });
}

async fn flush_past_a_refused_window(
    server: &Redis,
    store: Arc<Batched>,
    target: Arc<Target>,
    case: String,
) {
    let poisoned = windows(&format!("{case}-poisoned"));
    let healthy = windows(&format!("{case}-healthy"));
    for windows in [&poisoned, &healthy] {
        usage(&store, windows).await.expect("read");
    }
    // Created by this flush: the next sends `INCRBY` alone.
    store.inner.flush().await;
    server.cli(&["SET", &poisoned[0].key(), "many"]);
    for windows in [&poisoned, &healthy] {
        usage(&store, windows).await.expect("counted");
    }
    for flush in 1..=3 {
        let failures = target.stats.total();
        store.inner.flush().await;
        assert!(
            target.stats.total() > failures,
            "{case}: flush {flush} fails on the key that holds no count"
        );
        assert_eq!(server.cli(&["GET", &poisoned[0].key()]), "many", "{case}");
        assert_eq!(
            server.cli(&["GET", &poisoned[1].key()]),
            "2",
            "{case}: flush {flush}: the poisoned window's other period counted once"
        );
        for window in &healthy {
            assert_eq!(
                server.cli(&["GET", &window.key()]),
                "2",
                "{case}: flush {flush}: {} counted once",
                window.period
            );
        }
    }
}
