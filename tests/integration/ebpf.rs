//! The connection policy (a global ip-restriction, `admin_allow_cidrs`,
//! `cluster_allow_cidrs`, `max_connections_per_ip`) enforced in the kernel by the XDP guard,
//! and the same policy at accept with eBPF off. Clients are network namespaces joined by veth
//! pairs that each test creates ([`Peer`]); gangway listens on the host side. Runs as root
//! (CI does).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::gangway_command;
use crate::harness::netns::Peer;
use crate::harness::postgres::{Postgres, PostgresExt};
use crate::harness::{Gangway, Options, Upstream, free_port, request};

/// What a client got from one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The SYN went unanswered: dropped in the kernel.
    TimedOut,
    /// Connected, then closed without an answer: refused at accept.
    Closed,
    /// An HTTP answer with this status.
    Served(u16),
}

fn attempt(peer: &Peer, addr: SocketAddr) -> Outcome {
    peer.run(move || {
        let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Outcome::TimedOut,
            Err(e) => {
                eprintln!("connect {addr}: {e}");
                return Outcome::Closed;
            }
        };
        get_on(&mut stream)
    })
}

fn get_on(stream: &mut TcpStream) -> Outcome {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: guarded\r\n\r\n")
        .is_err()
    {
        return Outcome::Closed;
    }
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(n) if n >= 12 => {
            let text = String::from_utf8_lossy(&buf[..n]);
            let status = text[9..12].parse().unwrap_or(0);
            Outcome::Served(status)
        }
        _ => Outcome::Closed,
    }
}

/// What a refused client sees: its SYN dropped with eBPF, its connection closed without.
fn refused(kernel: bool) -> Outcome {
    if kernel {
        Outcome::TimedOut
    } else {
        Outcome::Closed
    }
}

