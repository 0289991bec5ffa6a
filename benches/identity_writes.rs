//! What one Admin-API-style write to consumers and keys costs next to a full rebuild, at 1k
//! and 1M consumers (each with one key-auth credential). Run with `cargo xtask bench
//! identity`; prints a Markdown table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gangway_config::model::{Consumer, ForeignKey, KeyauthCredential};
use gangway_pipeline::identity::{Identities, KeyLookup};
use uuid::Uuid;

fn consumer(i: u128) -> Consumer {
    Consumer {
        id: Uuid::from_u128(i),
        username: Some(format!("user-{i}").into()),
        custom_id: None,
        tags: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn credential(i: u128, owner: u128) -> KeyauthCredential {
    KeyauthCredential {
        id: Uuid::from_u128((1 << 64) + i),
        consumer: ForeignKey::from(Uuid::from_u128(owner)),
        key: format!("key-{i:032x}").into(),
        expires_at: None,
        tags: None,
        created_at: 0,
    }
}

fn per_op(total: Duration, ops: u32) -> String {
    let ns = total.as_nanos() as f64 / f64::from(ops);
    if ns >= 1_000_000.0 {
        format!("{:.1} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.1} us", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn measure(n: u128) {
    let started = Instant::now();
    let ids = Identities::build(
        (0..n).map(consumer).collect(),
        (0..n).map(|i| credential(i, i)).collect(),
        Vec::new(),
    );
    let build = started.elapsed();

    const LOOKUPS: u32 = 200_000;
    let started = Instant::now();
    for i in 0..LOOKUPS {
        let key = format!("key-{:032x}", u128::from(i) * 7919 % n);
        assert!(matches!(
            black_box(&ids).find_key(key.as_bytes(), 0),
            KeyLookup::Found(..)
        ));
    }
    let lookup = started.elapsed();

    // 1000 successive writes, each publishing a new index (as an Admin API call would).
    const WRITES: u32 = 1000;
    let started = Instant::now();
    let mut written = ids.clone();
    for i in 0..WRITES {
        let i = u128::from(i);
        written = written
            .with_credential(credential(n + i, i % n))
            .expect("new key");
    }
    let writes = started.elapsed();
    let started = Instant::now();
    let one_more = written
        .with_credential(credential(n + 5000, 0))
        .expect("new key");
    let write_after_1000 = started.elapsed();
    assert!(matches!(
        one_more.find_key(format!("key-{:032x}", n + 5000).as_bytes(), 0),
        KeyLookup::Found(..)
    ));

    let started = Instant::now();
    for i in 0..LOOKUPS {
        let key = format!("key-{:032x}", n + u128::from(i % WRITES));
        assert!(matches!(
            black_box(&written).find_key(key.as_bytes(), 0),
            KeyLookup::Found(..)
        ));
    }
    let lookup_written = started.elapsed();

    let started = Instant::now();
    let removed = written
        .without_credential(Uuid::from_u128((1 << 64) + n / 2))
        .expect("exists");
    let remove = started.elapsed();
    black_box(removed);

    let started = Instant::now();
    let compact = written.compact();
    let compact_time = started.elapsed();
    black_box(compact);

    println!(
        "| {n} | {} | {} | {} | {} | {} | {} | {} |",
        per_op(build, 1),
        per_op(lookup, LOOKUPS),
        per_op(writes, WRITES),
        per_op(write_after_1000, 1),
        per_op(lookup_written, LOOKUPS),
        per_op(remove, 1),
        per_op(compact_time, 1),
    );
}

fn main() {
    println!(
        "| consumers | full build | key lookup | write (avg of 1000) | write after 1000 | lookup of a written key | remove one key | compact |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in [1_000, 1_000_000] {
        measure(n);
    }
}
