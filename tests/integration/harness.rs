//! The harness: starts the real `gangway` binary on free ports against a small upstream
//! server, and talks to it over real sockets with a raw HTTP/1.1 client.

#![allow(dead_code)]

pub mod client;
pub mod dns;
pub mod lambda;
pub mod pki;
pub mod postgres;
pub mod upstream;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use client::{Response, request, send_raw};
pub use gangway_test_support::{TempDir, free_port, netns};
pub use upstream::Upstream;

/// The I/O backend under test: `GANGWAY_TEST_IO_BACKEND` (default `io_uring`, the default
/// backend in production). `cargo xtask test` runs the suite once per backend.
pub fn io_backend() -> String {
    std::env::var("GANGWAY_TEST_IO_BACKEND").unwrap_or_else(|_| "io_uring".into())
}

/// The gangway binary as a command that inherits the test's environment, without the
/// harness's own `GANGWAY_TEST_*` variables: gangway refuses a `GANGWAY_*` variable that
/// names no setting, as an operator's typo deserves.
pub fn gangway_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gangway"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GANGWAY_TEST_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// What `gangway start` with only `env` said as it refused to start; panics (after killing
/// it) if it was still running 20 s later, or exited 0.
pub fn refused_start(env: &[(&str, &str)]) -> String {
    let dir = TempDir::new("refused-start");
    let mut cmd = gangway_command();
    cmd.arg("start")
        .env_clear()
        .env("GANGWAY_PREFIX", dir.path("prefix"))
        .env("KONG_PROXY_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("KONG_STATUS_LISTEN", "off")
        .env("KONG_ADMIN_LISTEN", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn gangway");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gangway started with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = said(&out);
    assert!(!out.status.success(), "exit 0 with {env:?}: {text}");
    text
}

/// What a finished command said: stdout, then stderr.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running gangway process; killed on drop, with its log printed if the test failed.
pub struct Gangway {
    child: Option<Child>,
    /// Proxy listener (plain HTTP).
    pub proxy: SocketAddr,
    /// Proxy TLS listener, when started with TLS.
    pub proxy_tls: Option<SocketAddr>,
    /// Status API listener.
    pub status: SocketAddr,
    /// Admin API listener (plain HTTP), when started with one.
    pub admin: Option<SocketAddr>,
    /// Admin API TLS listener, when started with one.
    pub admin_tls: Option<SocketAddr>,
    /// The `ssl` Status API listener, when asked for.
    pub status_tls: Option<SocketAddr>,
    /// The declarative config file the process reads.
    pub config_path: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

/// How to start gangway.
pub struct Options {
    /// Declarative config (YAML text).
    pub config: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Also listen with TLS.
    pub tls: bool,
    /// Wait for `/status/ready` before returning.
    pub wait_ready: bool,
    /// Flags appended to every proxy listener, e.g. ` proxy_protocol`.
    pub proxy_flags: String,
    /// Start the Admin API: plain, and with TLS too when `admin_tls`.
    pub admin: bool,
    /// Also an `ssl` Admin API listener.
    pub admin_tls: bool,
    /// Also an `ssl` Status API listener.
    pub status_tls: bool,
    /// Point `declarative_config` at the config file; off leaves it unset.
    pub declarative: bool,
    /// The `prefix` directory; default a fresh one in the instance's scratch dir.
    pub prefix: Option<PathBuf>,
}

impl Options {
    /// Options for `config` with defaults.
    pub fn new(config: impl Into<String>) -> Options {
        Options {
            config: config.into(),
            env: Vec::new(),
            tls: false,
            wait_ready: true,
            proxy_flags: String::new(),
            admin: false,
            admin_tls: false,
            status_tls: false,
            declarative: true,
            prefix: None,
        }
    }

    /// Starts the Admin API on a free port.
    pub fn admin(mut self) -> Options {
        self.admin = true;
        self
    }

    /// Starts the Admin API on a free port, plus an `ssl` listener.
    pub fn admin_tls(mut self) -> Options {
        self.admin = true;
        self.admin_tls = true;
        self
    }

    /// Also an `ssl` Status API listener.
    pub fn status_tls(mut self) -> Options {
        self.status_tls = true;
        self
    }

    /// Leaves `declarative_config` unset (the config then comes from elsewhere).
    pub fn without_declarative_config(mut self) -> Options {
        self.declarative = false;
        self
    }

    /// Uses `dir` as the `prefix` (to share it between two runs).
    pub fn prefix(mut self, dir: &Path) -> Options {
        self.prefix = Some(dir.to_path_buf());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Options {
        self.env.push((k.to_string(), v.into()));
        self
    }

    /// Adds a TLS proxy listener.
    pub fn tls(mut self) -> Options {
        self.tls = true;
        self
    }

    /// Adds `flags` (space-separated listener flags) to every proxy listener.
    pub fn proxy_flags(mut self, flags: &str) -> Options {
        self.proxy_flags = format!(" {flags}");
        self
    }
}

impl Gangway {
    /// Starts gangway with `config` (a kong.yml) and default options.
    pub fn start(config: &str) -> Gangway {
        Gangway::start_with(Options::new(config))
    }

    /// Starts gangway with options.
    pub fn start_with(opts: Options) -> Gangway {
        let dir = TempDir::new("gw");
        let config_path = dir.path("kong.yml");
        std::fs::write(&config_path, &opts.config).expect("write kong.yml");
        let log_path = dir.path("gangway.log");
        let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let status: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let proxy_tls: Option<SocketAddr> = opts
            .tls
            .then(|| format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
        let admin: Option<SocketAddr> = opts
            .admin
            .then(|| format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
        let admin_tls: Option<SocketAddr> = opts
            .admin_tls
            .then(|| format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
        let status_tls: Option<SocketAddr> = opts
            .status_tls
            .then(|| format!("127.0.0.1:{}", free_port()).parse().expect("addr"));
        let status_listen = match status_tls {
            Some(tls) => format!("{status}, {tls} ssl"),
            None => status.to_string(),
        };
        let admin_listen = match (admin, admin_tls) {
            (Some(plain), Some(tls)) => format!("{plain}, {tls} http2 ssl"),
            (Some(plain), None) => plain.to_string(),
            _ => "off".to_string(),
        };
        let prefix = opts.prefix.clone().unwrap_or_else(|| dir.path("prefix"));
        let flags = &opts.proxy_flags;
        let mut listen = format!("{proxy}{flags}");
        if let Some(tls) = proxy_tls {
            listen.push_str(&format!(", {tls} ssl{flags}"));
        }
        let log = std::fs::File::create(&log_path).expect("create log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gangway"));
        cmd.arg("start")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GANGWAY_PROXY_LISTEN", listen)
            .env("GANGWAY_STATUS_LISTEN", status_listen)
            .env("GANGWAY_ADMIN_LISTEN", admin_listen)
            .env("GANGWAY_IO_BACKEND", io_backend())
            .env("GANGWAY_WORKERS", "2")
            .env("GANGWAY_PREFIX", prefix)
            .env("GANGWAY_LOG_LEVEL", "debug")
            // Tests share `lo`, and one XDP program fits an interface: eBPF tests opt in, on
            // veth pairs of their own (ebpf.rs).
            .env("GANGWAY_EBPF", "off")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if opts.declarative {
            cmd.env("GANGWAY_DECLARATIVE_CONFIG", &config_path);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn gangway binary");
        let mut gw = Gangway {
            child: Some(child),
            proxy,
            proxy_tls,
            status,
            admin,
            admin_tls,
            status_tls,
            config_path,
            log_path,
            dir,
        };
        if opts.wait_ready {
            gw.wait_ready();
        }
        gw
    }

    /// Waits up to 15 s for `/status/ready` to answer 200 and, when the instance has an
    /// Admin API, for its listeners to accept (they are bound after the proxy is ready).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut ready = false;
        while !ready && Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                panic!("gangway exited early ({status}); log:\n{}", self.log());
            }
            if let Ok(r) = request(self.status, "GET", "/status/ready", &[], b"") {
                if r.status == 200 {
                    if let Some(status) = self.try_wait() {
                        panic!(
                            "gangway exited ({status}) while another answered on its status port; log:\n{}",
                            self.log()
                        );
                    }
                    ready = true;
                    continue;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !ready {
            panic!("gangway not ready within 15s; log:\n{}", self.log());
        }
        for addr in [self.admin, self.admin_tls].into_iter().flatten() {
            while std::net::TcpStream::connect(addr).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "gangway not ready (admin {addr}) within 15s; log:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits up to 15 s for a listener the harness does not know of (one set through `env`,
    /// bound after the proxy is ready) to accept.
    pub fn wait_accepting(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = self.try_wait() {
                panic!("gangway exited early ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{addr} not accepting within 15s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The process's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Replaces the declarative config file (the caller then signals or waits for the watcher).
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml).expect("rewrite kong.yml");
    }

    /// GET through the proxy.
    pub fn get(&self, path: &str) -> Response {
        request(self.proxy, "GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nlog:\n{}", self.log()))
    }

    /// A request to the Admin API (which the instance must have been started with).
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let addr = self.admin.expect("started with Options::admin()");
        request(addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} (admin): {e}\nlog:\n{}", self.log()))
    }

    /// Scratch dir of this instance.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for Gangway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- gangway log ----\n{}\n---- end log ----", self.log());
        }
    }
}

/// A declarative config with one service pointing at `upstream` and the given routes YAML
/// (a list under `routes:`, indented by 4).
pub fn config_with_routes(upstream: SocketAddr, routes_yaml: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: echo\n    url: http://{upstream}\n    routes:\n{routes_yaml}"
    )
}

/// The lines of a log file read while it is written: those ended by a newline. The last
/// one may be cut short, as a write that spans pages can be read half done.
pub fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
}

/// The JSON documents of a log file, one a line, once `n` are complete (at most 10 s).
pub fn json_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<serde_json::Value> = complete_lines(&text)
            .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} log lines in {}",
            found.len(),
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A header the echo upstream received (case-insensitive name).
pub fn echo_header(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"].as_array()?.iter().find_map(|pair| {
        let k = pair[0].as_str()?;
        k.eq_ignore_ascii_case(name)
            .then(|| pair[1].as_str().map(str::to_string))
            .flatten()
    })
}

/// Connects a raw TCP stream with timeouts, panicking on failure.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Connects a raw TCP stream with 10 s read and write timeouts.
pub fn try_connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    Ok(s)
}
