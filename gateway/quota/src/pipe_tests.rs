//! Realtime counting on a worker's pipe, against a real redis-server, on both I/O backends.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gangway_config::settings::RedisConnections;
use gangway_net::Backend;
use gangway_net::epoll::Epoll;
use gangway_net::tls::RootSource;
use gangway_net::uring::Uring;
use gangway_pipeline::quota::{QuotaError, QuotaStore, RedisConf, Usage, UsageResult, Window};
use gangway_test_support::redis::Redis;

use super::install;
use crate::connect::Target;
use crate::realtime::Realtime;
use crate::stats::Stats;

/// A realtime store on the Redis at `port` with `timeout_ms`, and optionally a user and a
/// password.
fn store(port: u16, timeout_ms: u64, login: Option<(&str, &str)>) -> (Realtime, Arc<Target>) {
    store_sharing(port, timeout_ms, login, RedisConnections::PerWorker)
}

/// [`store`] with connections as `sharing` says.
fn store_sharing(
    port: u16,
    timeout_ms: u64,
    login: Option<(&str, &str)>,
    sharing: RedisConnections,
) -> (Realtime, Arc<Target>) {
    let mut conf = serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "timeout": timeout_ms,
    });
    if let Some((user, password)) = login {
        conf["username"] = user.into();
        conf["password"] = password.into();
    }
    let conf: RedisConf = serde_json::from_value(conf).expect("a redis record");
    let roots = RootSource::trusted(false, &[]).expect("an empty trust store");
    let stats = Arc::new(Stats::default());
    let target =
        Arc::new(Target::new(&conf, None, &roots, stats.clone(), sharing).expect("target"));
    (Realtime::new(target.clone()), target)
}

fn windows(identifier: &str) -> Vec<Window> {
    windows_at(identifier, 1_796_292_912_345)
}

/// The minute and hour windows of `identifier` at `now_ms`.
pub(crate) fn windows_at(identifier: &str, now_ms: i64) -> Vec<Window> {
    [("minute", 60_i64), ("hour", 3600)]
        .into_iter()
        .map(|(period, seconds)| Window {
            scope: "ratelimit:r:s:".into(),
            identifier: identifier.into(),
            period,
            start_ms: now_ms - now_ms.rem_euclid(seconds * 1000),
            seconds: seconds as u64,
        })
        .collect()
}

async fn usage(store: &Realtime, windows: &[Window]) -> UsageResult {
    match store.usage(windows) {
        Usage::Ready(usage) => usage,
        Usage::Pending(pending) => pending.await,
    }
}

/// How many times Redis ran `command` since its stats were last reset.
pub(crate) fn calls(redis: &Redis, command: &str) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a call count"))
}

/// Waits up to 2 s for `key` to have a TTL of 1 to `max` seconds; the TTL Redis last gave
/// otherwise.
pub(crate) async fn await_ttl(redis: &Redis, key: &str, max: i64) -> Result<(), i64> {
    let started = Instant::now();
    loop {
        let ttl: i64 = redis.cli(&["TTL", key]).parse().expect("a ttl");
        if (1..=max).contains(&ttl) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(2) {
            return Err(ttl);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A number from Redis's `INFO stats`.
fn stat(redis: &Redis, name: &str) -> u64 {
    let stats = redis.cli(&["INFO", "stats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO stats"))
}

/// Runs `test` on a worker-like thread of each backend, with pipes installed.
pub(crate) fn on_each_backend(test: impl AsyncFn(&'static str) + Clone + Send + 'static) {
    let uring = test.clone();
    std::thread::spawn(move || {
        Uring::block_on(async move {
            install::<Uring>();
            uring("io_uring").await
        })
    })
    .join()
    .expect("io_uring run");
    std::thread::spawn(move || {
        Epoll::block_on(async move {
            install::<Epoll>();
            test("epoll").await
        })
    })
    .join()
    .expect("epoll run");
}

#[test]
fn counts_in_kong_s_keys_with_a_ttl_and_answers_concurrent_calls_in_order() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, target) = store(server.port(), 2000, None);
        assert!(
            target.pipes(),
            "{backend}: a worker thread counts on a pipe"
        );
        let id = format!("{backend}-user");
        let counted = usage(&store, &windows(&id)).await.expect("counted");
        assert_eq!(counted, vec![0, 0], "{backend}: a fresh window");
        let key = format!("ratelimit:r:s:{id}:1796292900000:minute");
        assert_eq!(server.cli(&["GET", &key]), "1", "{backend}: Kong's key");
        let ttl: u64 = server.cli(&["TTL", &key]).parse().expect("a ttl");
        assert!((1..=60).contains(&ttl), "{backend}: ttl {ttl}");
        // Calls made together share the connection and each gets its own reply.
        let (a, b) = (windows(&format!("{id}-a")), windows(&format!("{id}-b")));
        let calls: Vec<_> = (0..100)
            .map(|i| match store.usage(if i % 2 == 0 { &a } else { &b }) {
                Usage::Pending(pending) => tokio::task::spawn_local(pending),
                Usage::Ready(_) => panic!("{backend}: realtime counting waits for Redis"),
            })
            .collect();
        let mut seen = (Vec::new(), Vec::new());
        for (i, call) in calls.into_iter().enumerate() {
            let counts = call.await.expect("joined").expect("counted");
            assert_eq!(
                counts[0], counts[1],
                "{backend}: both windows counted together"
            );
            if i % 2 == 0 { &mut seen.0 } else { &mut seen.1 }.push(counts[0]);
        }
        assert_eq!(seen.0, (0..50).collect::<Vec<u64>>(), "{backend}: in order");
        assert_eq!(seen.1, (0..50).collect::<Vec<u64>>(), "{backend}: in order");
    });
}

