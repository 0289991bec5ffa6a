//! A real `redis-server` (Debian's `redis-server` package) on a free port, in a scratch
//! directory, that a test can kill, restart and pause; and a Redis Cluster of such servers
//! joined by `redis-cli --cluster create`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, free_port};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running redis-server; killed on drop.
pub struct Redis {
    dir: TempDir,
    port: u16,
    args: Vec<String>,
    /// Flags every `redis-cli` call gets (TLS, credentials).
    cli_flags: Vec<String>,
    tls: bool,
    /// A Sentinel's config file (written by [`Redis::start_sentinel`]).
    sentinel: Option<std::path::PathBuf>,
    child: Option<Child>,
}

fn binary(name: &str) -> &str {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} not found: install Debian's redis-server package (apt-get install redis-server)"
    );
    name
}

impl Redis {
    /// A server with no persistence and no password.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A server with extra `redis-server` arguments (`["--requirepass", "s3cret"]`).
    pub fn start_with(args: &[&str]) -> Redis {
        let mut server = Redis {
            dir: TempDir::new("redis"),
            port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            cli_flags: Vec::new(),
            tls: false,
            sentinel: None,
            child: None,
        };
        server.cli_flags = server.auth_args();
        server.spawn();
        server
    }

    /// A server that speaks only TLS, with this certificate and key (PEM), and `ca_pem` as
    /// its CA. Clients need no certificate of their own; `redis-cli` does not verify the
    /// server's (the tests check what gangway verifies, not what OpenSSL would).
    pub fn start_tls(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Redis {
        let dir = TempDir::new("redis-tls");
        let (cert, key, ca) = (
            dir.path("server.crt"),
            dir.path("server.key"),
            dir.path("ca.crt"),
        );
        std::fs::write(&cert, cert_pem).expect("write server.crt");
        std::fs::write(&key, key_pem).expect("write server.key");
        std::fs::write(&ca, ca_pem).expect("write ca.crt");
        let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
        let mut server = Redis {
            port: free_port(),
            args: vec![
                "--tls-cert-file".into(),
                path(&cert),
                "--tls-key-file".into(),
                path(&key),
                "--tls-ca-cert-file".into(),
                path(&ca),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            cli_flags: vec!["--tls".into(), "--insecure".into()],
            tls: true,
            sentinel: None,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    /// A Redis Sentinel that monitors the master `name` at 127.0.0.1:`master_port` (a quorum
    /// of one).
    pub fn start_sentinel(name: &str, master_port: u16) -> Redis {
        let dir = TempDir::new("redis-sentinel");
        let conf = dir.path("sentinel.conf");
        std::fs::write(
            &conf,
            format!("sentinel monitor {name} 127.0.0.1 {master_port} 1\n"),
        )
        .expect("write sentinel.conf");
        let mut server = Redis {
            dir,
            port: free_port(),
            args: Vec::new(),
            cli_flags: Vec::new(),
            tls: false,
            sentinel: Some(conf),
            child: None,
        };
        server.spawn();
        server
    }

    /// From now on, `cli` authenticates as `user` with `password` (after an ACL change).
    pub fn cli_as(&mut self, user: &str, password: &str) {
        self.cli_flags.retain(|f| f == "--tls" || f == "--insecure");
        self.cli_flags
            .extend(["--no-auth-warning", "--user", user, "--pass", password].map(String::from));
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `redis-cli` against it (over TLS, and authenticated, when it needs that);
    /// returns trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = self.cli_flags.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        cli(self.port, &all)
    }

    /// Stops it abruptly (SIGKILL); returns once the port is free.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis port {} stays busy",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again on the same port (empty: no persistence); waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary("redis-server"));
        if let Some(conf) = &self.sentinel {
            // A sentinel rewrites its config file, and needs one to start.
            cmd.arg(conf).arg("--sentinel");
        }
        let (plain, tls) = if self.tls {
            ("0".to_string(), self.port.to_string())
        } else {
            (self.port.to_string(), "0".to_string())
        };
        cmd.args(["--port", &plain, "--tls-port", &tls])
            .args(["--bind", "127.0.0.1"]);
        if self.sentinel.is_none() {
            cmd.args(["--save", "", "--appendonly", "no"]);
        }
        cmd.arg("--dir")
            .arg(&self.dir.0)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.path("redis.log")).expect("redis.log"))
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("spawn redis-server"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(&self.cli_flags)
                .arg("PING")
                .output()
                .map(|o| {
                    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
                    if out.is_empty() {
                        String::from_utf8_lossy(&o.stderr).trim().to_string()
                    } else {
                        out
                    }
                })
                .unwrap_or_default();
            if pong == "PONG" || pong.starts_with("NOAUTH") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING (last answer: {pong:?})\n{}",
                self.port,
                std::fs::read_to_string(self.dir.path("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `-a <password>` when the server was started with `--requirepass`.
    fn auth_args(&self) -> Vec<String> {
        let pass = self
            .args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.args.get(i + 1));
        match pass {
            Some(p) => vec!["--no-auth-warning".into(), "-a".into(), p.clone()],
            None => Vec::new(),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `redis-cli -p <port> <args>`, trimmed stdout; panics when it cannot run.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(binary("redis-cli"))
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A Redis Cluster of `n` masters (no replicas), each slot range on one node.
pub struct RedisCluster {
    /// The nodes, in the order `redis-cli --cluster create` got them.
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts `n` (at least 3) cluster-enabled servers and joins them.
    pub fn start(n: usize) -> RedisCluster {
        let nodes: Vec<Redis> = (0..n)
            .map(|_| {
                // The bus port defaults to the client port + 10000, which nothing reserved:
                // another test's server once held it. A free port of its own instead.
                let bus = free_port().to_string();
                Redis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port()))
            .collect();
        let out = Command::new(binary("redis-cli"))
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !cluster
            .nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "the cluster never reached cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The node that serves `key`'s slot, and its position in [`RedisCluster::nodes`].
    pub fn owner(&self, key: &str) -> usize {
        let slot = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = slot.parse().expect("a slot number");
        self.owner_of_slot(slot)
    }

    /// The node that serves `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> usize {
        let shards = self.nodes[0].cli(&["CLUSTER", "SLOTS"]);
        // redis-cli prints each range as: start, end, then the master's ip, port and id.
        let lines: Vec<&str> = shards.lines().collect();
        for window in lines.windows(4) {
            let (Ok(start), Ok(end), Ok(port)) = (
                window[0].parse::<u16>(),
                window[1].parse::<u16>(),
                window[3].parse::<u16>(),
            ) else {
                continue;
            };
            let owner = self.nodes.iter().position(|n| n.port() == port);
            if let (true, Some(i)) = (
                window[2] == "127.0.0.1" && (start..=end).contains(&slot),
                owner,
            ) {
                return i;
            }
        }
        panic!("no node owns slot {slot}:\n{shards}");
    }

    /// The cluster id of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        self.nodes[i].cli(&["CLUSTER", "MYID"])
    }

    /// Moves `slot` (and its keys) from node `from` to node `to`, as `redis-cli --cluster
    /// reshard` does: IMPORTING/MIGRATING, MIGRATE of its keys, then SETSLOT NODE everywhere.
    pub fn move_slot(&self, slot: u16, from: usize, to: usize) {
        let slot_s = slot.to_string();
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        let (src_id, dst_id) = (self.node_id(from), self.node_id(to));
        dst.cli(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id]);
        src.cli(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id]);
        loop {
            let keys = src.cli(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.port().to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            let answer = src.cli(&args);
            assert!(
                answer == "OK" || answer == "NOKEY",
                "MIGRATE said {answer:?}"
            );
        }
        // The new owner first, then the old one, then the rest (as redis-cli does): an old
        // owner that hands the slot over before the new one knows would bounce clients
        // between the two with MOVED.
        let order = std::iter::once(to)
            .chain(std::iter::once(from))
            .chain((0..self.nodes.len()).filter(|&i| i != from && i != to));
        for i in order {
            self.nodes[i].cli(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]);
        }
    }
}
