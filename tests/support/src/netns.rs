//! Test hosts in network namespaces: each [`Peer`] is a namespace of its own joined to the
//! host by a veth pair, with an IPv4 and an IPv6 address on each end. gangway runs on the
//! host side; a test connects from the peer side ([`Peer::connect`]), so its packets arrive
//! on the host-side veth, where the XDP guard sits. Everything is removed on drop (deleting
//! the namespace deletes its veth pair).
//!
//! Needs root and `ip` (iproute2); a test without them fails and says so.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Fails the test unless it runs as root (eBPF and namespaces need it).
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run the suite as root, as bash .ci/run does"
    );
}

/// A namespace joined to the host by a veth pair.
pub struct Peer {
    /// The namespace's name (under /var/run/netns).
    pub ns: String,
    /// The host-side interface.
    pub host_if: String,
    /// The host side's IPv4 address (gangway listens here or on a wildcard).
    pub host_v4: Ipv4Addr,
    /// The peer's IPv4 address (the source gangway sees).
    pub peer_v4: Ipv4Addr,
    /// The host side's IPv6 address.
    pub host_v6: Ipv6Addr,
    /// The peer's IPv6 address.
    pub peer_v6: Ipv6Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` runs: install the Debian package iproute2 (bash .ci/run does)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Peer {
    /// Creates a namespace and its veth pair, both ends up with their addresses.
    pub fn create() -> Peer {
        require_root("a network-namespace test");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 10_000;
        // Interface names are at most 15 bytes.
        let host_if = format!("gw{pid}h{n}");
        let peer_if = format!("gw{pid}p{n}");
        let ns = format!("gwtest-{pid}-{n}");
        // A /30 per peer, in a block chosen by the process so that a leftover of an earlier
        // run does not collide.
        let (b, c) = (100 + (pid % 100) as u8, (n * 4) as u8);
        let host_v4 = Ipv4Addr::new(10, b, c, 1);
        let peer_v4 = Ipv4Addr::new(10, b, c, 2);
        let host_v6: Ipv6Addr = format!("fd77:{b:x}:{n:x}::1").parse().expect("v6");
        let peer_v6: Ipv6Addr = format!("fd77:{b:x}:{n:x}::2").parse().expect("v6");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        let peer = Peer {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_v4,
            peer_v4,
            host_v6,
            peer_v6,
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("{host_v4}/30"), "dev", &host_if]);
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{host_v6}/64"),
            "dev",
            &host_if,
            "nodad",
        ]);
        ip(&["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        in_ns(&["addr", "add", &format!("{peer_v4}/30"), "dev", &peer_if]);
        in_ns(&[
            "-6",
            "addr",
            "add",
            &format!("{peer_v6}/64"),
            "dev",
            &peer_if,
            "nodad",
        ]);
        in_ns(&["link", "set", &peer_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        peer
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens belong to it).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = self.ns.clone();
        std::thread::spawn(move || {
            enter(&ns);
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// Connects from the namespace to `addr`, waiting up to `timeout`: a guard that drops
    /// the SYN makes this time out.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
        self.run(move || TcpStream::connect_timeout(&addr, timeout))
    }

    /// The host side's address of `family` (4 or 6).
    pub fn host(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.host_v6)
        } else {
            IpAddr::V4(self.host_v4)
        }
    }
}

/// Moves the calling thread into network namespace `ns` (a thread of its own: it stays
/// there until it ends).
pub fn enter(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on this thread only, with a namespace fd we hold open.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