#[test]
fn a_user_without_info_counts_with_kong_s_script_even_after_a_script_flush() {
    let redis = Arc::new(Redis::start());
    redis.cli(&[
        "ACL", "SETUSER", "counter", "on", ">s3cret", "~*", "+@all", "-info",
    ]);
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _) = store(server.port(), 2000, Some(("counter", "s3cret")));
        let id = format!("{backend}-scripted");
        assert_eq!(usage(&store, &windows(&id)).await.expect("counted"), [0, 0]);
        server.cli(&["SCRIPT", "FLUSH"]);
        assert_eq!(usage(&store, &windows(&id)).await.expect("counted"), [1, 1]);
        let key = format!("ratelimit:r:s:{id}:1796292000000:hour");
        assert_eq!(server.cli(&["GET", &key]), "2", "{backend}");
        let ttl: u64 = server.cli(&["TTL", &key]).parse().expect("a ttl");
        assert!((1..=3600).contains(&ttl), "{backend}: ttl {ttl}");
        let stats = server.cli(&["INFO", "commandstats"]);
        assert!(
            stats.contains("cmdstat_evalsha:") && stats.contains("cmdstat_eval:"),
            "{backend}: counted by the script, sent whole after the flush: {stats}"
        );
        let (wrong, _) = store_with_wrong_password(&server);
        match usage(&wrong, &windows(&id)).await {
            Err(QuotaError::Store(e)) => assert!(e.contains("WRONGPASS"), "{backend}: {e}"),
            other => panic!("{backend}: a wrong password is refused: {other:?}"),
        }
    });
}

fn store_with_wrong_password(redis: &Redis) -> (Realtime, Arc<Target>) {
    store(redis.port(), 2000, Some(("counter", "wrong")))
}

#[test]
fn a_paused_redis_times_calls_out_and_counting_resumes_after() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _) = store(server.port(), 300, None);
        let id = format!("{backend}-paused");
        assert_eq!(usage(&store, &windows(&id)).await.expect("counted"), [0, 0]);
        // Shorter than two timeouts: the late reply comes on the same connection, and the
        // call after it must not take it for its own.
        server.cli(&["CLIENT", "PAUSE", "450", "WRITE"]);
        let started = Instant::now();
        let timed_out = usage(&store, &windows(&id)).await;
        let waited = started.elapsed();
        assert!(
            matches!(timed_out, Err(QuotaError::Timeout(300))),
            "{backend}: {timed_out:?}"
        );
        assert!(
            waited >= Duration::from_millis(290) && waited < Duration::from_millis(440),
            "{backend}: bounded by the timeout: {waited:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = usage(&store, &windows(&id)).await.expect("counted after");
        assert_eq!(
            after,
            [2, 2],
            "{backend}: the timed-out call was counted late"
        );
        // Longer: the connection is given up and the next call opens another.
        server.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
        let timed_out = usage(&store, &windows(&id)).await;
        assert!(
            matches!(timed_out, Err(QuotaError::Timeout(300))),
            "{backend}: {timed_out:?}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let resumed = usage(&store, &windows(&id))
            .await
            .expect("counting resumed");
        assert_eq!(resumed[0], resumed[1], "{backend}");
        assert!(resumed[0] >= 3, "{backend}: {resumed:?}");
    });
}

