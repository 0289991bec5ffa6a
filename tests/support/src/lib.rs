//! What gangway's integration tests and benches share: real servers started from the Debian
//! binaries on free ports ([`postgres`], [`redis`]), test hosts in network namespaces
//! ([`netns`]), free ports, and scratch directories.
//!
//! Everything here panics with a message that says what is missing or what failed: a test or
//! bench that cannot start its Postgres has nothing to measure.

pub mod http1;
pub mod netns;
pub mod otlp;
pub mod postgres;
pub mod redis;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A port that was free a moment ago (bound to port 0, then released), never handed out twice
/// in this process: the kernel may offer a just-released port again, and two gangways given
/// the same status port once made a test talk to the wrong instance.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0");
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
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
