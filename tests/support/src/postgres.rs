//! A real Postgres for tests and benches: `initdb` into a scratch dir, the server started from the Debian
//! binaries (`/usr/lib/postgresql/<ver>/bin`) as a child process on a free port, so a test can
//! kill it (SIGKILL, as a crash would) and start it again on the same data.
//!
//! Postgres refuses to run as root; when the tests do (CI), `initdb` and `postgres` run as the
//! `postgres` system user the Debian package creates, with the data and socket dirs chowned to
//! it. The processes switch user themselves (`CommandExt::uid`/`gid`, no `runuser` in between),
//! so the child held here is the postmaster itself and `kill()` reaches it.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TempDir, free_port};

/// How long startup (or restart after a crash) may take before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A Postgres server owned by the test: stopped and its directory removed on drop.
pub struct Postgres {
    bin: PathBuf,
    /// `Some((uid, gid))` of the `postgres` user when running as root.
    run_as: Option<(u32, u32)>,
    port: u16,
    data: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// Certificate and key files when the server takes TLS.
    tls: Option<(PathBuf, PathBuf)>,
    /// `-c name=value` server settings after the harness's own.
    settings: Vec<String>,
    dir: TempDir,
}

impl Postgres {
    /// initdb (trust auth, UTF8, locale C), starts the server on a free port listening on
    /// 127.0.0.1 only with its unix socket in the scratch dir, waits until it accepts
    /// connections (30 s at most, then panics with the server log), then creates the
    /// superuser role `kong` and the database `kong` owned by it.
    pub fn start() -> Postgres {
        Postgres::start_inner(None, &[])
    }