#[test]
fn a_killed_redis_fails_calls_at_once_and_a_restarted_one_counts_again() {
    let mut redis = Redis::start();
    let port = redis.port();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let (restarted_tx, restarted_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (failed_tx, failed_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        Uring::block_on(async move {
            install::<Uring>();
            let (store, target) = store(port, 2000, None);
            let stats = target.stats.clone();
            assert_eq!(usage(&store, &windows("k")).await.expect("counted"), [0, 0]);
            ready_tx.send(()).expect("send");
            killed_rx.recv().expect("killed");
            let started = Instant::now();
            let failed = usage(&store, &windows("k")).await;
            assert!(matches!(failed, Err(QuotaError::Store(_))), "{failed:?}");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "a dead connection fails at once, not after the timeout"
            );
            assert!(stats.total() >= 1, "the failure is counted");
            failed_tx.send(()).expect("send");
            restarted_rx.recv().expect("restarted");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match usage(&store, &windows("k")).await {
                    Ok(counts) => {
                        assert_eq!(counts, [0, 0], "a fresh server counts from zero");
                        break;
                    }
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("counting did not resume: {e}"),
                }
            }
        })
    });
    ready_rx.recv().expect("first count");
    redis.kill();
    killed_tx.send(()).expect("send");
    failed_rx.recv().expect("failed");
    redis.restart();
    restarted_tx.send(()).expect("send");
    worker.join().expect("worker");
}

#[test]
fn a_server_demoted_to_a_replica_is_left_for_a_new_connection() {
    let master = Redis::start();
    let server = Arc::new(Redis::start());
    let master_port = master.port().to_string();
    let demoted = server.clone();
    on_each_backend(async move |backend| {
        let (store, target) = store(demoted.port(), 2000, None);
        let id = format!("{backend}-failover");
        assert_eq!(usage(&store, &windows(&id)).await.expect("counted"), [0, 0]);
        let first = target.live_pipe().expect("connected");
        demoted.cli(&["REPLICAOF", "127.0.0.1", &master_port]);
        match usage(&store, &windows(&id)).await {
            Err(QuotaError::Store(e)) => assert!(e.contains("READONLY"), "{backend}: {e}"),
            other => panic!("{backend}: a replica refuses the count: {other:?}"),
        }
        assert!(first.is_closed(), "{backend}: the connection is given up");
        demoted.cli(&["REPLICAOF", "NO", "ONE"]);
        let counted = usage(&store, &windows(&id)).await;
        assert!(counted.is_ok(), "{backend}: counting resumed: {counted:?}");
        let second = target.live_pipe().expect("connected again");
        assert!(
            !Rc::ptr_eq(&first, &second),
            "{backend}: on a new connection"
        );
    });
    drop(master);
}

#[test]
fn a_key_s_expire_goes_until_the_worker_has_seen_it_counted_and_again_when_redis_loses_it() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _target) = store(server.port(), 2000, None);
        let windows = windows(&format!("{backend}-known"));
        let [minute, hour] = [&windows[0], &windows[1]].map(Window::key);
        server.cli(&["CONFIG", "RESETSTAT"]);
        assert_eq!(usage(&store, &windows).await.expect("counted"), [0, 0]);
        assert_eq!(
            calls(&server, "expire"),
            2,
            "{backend}: new keys get their TTL"
        );
        assert_eq!(usage(&store, &windows).await.expect("counted"), [1, 1]);
        assert_eq!(
            calls(&server, "expire"),
            2,
            "{backend}: a key seen counted gets INCR alone"
        );
        assert_eq!(calls(&server, "incr"), 4, "{backend}");

        // Lost from Redis (an eviction, a failover): the next INCR creates it again.
        server.cli(&["DEL", &minute]);
        assert_eq!(usage(&store, &windows).await.expect("counted"), [0, 2]);
        await_ttl(&server, &minute, 60)
            .await
            .unwrap_or_else(|ttl| panic!("{backend}: the key created again has no TTL ({ttl})"));
        assert_eq!(
            calls(&server, "expire"),
            3,
            "{backend}: only the key created again"
        );
        let ttl: i64 = server.cli(&["TTL", &hour]).parse().expect("a ttl");
        assert!((1..=3600).contains(&ttl), "{backend}: hour ttl {ttl}");
    });
}

