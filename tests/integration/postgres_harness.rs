//! The Postgres test harness itself: a real server started from the Debian binaries, that
//! keeps committed rows across a SIGKILL and restart (crash recovery), and instances that are
//! independent of each other.

use std::net::SocketAddr;
use std::time::Instant;

use crate::harness::postgres::Postgres;
use crate::harness::try_connect;

#[test]
fn postgres_keeps_committed_rows_across_a_crash_and_restart() {
    let t = Instant::now();
    let mut pg = Postgres::start();
    eprintln!("postgres start: {:?}", t.elapsed());
    assert_eq!(pg.psql("select 1"), "1");
    assert_eq!(pg.psql("select current_user"), "kong");
    pg.psql("create table t (id int primary key, name text)");
    pg.psql("insert into t values (1, 'one')");

    // A client still connected at the crash: its backend outlives the postmaster for a
    // moment, holding the old shared memory, which restart() must wait out.
    let addr = SocketAddr::from(([127, 0, 0, 1], pg.port()));
    let _client = try_connect(addr).expect("connect to postgres");
    pg.kill();
    assert!(
        try_connect(addr).is_err(),
        "port {} still accepts connections after kill()",
        pg.port()
    );

    let t = Instant::now();
    pg.restart();
    eprintln!("postgres restart after kill: {:?}", t.elapsed());
    assert_eq!(pg.psql("select name from t where id = 1"), "one");
    assert!(pg.log().contains("not properly shut down"), "{}", pg.log());

    pg.stop();
    assert!(
        try_connect(addr).is_err(),
        "port {} open after stop()",
        pg.port()
    );
}

#[test]
fn two_postgres_instances_have_their_own_ports_and_data() {
    let a = Postgres::start();
    let b = Postgres::start();
    assert_ne!(a.port(), b.port());
    a.psql("create table only_in_a (x int)");
    assert_eq!(
        b.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
        "0"
    );
    assert_eq!(
        a.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
        "1"
    );
    let env = a.gangway_env();
    assert!(env.contains(&("GANGWAY_PG_PORT".to_string(), a.port().to_string())));
    assert!(env.contains(&("GANGWAY_DATABASE".to_string(), "postgres".to_string())));
}