    /// [`Postgres::start`] with TLS on (`ssl=on`) with this certificate and key (PEM): what
    /// Aurora requires of its clients.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_inner(Some((cert_pem, key_pem)), &[])
    }

    /// [`Postgres::start`] with server settings (`("shared_buffers", "256MB")`) over the
    /// harness's defaults: a bench sizes the server for its data.
    pub fn start_with_settings(settings: &[(&str, &str)]) -> Postgres {
        Postgres::start_inner(None, settings)
    }

    fn start_inner(tls: Option<(&str, &str)>, settings: &[(&str, &str)]) -> Postgres {
        let bin = find_bin_dir();
        // SAFETY: geteuid(2) has no preconditions.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user())
        } else {
            None
        };
        let dir = TempDir::new("pg");
        // The postgres user must reach the subdirs it owns.
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755))
            .expect("chmod pg scratch dir");
        let data = dir.path("data");
        let socket_dir = dir.path("sock");
        for (path, mode) in [(&data, 0o700), (&socket_dir, 0o755)] {
            std::fs::create_dir(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
            }
        }
        let tls = tls.map(|(cert, key)| {
            let (cert_path, key_path) = (dir.path("server.crt"), dir.path("server.key"));
            std::fs::write(&cert_path, cert).expect("write server.crt");
            std::fs::write(&key_path, key).expect("write server.key");
            // Postgres refuses a key others can read.
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod server.key");
            if let Some((uid, gid)) = run_as {
                for path in [&cert_path, &key_path] {
                    std::os::unix::fs::chown(path, Some(uid), Some(gid))
                        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
                }
            }
            (cert_path, key_path)
        });
        let log_path = dir.path("postgres.log");
        let mut pg = Postgres {
            bin,
            run_as,
            port: free_port(),
            data,
            socket_dir,
            log_path,
            child: None,
            tls,
            settings: settings.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            dir,
        };
        pg.initdb();
        pg.spawn_until_ready(false);
        pg.psql_as("postgres", "postgres", "CREATE ROLE kong LOGIN SUPERUSER");
        pg.psql_as("postgres", "postgres", "CREATE DATABASE kong OWNER kong");
        pg
    }

    /// The server's major version (the `<ver>` of `/usr/lib/postgresql/<ver>/bin`).
    pub fn version(&self) -> String {
        self.bin
            .parent()
            .and_then(|p| p.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The TCP port on 127.0.0.1 (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Environment for gangway: `GANGWAY_DATABASE=postgres` and the `GANGWAY_PG_*` settings
    /// pointing at this server's `kong` database as user `kong`.
    pub fn gangway_env(&self) -> Vec<(String, String)> {
        [
            ("GANGWAY_DATABASE", "postgres".to_string()),
            ("GANGWAY_PG_HOST", "127.0.0.1".to_string()),
            ("GANGWAY_PG_PORT", self.port.to_string()),
            ("GANGWAY_PG_USER", "kong".to_string()),
            ("GANGWAY_PG_DATABASE", "kong".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs SQL through psql as `kong` against the `kong` database; returns stdout (tuples
    /// only, unaligned, trailing newline removed); panics with stderr on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_as("kong", "kong", sql)
    }

    /// Stops the server abruptly (SIGKILL), as a crash or network loss would; the data dir
    /// stays. Returns once nothing listens on the port any more: a backend forked just before
    /// the kill still holds the listening socket for a moment, and would accept connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.wait_port_free(Instant::now() + STOP_TIMEOUT);
    }

    /// Starts the server again on the same port and data dir (crash recovery after `kill()`;
    /// a server still running is stopped first); waits until it accepts connections.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn_until_ready(true);
    }

    /// Clean stop (fast shutdown: SIGINT, then SIGKILL if it takes over 10 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid (not yet reaped, so not reused).
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "postgres on port {} ignored fast shutdown for {STOP_TIMEOUT:?}: killing it",
            self.port
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server log so far (initdb output, then every start of the server).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn initdb(&self) {
        let mut cmd = self.command("initdb");
        cmd.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .arg("-D")
            .arg(&self.data);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.join("initdb").display()));
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open postgres.log");
        use std::io::Write;
        let _ = log.write_all(&out.stdout);
        let _ = log.write_all(&out.stderr);
        if !out.status.success() {
            panic!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if self.tls.is_some() {
            // TCP clients must use TLS (psql and pg_isready prefer it, so the harness still connects).
            let hba = self.data.join("pg_hba.conf");
            std::fs::write(
                &hba,
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap_or_else(|e| panic!("write {}: {e}", hba.display()));
        }
    }

    /// Spawns the postmaster and waits until it accepts connections. With `retry` (after a
    /// crash) an early exit is retried until the deadline: orphaned backends of the killed
    /// postmaster may still hold the port or its shared memory for a moment.
    fn spawn_until_ready(&mut self, retry: bool) {
        let deadline = Instant::now() + READY_TIMEOUT;
        'spawn: loop {
            self.wait_port_free(deadline);
            self.remove_stale_pid_file();
            let mut child = self.spawn_postmaster();
            loop {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "postgres on port {} not ready after {READY_TIMEOUT:?}\nlog:\n{}",
                        self.port,
                        self.log()
                    );
                }
                if let Ok(Some(status)) = child.try_wait() {
                    if retry {
                        std::thread::sleep(Duration::from_millis(100));
                        continue 'spawn;
                    }
                    panic!(
                        "postgres exited at startup ({status})\nlog:\n{}",
                        self.log()
                    );
                }
                if self.is_ready() {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn spawn_postmaster(&self) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open postgres.log");
        let log2 = log.try_clone().expect("dup postgres.log");
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            // fsync off keeps tests fast and loses nothing on a process crash (the kernel
            // still has the writes). synchronous_commit stays on: off, a commit returns before
            // its WAL leaves shared memory, and kill() then loses committed rows.
            .args(["-c", "fsync=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "shared_buffers=16MB"]);
        for setting in &self.settings {
            cmd.arg("-c").arg(setting);
        }
        if let Some((cert, key)) = &self.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.join("postgres").display()))
    }

    /// Whether the server accepts connections (`pg_isready`; "rejecting" during recovery
    /// counts as not ready).
    fn is_ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-t", "1", "-U", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits (bounded) until nothing listens on the port any more.
    fn wait_port_free(&self, deadline: Instant) {
        while has_listener(self.port) {
            if Instant::now() >= deadline {
                panic!(
                    "port {} still has a listener (an orphaned postgres process?)\nlog:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes `postmaster.pid` left by a killed postmaster whose pid is gone.
    fn remove_stale_pid_file(&self) {
        let pid_file = self.data.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
        if !alive {
            let _ = std::fs::remove_file(&pid_file);
        }
    }

    fn psql_as(&self, user: &str, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", user, "-d", db, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.join("psql").display()));
        if !out.status.success() {
            panic!(
                "psql ({user}@{db}) failed ({}): {sql}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        while s.ends_with('\n') {
            s.pop();
        }
        s
    }

    /// A command for one of the server binaries, as the `postgres` user when we are root.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.current_dir(&self.dir.0);
        if let Some((uid, gid)) = self.run_as {
            // std drops supplementary groups when setting the uid as root.
            cmd.uid(uid).gid(gid);
            cmd.env("HOME", &self.dir.0);
            cmd.env("USER", "postgres");
            cmd.env("LOGNAME", "postgres");
        }
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- postgres log (port {}) ----\n{}\n---- end log ----",
                self.port,
                self.log()
            );
        }
        // `self.dir` (a TempDir) removes the directory after this.
    }
}

/// Whether a socket listens on 127.0.0.1:`port`: a bind with SO_REUSEADDR (as Postgres binds)
/// fails only then. No listen(2), so this probe never accepts anyone's connection.
fn has_listener(port: u16) -> bool {
    // SAFETY: plain socket calls on a descriptor owned and closed here; `addr` and `one` live
    // across the calls that read them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let rc = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        rc != 0 && err.raw_os_error() == Some(libc::EADDRINUSE)
    }
}

/// The newest `/usr/lib/postgresql/<ver>/bin` holding the server binaries.
fn find_bin_dir() -> PathBuf {
    const NEEDED: [&str; 4] = ["initdb", "postgres", "pg_isready", "psql"];
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            NEEDED
                .iter()
                .all(|b| is_file(&bin.join(b)))
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "postgres not found under /usr/lib/postgresql/*/bin (need {}): install the Debian \
             package postgresql (bash .ci/run does)",
            NEEDED.join(", ")
        ),
    }
}

fn is_file(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| m.is_file())
}

/// uid and gid of the `postgres` system user.
fn postgres_user() -> (u32, u32) {
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: an all-zero passwd is a valid value to be overwritten (plain integers and
    // pointers).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r (reentrant, tests start servers in parallel) writes into `pw` and
    // `buf`, both valid for the lengths given, and sets `result` to `&pw` or null.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        panic!(
            "running as root, but there is no postgres system user to run Postgres as: install \
             the Debian package postgresql (bash .ci/run does)"
        );
    }
    (pw.pw_uid, pw.pw_gid)
}