/// A known key goes without EXPIRE; when Redis had lost it and the count's reply never
/// reaches the request (it went away first), the key still gets its TTL: nothing else would
/// ever set it.
#[test]
fn a_known_key_gets_its_ttl_when_the_count_s_reply_is_lost() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _target) = store(server.port(), 2000, None);
        let windows = windows(&format!("{backend}-abandoned"));
        let minute = windows[0].key();
        usage(&store, &windows).await.expect("counted");
        server.cli(&["DEL", &minute]);
        server.cli(&["CLIENT", "PAUSE", "300", "WRITE"]);
        match store.usage(&windows) {
            // The client goes away while its INCR waits on the paused server.
            Usage::Pending(counting) => drop(counting),
            Usage::Ready(_) => panic!("{backend}: a realtime count waits for Redis"),
        }
        await_ttl(&server, &minute, 60)
            .await
            .unwrap_or_else(|ttl| panic!("{backend}: the key created again has no TTL ({ttl})"));
        // And the worker sends EXPIRE with it again until it sees it counted.
        server.cli(&["CONFIG", "RESETSTAT"]);
        usage(&store, &windows).await.expect("counted");
        assert_eq!(
            calls(&server, "expire"),
            2,
            "{backend}: both keys of the lost count were forgotten"
        );
    });
}

/// A server that takes the connection and answers with an error (at maxclients) fails the
/// connect, which then waits a second: it used to be taken for an older server, and the
/// pipe that closed at once was opened again by every request.
#[test]
fn a_server_refusing_clients_is_not_reconnected_per_request() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, _target) = store(server.port(), 2000, None);
        let windows = windows(&format!("{backend}-maxclients"));
        let rejected = || stat(&server, "rejected_connections");
        let before = rejected();
        server.cli(&["CONFIG", "SET", "maxclients", "1"]);
        let holder = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        for _ in 0..20 {
            let counted = usage(&store, &windows).await;
            assert!(counted.is_err(), "{backend}: {counted:?}");
        }
        drop(holder);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let attempts = rejected() - before;
        server.cli(&["CONFIG", "SET", "maxclients", "10000"]);
        assert_eq!(attempts, 1, "{backend}: one connect, then a second's wait");
    });
}

/// A server that takes the connection and never answers: the connect that timed out is
/// recorded like a failed one, so the next requests fail at once for a second instead of
/// each waiting the whole timeout.
#[test]
fn a_connect_that_times_out_makes_the_next_requests_fail_fast() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    on_each_backend(async move |backend| {
        let (store, _target) = store(port, 200, None);
        let windows = windows(&format!("{backend}-silent"));
        let started = Instant::now();
        let first = usage(&store, &windows).await;
        assert!(
            matches!(first, Err(QuotaError::Timeout(200))),
            "{backend}: {first:?}"
        );
        let waited = started.elapsed();
        for _ in 0..4 {
            let next = usage(&store, &windows).await;
            assert!(next.is_err(), "{backend}: {next:?}");
        }
        let rest = started.elapsed() - waited;
        assert!(
            rest < Duration::from_millis(100),
            "{backend}: four more requests took {rest:?}, not failing fast"
        );
    });
    drop(silent);
}

/// A connection of the redis crate (shared by the workers) that timed out is dropped and
/// the next call opens another, as Kong closes a socket that timed out: a server gone
/// without a reset would otherwise hold it until TCP gives up.
#[test]
fn a_shared_connection_that_timed_out_is_replaced() {
    let redis = Arc::new(Redis::start());
    let server = redis.clone();
    on_each_backend(async move |backend| {
        let (store, target) = store_sharing(server.port(), 150, None, RedisConnections::Shared);
        assert!(!target.pipes(), "{backend}: the crate's connection");
        let windows = windows(&format!("{backend}-shared-timeout"));
        usage(&store, &windows).await.expect("counted");
        server.cli(&["CLIENT", "PAUSE", "400", "ALL"]);
        let paused = usage(&store, &windows).await;
        assert!(
            matches!(paused, Err(QuotaError::Timeout(150))),
            "{backend}: {paused:?}"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        let received = || stat(&server, "total_connections_received");
        let before = received();
        usage(&store, &windows)
            .await
            .expect("counted after the pause");
        let opened = received() - before - 1;
        assert_eq!(opened, 1, "{backend}: a new connection after the timeout");
    });
}

/// A write to a replica fails with READONLY; on Redis 6 a script wraps it in its own error,
/// which must make the pipe reconnect all the same.
#[test]
fn a_demotion_is_recognised_bare_and_inside_a_script_error() {
    use super::says_demoted;
    assert!(says_demoted(
        "READONLY You can't write against a read only replica."
    ));
    assert!(says_demoted(
        "ERR Error running script (call to f_0b1c): @user_script:3: @user_script: 3: -READONLY You can't write against a read only replica."
    ));
    assert!(!says_demoted("ERR unknown command 'READONLY'"));
    assert!(!says_demoted(
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    ));
}