fn upstream_config(up: &Upstream, deny: &[String]) -> String {
    let plugins = if deny.is_empty() {
        String::new()
    } else {
        format!(
            "plugins:\n  - name: ip-restriction\n    config:\n      deny: [{}]\n",
            deny.iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{}\n    routes:\n      - paths: [\"/\"]\n{plugins}",
        up.addr
    )
}

/// Listeners on `port` for IPv4 and IPv6 (an IPv6 listener is IPv6-only, as nginx's).
fn both_families(port: u16) -> String {
    format!("0.0.0.0:{port}, [::]:{port}")
}

/// gangway on every address's `port` with eBPF `required` (kernel) or `off`, guarding `peers`' veths.
fn guarded(config: &str, peers: &[&Peer], kernel: bool, opts: Options) -> (Gangway, u16) {
    let port = free_port();
    let interfaces: Vec<&str> = peers.iter().map(|p| p.host_if.as_str()).collect();
    let opts = Options {
        config: config.to_owned(),
        ..opts
    }
    .env("GANGWAY_PROXY_LISTEN", both_families(port))
    .env("GANGWAY_EBPF", if kernel { "required" } else { "off" })
    .env("GANGWAY_EBPF_INTERFACES", interfaces.join(","))
    .env("GANGWAY_EBPF_XDP_MODE", "auto");
    (Gangway::start_with(opts), port)
}

fn status(gw: &Gangway) -> serde_json::Value {
    request(gw.status, "GET", "/status", &[], b"")
        .expect("status")
        .json()
}

fn addr(peer: &Peer, v6: bool, port: u16) -> SocketAddr {
    SocketAddr::new(peer.host(v6), port)
}

fn a_deny_list_drops_a_source_and_serves_the_others(kernel: bool) {
    let (denied, allowed) = (Peer::create(), Peer::create());
    let up = Upstream::start();
    let deny = [
        denied.peer_v4.to_string(),
        format!("{}/128", denied.peer_v6),
    ];
    let (gw, port) = guarded(
        &upstream_config(&up, &deny),
        &[&denied, &allowed],
        kernel,
        Options::new(""),
    );
    for v6 in [false, true] {
        assert_eq!(
            attempt(&allowed, addr(&allowed, v6, port)),
            Outcome::Served(200),
            "allowed source, ipv6={v6}\n{}",
            gw.log()
        );
        assert_eq!(
            attempt(&denied, addr(&denied, v6, port)),
            refused(kernel),
            "denied source, ipv6={v6}"
        );
    }
    let s = status(&gw);
    if kernel {
        assert_eq!(s["ebpf"]["state"], "on", "{s}");
        assert_eq!(
            s["server"]["connections_accepted"], 2,
            "a denied source never reaches accept: {s}"
        );
        assert!(s["ebpf"]["drops"]["denied"].as_u64() >= Some(2), "{s}");
        assert_eq!(s["accept_refused"]["denied"], 0, "{s}");
        let metrics = request(gw.status, "GET", "/metrics", &[], b"")
            .expect("scrape")
            .text();
        assert!(metrics.contains("gangway_ebpf_up 1"), "{metrics}");
        let dropped = metrics
            .lines()
            .find_map(|l| l.strip_prefix("gangway_ebpf_drops_total{reason=\"denied\"} "))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(dropped >= Some(2), "{metrics}");
    } else {
        assert_eq!(s["ebpf"]["state"], "off", "{s}");
        assert_eq!(s["ebpf"]["reason"], "ebpf = off", "{s}");
        assert_eq!(s["accept_refused"]["denied"], 2, "{s}");
        assert_eq!(s["server"]["connections_handled"], 2, "{s}");
    }
}

#[test]
fn kernel_deny_list_drops_a_source_over_ipv4_and_ipv6() {
    a_deny_list_drops_a_source_and_serves_the_others(true);
}

#[test]
fn userspace_deny_list_closes_a_source_at_accept() {
    a_deny_list_drops_a_source_and_serves_the_others(false);
}

/// Waits until `peer` gets `want` (a reload is asynchronous).
fn until(peer: &Peer, addr: SocketAddr, want: Outcome, gw: &Gangway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = attempt(peer, addr);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got:?}, want {want:?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn a_config_change_moves_the_guard_without_a_restart(kernel: bool) {
    let (a, b) = (Peer::create(), Peer::create());
    let up = Upstream::start();
    let (gw, port) = guarded(
        &upstream_config(&up, &[a.peer_v4.to_string()]),
        &[&a, &b],
        kernel,
        Options::new(""),
    );
    assert_eq!(attempt(&a, addr(&a, false, port)), refused(kernel));
    assert_eq!(attempt(&b, addr(&b, false, port)), Outcome::Served(200));
    let pid = gw.pid();
    gw.write_config(&upstream_config(&up, &[b.peer_v4.to_string()]));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    until(&a, addr(&a, false, port), Outcome::Served(200), &gw);
    assert_eq!(attempt(&b, addr(&b, false, port)), refused(kernel));
    // And with no ip-restriction left, nobody is refused.
    gw.write_config(&upstream_config(&up, &[]));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    until(&b, addr(&b, false, port), Outcome::Served(200), &gw);
}

#[test]
fn kernel_guard_follows_a_config_change() {
    a_config_change_moves_the_guard_without_a_restart(true);
}

#[test]
fn userspace_guard_follows_a_config_change() {
    a_config_change_moves_the_guard_without_a_restart(false);
}

fn the_admin_port_admits_only_its_allow_list(kernel: bool) {
    let (outsider, operator) = (Peer::create(), Peer::create());
    let up = Upstream::start();
    let admin_port = free_port();
    let (mut gw, port) = guarded(
        &upstream_config(&up, &[]),
        &[&outsider, &operator],
        kernel,
        Options::new("")
            .env("GANGWAY_ADMIN_LISTEN", both_families(admin_port))
            .env(
                "GANGWAY_ADMIN_ALLOW_CIDRS",
                format!("{}/30, {}", operator.peer_v4, operator.peer_v6),
            ),
    );
    gw.wait_accepting(SocketAddr::from(([127, 0, 0, 1], admin_port)));
    for v6 in [false, true] {
        assert_eq!(
            attempt(&operator, addr(&operator, v6, admin_port)),
            Outcome::Served(200),
            "ipv6={v6}"
        );
        assert_eq!(
            attempt(&outsider, addr(&outsider, v6, admin_port)),
            refused(kernel),
            "ipv6={v6}"
        );
        // The proxy port has no list.
        assert_eq!(
            attempt(&outsider, addr(&outsider, v6, port)),
            Outcome::Served(200)
        );
    }
    if kernel {
        let s = status(&gw);
        assert!(s["ebpf"]["drops"]["not_allowed"].as_u64() >= Some(2), "{s}");
    }
}

#[test]
fn kernel_allow_list_guards_the_admin_port() {
    the_admin_port_admits_only_its_allow_list(true);
}

#[test]
fn userspace_allow_list_guards_the_admin_port() {
    the_admin_port_admits_only_its_allow_list(false);
}

/// A control plane's cluster port admits only `cluster_allow_cidrs`. Hybrid mode binds no
/// cluster listener yet, so there is no accept to check in userspace: an admitted SYN meets
/// the kernel's reset, a refused one is dropped by the guard.
#[test]
fn kernel_allow_list_guards_a_control_planes_cluster_port() {
    let (outsider, operator) = (Peer::create(), Peer::create());
    let pg = Postgres::start();
    pg.bootstrap();
    let (admin_port, cluster_port) = (free_port(), free_port());
    let (gw, _) = guarded(
        "unused",
        &[&outsider, &operator],
        true,
        pg.node_options()
            .env("KONG_ROLE", "control_plane")
            .env("GANGWAY_ADMIN_LISTEN", both_families(admin_port))
            .env("KONG_CLUSTER_LISTEN", both_families(cluster_port))
            .env(
                "GANGWAY_CLUSTER_ALLOW_CIDRS",
                format!("{}/30, {}", operator.peer_v4, operator.peer_v6),
            ),
    );
    let connect = |peer: &Peer, v6: bool| {
        let target = addr(peer, v6, cluster_port);
        peer.run(move || {
            TcpStream::connect_timeout(&target, Duration::from_millis(1500))
                .map(drop)
                .map_err(|e| e.kind())
        })
    };
    for v6 in [false, true] {
        assert_eq!(
            connect(&operator, v6),
            Err(std::io::ErrorKind::ConnectionRefused),
            "an allowed source reaches the port (nothing listens there yet), ipv6={v6}"
        );
        assert_eq!(
            connect(&outsider, v6),
            Err(std::io::ErrorKind::TimedOut),
            "ipv6={v6}"
        );
        // The Admin API port has no list of its own.
        assert_eq!(
            attempt(&outsider, addr(&outsider, v6, admin_port)),
            Outcome::Served(200)
        );
    }
    let s = status(&gw);
    assert!(s["ebpf"]["drops"]["not_allowed"].as_u64() >= Some(2), "{s}");
    let out = gangway_command()
        .args(["ebpf", "status"])
        .output()
        .expect("gangway ebpf status runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    let line = format!("port {cluster_port}: 0 deny, 2 allow entries");
    assert!(printed.contains(&line), "{line:?} in:\n{printed}");
}

fn the_connection_limit_holds_per_source(kernel: bool) {
    let (flood, other) = (Peer::create(), Peer::create());
    let up = Upstream::start();
    let (gw, port) = guarded(
        &upstream_config(&up, &[]),
        &[&flood, &other],
        kernel,
        Options::new("").env("GANGWAY_MAX_CONNECTIONS_PER_IP", "2"),
    );
    let target = addr(&flood, false, port);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = flood
            .run(move || TcpStream::connect_timeout(&target, Duration::from_secs(2)))
            .expect("a connection under the limit");
        assert_eq!(get_on(&mut stream), Outcome::Served(200));
        held.push(stream);
    }
    assert_eq!(attempt(&flood, target), refused(kernel), "the third");
    assert_eq!(
        attempt(&other, addr(&other, false, port)),
        Outcome::Served(200),
        "another source"
    );
    let s = status(&gw);
    if kernel {
        assert!(
            s["ebpf"]["drops"]["connection_limit"].as_u64() >= Some(1),
            "{s}"
        );
        assert!(
            s["ebpf"]["live_connections"][port.to_string()].as_u64() >= Some(2),
            "the tracker counts the held connections: {s}"
        );
        let out = gangway_command()
            .args(["ebpf", "status"])
            .output()
            .expect("gangway ebpf status runs");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{printed}");
        for line in [
            format!("port {port}: 0 deny, 0 allow entries; at most 2 per source"),
            format!("live: port {port} from {}: 2", flood.peer_v4),
        ] {
            assert!(printed.contains(&line), "{line:?} in:\n{printed}");
        }
    } else {
        assert_eq!(s["accept_refused"]["connection_limit"], 1, "{s}");
    }
    // A closed connection gives its place back.
    held.pop();
    until(&flood, target, Outcome::Served(200), &gw);
}

#[test]
fn kernel_connection_limit_drops_the_next_syn_from_one_source() {
    the_connection_limit_holds_per_source(true);
}

#[test]
fn userspace_connection_limit_closes_the_next_connection_from_one_source() {
    the_connection_limit_holds_per_source(false);
}

/// Whether an XDP program is attached to `interface` (`ip link` shows `prog/xdp`).
fn xdp_attached(interface: &str) -> bool {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", interface])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn the_guard_is_detached_at_shutdown_and_after_a_crash() {
    let peer = Peer::create();
    let up = Upstream::start();
    let config = upstream_config(&up, &[]);
    let (mut gw, _) = guarded(&config, &[&peer], true, Options::new(""));
    assert!(xdp_attached(&peer.host_if));
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some(), "exits");
    assert!(!xdp_attached(&peer.host_if), "detached at shutdown");

    let (gw, _) = guarded(&config, &[&peer], true, Options::new(""));
    assert!(xdp_attached(&peer.host_if), "attached again");
    gw.signal(libc::SIGKILL);
    drop(gw);
    assert!(
        !xdp_attached(&peer.host_if),
        "a killed process leaves no attachment behind"
    );
    let (gw, _) = guarded(&config, &[&peer], true, Options::new(""));
    assert_eq!(status(&gw)["ebpf"]["interfaces"][&peer.host_if], "native");
}

#[test]
fn a_second_gangway_on_a_guarded_interface_guards_its_ports_in_userspace() {
    let (a, b) = (Peer::create(), Peer::create());
    let up = Upstream::start();
    let config = upstream_config(&up, &[a.peer_v4.to_string()]);
    let (first, _) = guarded(&config, &[&a, &b], true, Options::new(""));
    let port = free_port();
    let second = Gangway::start_with(
        Options::new(config)
            .env("GANGWAY_PROXY_LISTEN", both_families(port))
            .env("GANGWAY_EBPF", "auto")
            .env(
                "GANGWAY_EBPF_INTERFACES",
                format!("{},{}", a.host_if, b.host_if),
            ),
    );
    let s = status(&second);
    assert_eq!(s["ebpf"]["state"], "off", "{s}");
    let reason = s["ebpf"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("another XDP program"), "{reason}");
    assert_eq!(status(&first)["ebpf"]["state"], "on");
    assert_eq!(attempt(&a, addr(&a, false, port)), Outcome::Closed);
    assert_eq!(attempt(&b, addr(&b, false, port)), Outcome::Served(200));
}

#[test]
fn kernel_byte_counts_match_what_the_client_sent_and_received() {
    let peer = Peer::create();
    let up = Upstream::start();
    let (gw, port) = guarded(&upstream_config(&up, &[]), &[&peer], true, Options::new(""));
    let target = addr(&peer, false, port);
    let (sent, received) = peer.run(move || {
        let mut stream =
            TcpStream::connect_timeout(&target, Duration::from_secs(2)).expect("connect");
        let body = vec![b'x'; 50_000];
        let first = b"GET /a HTTP/1.1\r\nHost: counted\r\n\r\n".to_vec();
        let mut second = format!(
            "POST /b HTTP/1.1\r\nHost: counted\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        second.extend_from_slice(&body);
        stream.write_all(&first).expect("send");
        stream.write_all(&second).expect("send");
        let mut all = Vec::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .read_to_end(&mut all)
            .expect("read to the server's close");
        (first.len() + second.len(), all.len())
    });
    assert!(
        received > 50_000,
        "the echo of the body came back: {received}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let totals = loop {
        let s = status(&gw);
        let t = s["ebpf"]["closed_connections"][port.to_string()].clone();
        if t["connections"] == 1 {
            break t;
        }
        assert!(Instant::now() < deadline, "the close was not counted: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The kernel counts sequence space, in which each side's FIN takes one byte.
    let within_a_fin = |counted: &serde_json::Value, payload: usize| {
        counted
            .as_u64()
            .is_some_and(|n| n == payload as u64 || n == payload as u64 + 1)
    };
    assert!(
        within_a_fin(&totals["bytes_in"], sent),
        "sent {sent}: {totals}"
    );
    assert!(
        within_a_fin(&totals["bytes_out"], received),
        "received {received}: {totals}"
    );
    assert!(totals["segments_in"].as_u64() >= Some(3), "{totals}");
}

/// The id of the XDP program on `interface`, from `ip -d link show`.
fn xdp_program_id(interface: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", interface])
        .output()
        .expect("ip runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = text.split("prog/xdp id ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn a_stale_guard_attached_through_netlink_is_replaced() {
    // What a crashed run leaves on a kernel without XDP links: the guard attached through
    // netlink, which outlives its process. iproute2 attaches it that way.
    let object =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bpf/gangway.bpf.o");
    assert!(
        object.exists(),
        "{} is missing: run `cargo xtask build-ebpf` first (cargo xtask test does)",
        object.display()
    );
    let (stale_peer, other) = (Peer::create(), Peer::create());
    let out = Command::new("ip")
        .args([
            "link",
            "set",
            "dev",
            &stale_peer.host_if,
            "xdpgeneric",
            "obj",
        ])
        .arg(&object)
        .args(["sec", "xdp"])
        .output()
        .expect("ip runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stale = xdp_program_id(&stale_peer.host_if).expect("the stale guard is attached");

    let up = Upstream::start();
    let (gw, port) = guarded(
        &upstream_config(&up, &[stale_peer.peer_v4.to_string()]),
        &[&stale_peer, &other],
        true,
        Options::new(""),
    );
    let now = xdp_program_id(&stale_peer.host_if).expect("a guard is attached");
    assert_ne!(now, stale, "the stale guard was replaced\n{}", gw.log());
    assert!(
        gw.log().contains("replaced a stale gangway IP guard"),
        "{}",
        gw.log()
    );
    assert_eq!(
        attempt(&stale_peer, addr(&stale_peer, false, port)),
        Outcome::TimedOut,
        "the new guard enforces this run's policy"
    );
    assert_eq!(
        attempt(&other, addr(&other, false, port)),
        Outcome::Served(200)
    );
}

/// The entries of the `gw_live` map that gangway process `pid` holds, read with bpftool.
fn live_entries(pid: i32) -> usize {
    let fdinfo = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo");
    let ids: Vec<String> = fdinfo
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:").map(|id| id.trim().to_owned()))
        })
        .collect();
    for id in ids {
        let shown = Command::new("bpftool")
            .args(["map", "show", "id", &id, "-j"])
            .output()
            .expect("bpftool runs (Debian's bpftool package)");
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
        if shown["name"] != "gw_live" {
            continue;
        }
        let dumped = Command::new("bpftool")
            .args(["map", "dump", "id", &id, "-j"])
            .output()
            .expect("bpftool dump");
        let entries: serde_json::Value = serde_json::from_slice(&dumped.stdout).expect("json");
        return entries.as_array().map_or(0, Vec::len);
    }
    panic!("gangway {pid} holds no gw_live map");
}

/// A source's live-count entry goes with its last connection: entries left at zero filled
/// the map, after which new sources went uncounted and the per-IP limit stopped applying.
#[test]
fn a_source_s_live_count_entry_goes_with_its_last_connection() {
    let peer = Peer::create();
    let up = Upstream::start();
    let (gw, port) = guarded(
        &upstream_config(&up, &[]),
        &[&peer],
        true,
        Options::new("").env("GANGWAY_MAX_CONNECTIONS_PER_IP", "4"),
    );
    let target = addr(&peer, false, port);
    let mut held = peer
        .run(move || TcpStream::connect_timeout(&target, Duration::from_secs(2)))
        .expect("connects");
    assert_eq!(get_on(&mut held), Outcome::Served(200));
    assert_eq!(live_entries(gw.pid()), 1, "the source is counted");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while live_entries(gw.pid()) != 0 {
        assert!(
            Instant::now() < deadline,
            "the entry outlived the connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
