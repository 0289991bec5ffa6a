//! What gangway's integration tests and benches share: real servers started from the Debian
//! binaries on free ports ([`postgres`], [`redis`]), test hosts in network namespaces
//! ([`netns`]), free ports, and scratch directories.
//!
//! Everything here panics with a message that says what is missing or what failed: a test or
//! bench that cannot start its Postgres has nothing to measure.

pub mod alloc;
pub mod http1;
pub mod netns;
pub mod otlp;
pub mod postgres;
pub mod redis;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A port that was free a moment ago, never handed out twice in this process.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`): a port the
/// kernel picked for `bind(0)` goes back into the pool it also draws client ports from, and a
/// test's outgoing connection once took a gangway's port between the check and its bind
/// ("Address already in use"). Each process starts at an offset of its own, so test binaries
/// run side by side walk different stretches.
pub fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let (low, high) = fixed_port_range();
    let span = high - low;
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    let mut port = next.unwrap_or(low + (std::process::id() % u32::from(span)) as u16);
    for _ in 0..span {
        let candidate = port;
        port = if port + 1 >= high { low } else { port + 1 };
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free port in 127.0.0.1:{low}..{high}");
}

/// The ports below the ephemeral range, from 10000 up: [low, high).
fn fixed_port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        ephemeral_low > 11_000,
        "net.ipv4.ip_local_port_range starts at {ephemeral_low}: the tests need ports \
         10000..{ephemeral_low} outside it, so raise its lower bound above 11000"
    );
    (10_000, ephemeral_low)
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("gangway-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
