//! `cargo xtask bench proxy`: gangway (io_uring and epoll) against nginx and haproxy as reverse
//! proxies, side by side on this machine, against the same nginx upstream, under the same wrk load.
//!
//! Each contender gets the same worker count. Runs are warmed up, repeated and interleaved
//! (A B C, B C A, C A B, ...: each round starts one contender later) so drift on the machine
//! hits every contender alike. Reported: RPS,
//! p50/p99/p99.9 latency and CPU time per request of the proxy's processes, each also as a
//! ratio to nginx.
//!
//! `--against LABEL=PATH` (repeatable) adds another gangway binary, e.g. a baseline built from
//! an older commit, as contender `gangway-LABEL`, started exactly like `gangway-io_uring` and
//! measured in the same interleaved rounds: a refactor shows "no regression" as the ratio
//! between the two rows, free of the drift between two separate runs.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::{Args, Subcommand};
use serde_json::json;

mod admin;
mod chart;
mod connections;
mod ebpf;
mod http_client;
mod lambda;
mod peers;
mod pipeline;
mod plans;
mod proxy;
mod quiet;
mod ratelimit;
mod transport;

/// The benchmarks (`cargo xtask bench <name>`).
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// gangway (io_uring and epoll) against nginx, haproxy and Pingora as a reverse proxy to an
    /// nginx upstream; each workload's table is saved as
    /// benches/results/proxy[-<workload>]-latest.md.
    Proxy {
        #[command(flatten)]
        params: Params,
        /// Also run the gangway binary at PATH (e.g. a baseline built from an older commit)
        /// as contender gangway-LABEL, started like gangway-io_uring; repeatable. Default:
        /// none.
        #[arg(long, value_name = "LABEL=PATH", value_parser = parse_against)]
        against: Vec<Against>,
        /// What the load does (repeatable, or comma-separated): plain keep-alive requests
        /// with a 24-byte body, the same over TLS, a new connection per request
        /// (`Connection: close`), 1 MiB responses, or plain requests while 1,000 idle
        /// keep-alive clients stay connected; `all` runs each in turn. Default: plain.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "plain")]
        workload: Vec<proxy::Workload>,
    },
    /// The plugin pipeline (request-transformer + key-auth + acl) at 1,000 and at --consumers
    /// consumers, with prometheus, tracing or file-log added at 1,000, against gangway's plain
    /// proxy and nginx's; saved as
    /// benches/results/pipeline-latest.md.
    Pipeline {
        #[command(flatten)]
        params: Params,
        #[command(flatten)]
        large: LargeConfig,
    },
    /// rate-limiting by consumer at 1,000 and at --consumers consumers: key-auth alone (the
    /// base), plus rate-limiting local, redis realtime and redis with sync_rate, against
    /// nginx with and without limit_req; with Redis round trips and commands per request.
    /// Starts its own redis-server. Saved as benches/results/ratelimit-<consumers>-latest.md.
    Ratelimit {
        #[command(flatten)]
        params: Params,
        #[command(flatten)]
        large: LargeConfig,
    },
    /// A Lambda-backed route (aws-lambda on the Invoke API double, REST API events) beside a
    /// route proxied to nginx, in one run: RPS, p99, and gangway's added CPU per invocation;
    /// with the release binary's size with and without the lambda feature. Saved as
    /// benches/results/lambda-latest.md.
    Lambda {
        #[command(flatten)]
        params: Params,
        /// Also time a clean release build with and without the lambda feature (two full
        /// builds in fresh target directories; several minutes).
        #[arg(long)]
        build_cost: bool,
    },
    /// A flood from a source denied by a global ip-restriction, from one network namespace,
    /// while wrk's allowed traffic comes from another: allowed RPS and p99 with no flood and
    /// with it, with the XDP guard and with the accept-time check (eBPF off), and the rate
    /// of refusals reached. Needs root. Saved as benches/results/ebpf-latest.md.
    Ebpf {
        #[command(flatten)]
        params: Params,
        /// Flood threads, 1 to 16.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 1,
            value_parser = RangedU64ValueParser::<usize>::new().range(1..=16),
        )]
        flood_threads: usize,
        /// Let the flood share every CPU with the allowed traffic, instead of running on a
        /// CPU of its own.
        #[arg(long)]
        shared_cpus: bool,
    },
    /// Memory per client connection, gangway (io_uring, epoll) beside nginx, one worker
    /// each: rounds that open --clients connections, send one keep-alive request on each, and
    /// close them; in front of a keep-alive upstream and of one that closes every connection.
    /// Saved as benches/results/connections-latest.md.
    Connections {
        /// Connections per round, 100 to 10000 (the runner needs twice as many open files).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 3000,
            value_parser = RangedU64ValueParser::<usize>::new().range(100..=10_000),
        )]
        clients: usize,
        /// Rounds per contender, 1 to 100 (50 makes the soak).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 5,
            value_parser = RangedU64ValueParser::<usize>::new().range(1..=100),
        )]
        rounds: usize,
        /// Send every connection's request before reading any answer (a burst: all of them
        /// in flight at once); saved as connections-burst-latest.md.
        #[arg(long)]
        burst: bool,
        /// Only these contenders (gangway-io_uring, gangway-epoll, nginx), for a soak of one
        /// case in a fraction of the time; a run narrowed by this or --upstream is saved as
        /// connections-partial-latest.md (connections-burst-partial with --burst).
        #[arg(long, value_delimiter = ',', value_parser = ["gangway-io_uring", "gangway-epoll", "nginx"])]
        only: Vec<String>,
        /// Only in front of this upstream: keep-alive, or closing (it closes every connection).
        #[arg(long, value_parser = ["keep-alive", "closing"])]
        upstream: Option<String>,
    },
    /// What the I/O driver alone costs a proxied request: byte forwarders (benches/transport,
    /// no HTTP) on tokio-uring, tokio's epoll and the io-uring crate driven directly
    /// (DEFER_TASKRUN, registered files, multishot receive), beside gangway's and nginx's
    /// plain proxies; saved as benches/results/transport-latest.md.
    Transport {
        #[command(flatten)]
        params: Params,
    },
    /// The identity-write micro-benchmark (cargo bench, benches/identity_writes.rs); saved as
    /// benches/results/identity-latest.md. Takes no flags.
    Identity,
    /// The Postgres store and the Admin API at --consumers consumers: db_import, boot from
    /// Postgres against DB-less, Admin API create rate, list latency (first and deep page),
    /// and create-to-visible latency at the proxy; saved as benches/results/admin-latest.md.
    /// Starts its own Postgres (Debian's postgresql package).
    Admin {
        #[command(flatten)]
        store: StoreConfig,
    },
    /// Per-consumer plans: boot (time to ready, CPU, RSS) DB-less and from Postgres of a
    /// config whose every consumer has its own rate-limiting instance, against the same
    /// config without them; saved as benches/results/plans-latest.md. Starts its own
    /// Postgres servers (Debian's postgresql package).
    Plans {
        #[command(flatten)]
        store: StoreConfig,
    },
}

/// The size of the generated config `bench admin` and `bench plans` import into Postgres.
#[derive(Debug, Args)]
pub struct StoreConfig {
    /// Consumers (each with a key-auth key, and in `bench plans`' second file its own
    /// rate-limiting instance), 1000 to 1000000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1000..=1_000_000),
    )]
    consumers: usize,
}

/// The size of the large config of `bench pipeline` and `bench ratelimit` (each also runs
/// 1,000 consumers).
#[derive(Debug, Args)]
pub struct LargeConfig {
    /// Consumers in the large config, 1000 to 10000000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1000..=10_000_000),
    )]
    consumers: usize,
}

/// The wrk load and process shape shared by the benchmarks. Out-of-range
/// values are refused by clap rather than clamped, so a run never silently measures
/// something other than what was asked for.
#[derive(Clone, Debug, Args)]
pub struct Params {
    /// Seconds each measured wrk run lasts, 1 to 600.
    #[arg(
        long = "duration",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=600),
    )]
    duration_s: u64,
    /// Seconds of wrk load per contender before the measured rounds, 0 to 60 (0 = none).
    #[arg(
        long = "warmup",
        value_name = "SECONDS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u64).range(0..=60),
    )]
    warmup_s: u64,
    /// Interleaved measured rounds (one run per contender each, each round starting one
    /// contender later than the last); the table shows medians, 1 to 60.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=60),
    )]
    repeat: usize,
    /// wrk connections (one wrk thread), 1 to 1024.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 32,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024),
    )]
    connections: usize,
    /// Worker threads (gangway) or processes (nginx) for every contender alike, 1 to 64.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=64),
    )]
    workers: usize,
}

/// One `--against LABEL=PATH`: an extra gangway binary to measure.
#[derive(Debug, Clone)]
pub struct Against {
    label: String,
    /// Absolute, so the setup line in the results says exactly which binary ran.
    path: PathBuf,
}

/// Parses and checks `LABEL=PATH` while clap parses, so a typo fails before the release
/// build and the upstream start, with clap's usual error.
fn parse_against(value: &str) -> Result<Against, String> {
    let (label, path) = value
        .split_once('=')
        .ok_or_else(|| "expected LABEL=PATH".to_string())?;
    if label.is_empty() {
        return Err("LABEL is empty".into());
    }
    // The label names the contender in the table and its config file and prefix directory
    // in the scratch directory.
    if label.contains(char::is_whitespace) || label.contains('/') {
        return Err(format!("LABEL {label:?} must not contain spaces or '/'"));
    }
    if path.is_empty() {
        return Err("PATH is empty".into());
    }
    let path = Path::new(path);
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{}: not executable", path.display()));
    }
    let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Against {
        label: label.to_string(),
        path,
    })
}

/// Each contender's name must be unique, as it keys the table, the results and its files in
/// the scratch directory: `--against` labels may not repeat nor take `io_uring` or `epoll`.
/// A clap error (exit status 2, no backtrace), like every other bad flag, as clap's
/// per-value parser cannot see the other values.
fn check_labels(against: &[Against]) -> Result<(), clap::Error> {
    let mut seen: Vec<&str> = vec!["io_uring", "epoll"];
    for a in against {
        if seen.contains(&a.label.as_str()) {
            return Err(clap::Error::raw(
                ErrorKind::ArgumentConflict,
                format!(
                    "--against {}=...: gangway-{} is already a contender; pick another label\n",
                    a.label, a.label
                ),
            ));
        }
        seen.push(&a.label);
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn require(bin: &str, package: &str) -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{bin} not found: install the Debian package {package} (bash .ci/run does)")
}

fn wait_port(port: u16, what: &str) -> Result<()> {
    wait_port_for(port, what, Duration::from_secs(15))
}

fn wait_port_for(port: u16, what: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{what} did not listen on {port} within {} s",
        limit.as_secs()
    )
}

/// A child process killed on drop; `pids()` includes its children (nginx workers).
struct Proc {
    child: Child,
    name: String,
    /// gangway's Status API port (none for nginx).
    status: Option<u16>,
}

impl Proc {
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id()];
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                .unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        pids
    }

    /// utime + stime of the process and its children, in seconds.
    fn cpu_seconds(&self) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        self.pids()
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .map(|stat| {
                // Fields after the parenthesised command name; utime and stime are 14 and 15.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                (ut + st) / ticks
            })
            .sum()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so nginx masters take their workers down.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("bench: {} needed SIGKILL", self.name);
    }
}

/// A process's resident set (VmRSS) in MB; 0 if it cannot be read.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// nginx's `worker_connections` in every bench but a burst of more clients: client and
/// upstream connections both count.
const NGINX_CONNECTIONS: usize = 4096;

fn nginx(
    dir: &Path,
    name: &str,
    conf_body: &str,
    workers: usize,
    worker_connections: usize,
) -> Result<Proc> {
    let nginx = require("nginx", "nginx-light")?;
    let prefix = dir.join(name);
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = format!(
        "worker_processes {workers};\ndaemon off;\nmaster_process on;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log error;\n\
         events {{ worker_connections {worker_connections}; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  keepalive_requests 100000;\n{conf_body}\n}}\n",
        p = prefix.display()
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf_path);
    spawn_peer(cmd, name)
}

/// Starts a peer proxy (not gangway: no Status API), its stdout silenced.
fn spawn_peer(mut cmd: Command, name: &str) -> Result<Proc> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        child,
        name: name.into(),
        status: None,
    })
}

/// The plain-proxy config: one route sending everything to the upstream.
fn plain_config(upstream: u16) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: upstream\n    url: http://127.0.0.1:{upstream}\n    routes:\n      - name: all\n        paths: [\"/\"]\n"
    )
}

fn gangway(
    bin: &Path,
    dir: &Path,
    name: &str,
    backend: &str,
    port: u16,
    config: &str,
    workers: usize,
) -> Result<Proc> {
    gangway_with_env(bin, dir, name, backend, port, config, workers, &[])
}

/// [`gangway`] with extra environment variables (settings) for this contender.
#[allow(clippy::too_many_arguments)]
fn gangway_with_env(
    bin: &Path,
    dir: &Path,
    name: &str,
    backend: &str,
    port: u16,
    config: &str,
    workers: usize,
    env: &[(&str, &str)],
) -> Result<Proc> {
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg, config)?;
    let status = free_port()?;
    let child = Command::new(bin)
        .arg("start")
        .env("GANGWAY_PROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GANGWAY_STATUS_LISTEN", format!("127.0.0.1:{status}"))
        .env("GANGWAY_ADMIN_LISTEN", "off")
        .env("GANGWAY_DECLARATIVE_CONFIG", &cfg)
        .env("GANGWAY_IO_BACKEND", backend)
        .env("GANGWAY_WORKERS", workers.to_string())
        .env("GANGWAY_LOG_LEVEL", "error")
        // nginx runs with `access_log off`: compare like with like.
        .env("GANGWAY_PROXY_ACCESS_LOG", "off")
        .env("GANGWAY_PREFIX", dir.join(name))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting gangway")?;
    Ok(Proc {
        child,
        name: name.into(),
        status: Some(status),
    })
}

const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format("GANGWAY_BENCH {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,\"non2xx\":%d,\"p50\":%d,\"p99\":%d,\"p999\":%d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

#[derive(Clone, Default)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    cpu_us_per_req: f64,
    errors: u64,
    /// CPU seconds the other contenders used while this one was measured.
    others_cpu_s: f64,
    /// The other contender that used the most of it, and its CPU seconds.
    busiest_other: Option<(String, f64)>,
}

impl Sample {
    /// ", most by NAME (N ms)" when the other contenders were not idle, else nothing.
    fn busiest_note(&self, seconds: u64) -> String {
        match &self.busiest_other {
            Some((name, used)) if quiet::share(self.others_cpu_s, seconds) >= quiet::IDLE_SHARE => {
                format!(", most by {name} ({:.0} ms)", used * 1000.0)
            }
            _ => String::new(),
        }
    }
}

/// A wrk load: the Lua that picks each request (prepended to the report script) and the
/// base URL path.
#[derive(Clone, Default)]
struct Load {
    lua: String,
    path: String,
    /// https (the contenders listen with TLS).
    tls: bool,
}

impl Load {
    /// Plain GETs of `/`.
    fn root() -> Load {
        Load {
            path: "/".into(),
            ..Load::default()
        }
    }
}

/// A load of requests for random consumers' keys (`k00000001`..), drawn once in wrk's
/// `init` (up to 100,000 of them, from the whole key range, with Lua's generator seeded by
/// `seed`) so that wrk spends no Lua time per request and stays faster than the proxies it
/// measures. `request` is a Lua expression of `key` that builds one request.
fn random_key_load(consumers: usize, seed: u32, request: &str) -> Load {
    let pool = consumers.min(100_000);
    Load {
        lua: format!(
            "local reqs = {{}}\nlocal n = 0\ninit = function(args)\n  math.randomseed({seed})\n  for i = 1, {pool} do\n    local key = string.format(\"k%08d\", math.random(1, {consumers}))\n    reqs[i] = {request}\n  end\nend\nrequest = function()\n  n = n % {pool} + 1\n  return reqs[n]\nend\n"
        ),
        path: "/".into(),
        tls: false,
    }
}

fn wrk(
    dir: &Path,
    port: u16,
    connections: usize,
    seconds: u64,
    load: &Load,
) -> Result<serde_json::Value> {
    wrk_from(
        None,
        dir,
        &format!("127.0.0.1:{port}"),
        connections,
        seconds,
        load,
    )
}

/// [`wrk`] against `authority` (`host:port`), run inside network namespace `netns` when
/// given (`ip netns exec`).
fn wrk_from(
    netns: Option<&str>,
    dir: &Path,
    authority: &str,
    connections: usize,
    seconds: u64,
    load: &Load,
) -> Result<serde_json::Value> {
    let wrk = require("wrk", "wrk")?;
    let script = dir.join("report.lua");
    std::fs::write(&script, format!("{}\n{WRK_SCRIPT}", load.lua))?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(wrk);
            c
        }
        None => Command::new(wrk),
    };
    let out = cmd
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "5s",
            "-s",
        ])
        .arg(&script)
        .arg(format!(
            "{}://{authority}{}",
            if load.tls { "https" } else { "http" },
            load.path
        ))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("GANGWAY_BENCH "))
        .with_context(|| format!("wrk printed no report: {text}"))?;
    Ok(serde_json::from_str(line)?)
}

fn measure(dir: &Path, proc_: &Proc, port: u16, p: &Params, load: &Load) -> Result<Sample> {
    let cpu_before = proc_.cpu_seconds();
    let r = wrk(dir, port, p.connections, p.duration_s, load)?;
    let cpu = proc_.cpu_seconds() - cpu_before;
    let n = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let requests = n("requests").max(1.0);
    Ok(Sample {
        rps: requests / (n("duration_us") / 1e6),
        p50_us: n("p50"),
        p99_us: n("p99"),
        p999_us: n("p999"),
        cpu_us_per_req: cpu * 1e6 / requests,
        errors: (n("errors") + n("non2xx")) as u64,
        others_cpu_s: 0.0,
        busiest_other: None,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One contender's RPS (or CPU per request) over another's, taken round by round: each round
/// measures the two moments apart, so a slow stretch of the host weighs on both, where a
/// ratio of medians can take them from different rounds.
struct Paired {
    median: f64,
    /// The middle half of the rounds' ratios lies between these (nearest rank).
    quartiles: (f64, f64),
    low: f64,
    high: f64,
    rounds: usize,
}

impl Paired {
    fn of(with: &[Sample], base: &[Sample]) -> Paired {
        Paired::from_ratios(with.iter().zip(base).map(|(w, b)| w.rps / b.rps).collect())
    }

    fn of_cpu(with: &[Sample], base: &[Sample]) -> Paired {
        Paired::from_ratios(
            with.iter()
                .zip(base)
                .map(|(w, b)| w.cpu_us_per_req / b.cpu_us_per_req)
                .collect(),
        )
    }

    /// From each round's own ratio.
    fn from_ratios(mut ratios: Vec<f64>) -> Paired {
        ratios.sort_by(|a, b| a.total_cmp(b));
        let n = ratios.len();
        Paired {
            low: ratios[0],
            high: ratios[n - 1],
            quartiles: (ratios[n / 4], ratios[(3 * n / 4).min(n - 1)]),
            rounds: n,
            median: ratios[n / 2],
        }
    }
}

impl std::fmt::Display for Paired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3}x (median of the {} rounds' own ratios; middle half {:.3}x to {:.3}x, all {:.3}x to {:.3}x)",
            self.median, self.rounds, self.quartiles.0, self.quartiles.1, self.low, self.high
        )
    }
}

/// Runs `cargo xtask bench <name>`.
pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Proxy {
            params,
            against,
            workload,
        } => {
            if let Err(e) = check_labels(&against) {
                e.exit()
            }
            proxy::run(&params, &against, &proxy::Workload::expand(&workload))
        }
        Bench::Pipeline { params, large } => pipeline::run(&params, large.consumers),
        Bench::Identity => identity(),
        Bench::Connections {
            clients,
            rounds,
            burst,
            only,
            upstream,
        } => connections::run(
            clients,
            rounds,
            burst,
            &connections::Narrowed {
                kinds: only,
                upstream,
            },
        ),
        Bench::Admin { store } => admin::run(store.consumers),
        Bench::Plans { store } => plans::run(store.consumers),
        Bench::Ratelimit { params, large } => ratelimit::run(&params, large.consumers),
        Bench::Lambda { params, build_cost } => lambda::run(&params, build_cost),
        Bench::Ebpf {
            params,
            flood_threads,
            shared_cpus,
        } => ebpf::run(&params, flood_threads, shared_cpus),
        Bench::Transport { params } => transport::run(&params),
    }
}

/// The identity-write micro-benchmark (`benches/identity_writes.rs`): its Markdown table is
/// printed and saved as `benches/results/identity-latest.md`.
fn identity() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let output = crate::cargo_command()
        .args([
            "bench",
            "-p",
            "gangway-pipeline",
            "--bench",
            "identity_writes",
        ])
        .current_dir(&root)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("cargo bench --bench identity_writes failed");
    }
    let table = String::from_utf8(output.stdout)?;
    print!("{table}");
    let doc = format!(
        "# Identity writes\n\n`cargo xtask bench identity` (benches/identity_writes.rs): one \
         consumer with one key-auth credential per row's count, then single writes as an \
         Admin API call would make them. A write publishes a new index that shares the \
         built one (a small delta on top); a full build is what a config reload pays.\n\n\
         {table}"
    );
    let results = root.join("benches/results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("identity-latest.md"),
        doc.replacen(
            "\n\n",
            "\n\n![times per consumer count](identity-latest.svg)\n\n",
            1,
        ),
    )?;
    identity_chart(&table, &results.join("identity-latest.svg"))
}

/// Charts the identity table: one bar per consumer count in each panel (one measurement
/// each, so no whiskers), times in microseconds.
fn identity_chart(table: &str, path: &Path) -> Result<()> {
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| consumers"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let names: Vec<String> = rows.iter().map(|r| format!("{} consumers", r[0])).collect();
    let column = |i: usize| -> Result<chart::Spread> {
        rows.iter()
            .map(|r| {
                let us = micros(r.get(i).copied().unwrap_or_default())?;
                Ok((us, us, us))
            })
            .collect()
    };
    chart::write_panels(
        path,
        "cargo xtask bench identity",
        &names,
        &[
            ("full build, us", column(1)?),
            ("one write (average of 1000), us", column(3)?),
            ("remove one key, us", column(6)?),
            ("key lookup, us", column(2)?),
        ],
    )
}

/// "876.0 us", "2355.2 ms", "610 ns" in microseconds.
fn micros(cell: &str) -> Result<f64> {
    let (value, unit) = cell
        .split_once(' ')
        .with_context(|| format!("no unit in {cell:?}"))?;
    let value: f64 = value
        .parse()
        .with_context(|| format!("not a number: {cell:?}"))?;
    Ok(match unit {
        "ns" => value / 1000.0,
        "us" => value,
        "ms" => value * 1000.0,
        "s" => value * 1e6,
        other => bail!("unknown unit {other:?} in {cell:?}"),
    })
}

/// Builds the release binary; returns the workspace root and the binary path.
fn build_release() -> Result<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    eprintln!("bench: building gangway (release)");
    let status = crate::cargo_command()
        .args(["build", "--release", "-p", "gangway"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let bin = root.join("target/release/gangway");
    Ok((root, bin))
}

fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("gangway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The path under which the upstream serves its 1 MiB file.
const LARGE_PATH: &str = "/1mb.bin";

/// Starts the upstream: nginx with one worker answering a fixed 24-byte body, and
/// [`LARGE_PATH`] with 1 MiB from a file (sendfile).
fn upstream(dir: &Path) -> Result<(Proc, u16)> {
    let up_port = free_port()?;
    let files = dir.join("upstream-files");
    std::fs::create_dir_all(&files)?;
    std::fs::write(
        files.join(LARGE_PATH.trim_start_matches('/')),
        vec![b'x'; 1 << 20],
    )?;
    let proc_ = nginx(
        dir,
        "upstream",
        &format!(
            "  server {{ listen 127.0.0.1:{up_port} reuseport backlog=4096; location / {{ return 200 \"hello from the upstream\\n\"; }} \
             location = {LARGE_PATH} {{ root {}; sendfile on; tcp_nopush on; }} }}",
            files.display()
        ),
        1,
        NGINX_CONNECTIONS,
    )?;
    wait_port(up_port, "upstream nginx")?;
    Ok((proc_, up_port))
}

/// One process under test.
struct Contender {
    name: String,
    proc_: Proc,
    port: u16,
    /// This contender's own load, when it differs from the shared one.
    load: Option<Load>,
}

/// Warms up, runs interleaved rounds, prints the table of medians as ratios to `base_name`,
/// and saves `benches/results/<bench>-<ts>.json` and `<bench>-latest.md`; returns the
/// medians and every round's samples, in contender order.
#[allow(clippy::too_many_arguments)]
fn compare(
    root: &Path,
    dir: &Path,
    bench: &str,
    setup: &str,
    p: &Params,
    contenders: &[Contender],
    load: &Load,
    base_name: &str,
) -> Result<(Vec<Sample>, Vec<Vec<Sample>>)> {
    for c in contenders {
        wait_port(c.port, &c.name)?;
    }
    eprintln!("bench: warm-up {} s each", p.warmup_s);
    if p.warmup_s > 0 {
        for c in contenders {
            wrk(
                dir,
                c.port,
                p.connections,
                p.warmup_s,
                c.load.as_ref().unwrap_or(load),
            )?;
        }
    }
    let settled = quiet::settle(contenders);
    match settled {
        Ok(waited) => eprintln!(
            "bench: contenders idle (under {:.0}% of a core together) after {:.1} s",
            quiet::IDLE_SHARE * 100.0,
            waited.as_secs_f64()
        ),
        Err(share) => eprintln!(
            "bench: WARNING: contenders still use {:.0}% of a core after the settle limit; measuring anyway",
            share * 100.0
        ),
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); contenders.len()];
    for round in 0..p.repeat {
        // A contender that always ran right after the same neighbour would inherit its
        // leftovers (page cache, CPU frequency, the upstream's state) in every round.
        let first = round % contenders.len();
        for i in (first..contenders.len()).chain(0..first) {
            let c = &contenders[i];
            let before = quiet::each_cpu(contenders);
            let mut s = measure(dir, &c.proc_, c.port, p, c.load.as_ref().unwrap_or(load))?;
            let after = quiet::each_cpu(contenders);
            (s.others_cpu_s, s.busiest_other) = quiet::others_used(contenders, &before, &after, i);
            eprintln!(
                "bench: round {} {}: {:.0} rps, p99 {:.2} ms, {:.1} us cpu/req, {} errors, others {:.0} ms cpu{}{}",
                round + 1,
                c.name,
                s.rps,
                s.p99_us / 1000.0,
                s.cpu_us_per_req,
                s.errors,
                s.others_cpu_s * 1000.0,
                if quiet::share(s.others_cpu_s, p.duration_s) < quiet::IDLE_SHARE {
                    ""
                } else {
                    " (NOT IDLE)"
                },
                s.busiest_note(p.duration_s)
            );
            samples[i].push(s);
        }
    }
    let summary: Vec<Sample> = samples
        .iter()
        .map(|v| Sample {
            rps: median(v.iter().map(|s| s.rps).collect()),
            p50_us: median(v.iter().map(|s| s.p50_us).collect()),
            p99_us: median(v.iter().map(|s| s.p99_us).collect()),
            p999_us: median(v.iter().map(|s| s.p999_us).collect()),
            cpu_us_per_req: median(v.iter().map(|s| s.cpu_us_per_req).collect()),
            errors: v.iter().map(|s| s.errors).sum(),
            others_cpu_s: v.iter().map(|s| s.others_cpu_s).fold(0.0, f64::max),
            busiest_other: None,
        })
        .collect();
    let base = contenders
        .iter()
        .position(|c| c.name == base_name)
        .and_then(|i| summary.get(i))
        .cloned()
        .unwrap_or_default();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| contender | RPS | vs {base_name} | p50 ms | p99 ms | p99 vs {base_name} | p99.9 ms | CPU us/req | CPU vs {base_name} | errors |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for (c, s) in contenders.iter().zip(&summary) {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2}x | {:.2} | {:.1} | {:.2}x | {} |",
            c.name,
            s.rps,
            s.rps / base.rps,
            s.p50_us / 1000.0,
            s.p99_us / 1000.0,
            s.p99_us / base.p99_us,
            s.p999_us / 1000.0,
            s.cpu_us_per_req,
            s.cpu_us_per_req / base.cpu_us_per_req,
            s.errors
        );
    }
    let names: Vec<String> = contenders.iter().map(|c| c.name.clone()).collect();
    let _ = write!(
        table,
        "\n{}",
        rounds_table(&names, &samples, p.duration_s, &settled)
    );
    println!("\n{setup}\n\n{table}");
    let raw: Vec<_> = contenders
        .iter()
        .zip(&samples)
        .map(|(c, v)| {
            json!({"name": c.name, "runs": v.iter().map(|s| json!({"rps": s.rps, "p50_us": s.p50_us, "p99_us": s.p99_us, "p999_us": s.p999_us, "cpu_us_per_req": s.cpu_us_per_req, "errors": s.errors, "others_cpu_ms": s.others_cpu_s * 1000.0, "busiest_other": s.busiest_other.as_ref().map(|(name, used)| json!({"name": name, "cpu_ms": used * 1000.0}))})).collect::<Vec<_>>()})
        })
        .collect();
    let results = root.join("benches/results");
    std::fs::create_dir_all(&results)?;
    chart::write(
        &results.join(format!("{bench}-latest.svg")),
        &format!("cargo xtask bench {bench}"),
        &names,
        &samples,
    )?;
    save_results(
        root,
        bench,
        json!({"setup": setup, "contenders": raw}),
        &format!("![RPS and p99 per contender]({bench}-latest.svg)\n\n{setup}\n\n{table}"),
    )?;
    Ok((summary, samples))
}

/// Saves a run in `benches/results/`: `raw` (an object, given `bench`, `unix_time` and
/// `cores`) as `<bench>-<unix time>.json`, and `markdown` under a title as
/// `<bench>-latest.md`.
fn save_results(
    root: &Path,
    bench: &str,
    mut raw: serde_json::Value,
    markdown: &str,
) -> Result<()> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let results = root.join("benches/results");
    std::fs::create_dir_all(&results)?;
    raw["bench"] = json!(bench);
    raw["unix_time"] = json!(stamp);
    raw["cores"] = json!(std::thread::available_parallelism().map_or(0, |n| n.get()));
    std::fs::write(
        results.join(format!("{bench}-{stamp}.json")),
        serde_json::to_string_pretty(&raw)?,
    )?;
    std::fs::write(
        results.join(format!("{bench}-latest.md")),
        format!("# cargo xtask bench {bench}\n\n{markdown}"),
    )?;
    Ok(())
}

/// Every round of every contender (the medians hide a bad round), and whether the other
/// contenders stayed idle while each one was measured.
fn rounds_table(
    names: &[String],
    samples: &[Vec<Sample>],
    seconds: u64,
    settled: &Result<Duration, f64>,
) -> String {
    let rounds = samples.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::from(
        "Every round (RPS, p99, CPU per request, and the CPU the other contenders used meanwhile):\n\n| contender |",
    );
    for r in 1..=rounds {
        let _ = write!(out, " round {r} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(rounds));
    out.push('\n');
    let mut busiest = 0.0f64;
    for (name, v) in names.iter().zip(samples) {
        let _ = write!(out, "| {name} |");
        for s in v {
            busiest = busiest.max(s.others_cpu_s);
            let _ = write!(
                out,
                " {:.0} rps, p99 {:.2} ms, {:.1} us/req, others {:.0} ms{} |",
                s.rps,
                s.p99_us / 1000.0,
                s.cpu_us_per_req,
                s.others_cpu_s * 1000.0,
                s.busiest_note(seconds)
            );
        }
        out.push('\n');
    }
    let idle = quiet::share(busiest, seconds) < quiet::IDLE_SHARE;
    let _ = writeln!(
        out,
        "\n{} the other contenders used at most {:.0} ms of CPU together during a {seconds} s round ({:.2}% of a core; the bar is {:.0}%){}.",
        if idle {
            "Idle check passed:"
        } else {
            "Idle check FAILED:"
        },
        busiest * 1000.0,
        quiet::share(busiest, seconds) * 100.0,
        quiet::IDLE_SHARE * 100.0,
        match settled {
            Ok(waited) => format!(
                "; before the first round they were idle after {:.1} s",
                waited.as_secs_f64()
            ),
            Err(share) => format!(
                "; before the first round they never went idle (last {:.0}% of a core)",
                share * 100.0
            ),
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{Cli, Task};

    fn bench(args: &[&str]) -> Result<Bench, clap::Error> {
        let argv = ["cargo xtask", "bench"].iter().chain(args);
        match Cli::try_parse_from(argv)?.task {
            Task::Bench { bench } => Ok(bench),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Today's invocations keep their meaning and defaults.
    #[test]
    fn proxy_flags_and_defaults() {
        let Bench::Proxy {
            params,
            against,
            workload,
        } = bench(&["proxy", "--duration", "5"]).expect("parses")
        else {
            panic!("not proxy");
        };
        assert_eq!(
            (params.duration_s, params.warmup_s, params.repeat),
            (5, 3, 3)
        );
        assert_eq!((params.connections, params.workers), (32, 1));
        assert!(against.is_empty());
        assert_eq!(workload, [proxy::Workload::Plain]);
    }

    /// `all` runs each workload once; a workload named twice runs once.
    #[test]
    fn workloads_expand_in_order() {
        use proxy::Workload as W;
        let Bench::Proxy { workload, .. } =
            bench(&["proxy", "--workload", "tls,close", "--workload", "all"]).expect("parses")
        else {
            panic!("not proxy");
        };
        assert_eq!(
            W::expand(&workload),
            [W::Tls, W::Close, W::Plain, W::Large, W::Idle]
        );
        assert!(bench(&["proxy", "--workload", "fast"]).is_err());
    }

    #[test]
    fn admin_and_plans_default_to_100k_consumers() {
        let Bench::Admin { store } = bench(&["admin"]).expect("parses") else {
            panic!("not admin");
        };
        assert_eq!(store.consumers, 100_000);
        let Bench::Plans { store } = bench(&["plans"]).expect("parses") else {
            panic!("not plans");
        };
        assert_eq!(store.consumers, 100_000);
    }

    #[test]
    fn out_of_range_is_refused() {
        for args in [
            &["proxy", "--duration", "0"][..],
            &["proxy", "--warmup", "61"],
            &["proxy", "--workers", "65"],
            &["pipeline", "--consumers", "999"],
            &["admin", "--consumers", "999"],
            &["admin", "--consumers", "1000001"],
            &["plans", "--consumers", "999"],
        ] {
            let err = bench(args).expect_err("out of range");
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{args:?}");
        }
    }

    #[test]
    fn against_is_checked() {
        let exe = std::env::current_exe().expect("test binary path");
        let ok = format!("base={}", exe.display());
        let Bench::Proxy { against, .. } = bench(&[
            "proxy",
            "--against",
            &ok,
            "--against",
            &format!("new={}", exe.display()),
        ])
        .expect("parses") else {
            panic!("not proxy");
        };
        assert_eq!(against.len(), 2);
        assert_eq!(against[0].label, "base");
        assert!(against[0].path.is_absolute());
        assert!(check_labels(&against).is_ok());
        let twice = [against[0].clone(), against[0].clone()];
        assert!(check_labels(&twice).is_err());
        for bad in [
            "base=/nonexistent",
            "base=/",
            "=/bin/sh",
            "a b=/bin/sh",
            "base",
        ] {
            assert!(bench(&["proxy", "--against", bad]).is_err(), "{bad}");
        }
    }

    fn sample(rps: f64, p99_ms: f64, others_ms: f64) -> Sample {
        Sample {
            rps,
            p99_us: p99_ms * 1000.0,
            cpu_us_per_req: 1e6 / rps,
            others_cpu_s: others_ms / 1000.0,
            ..Sample::default()
        }
    }

    /// A round that the others disturbed names the busiest of them; an undisturbed one
    /// does not.
    #[test]
    fn a_disturbed_round_names_the_busiest_other_contender() {
        let mut busy = sample(1000.0, 1.0, 100.0);
        busy.busiest_other = Some(("gangway-redis-sync_rate".into(), 0.09));
        assert_eq!(
            busy.busiest_note(8),
            ", most by gangway-redis-sync_rate (90 ms)"
        );
        let mut idle = sample(1000.0, 1.0, 20.0);
        idle.busiest_other = Some(("nginx".into(), 0.02));
        assert_eq!(idle.busiest_note(8), "");
    }

    /// The chart names every contender and draws one bar and one whisker per contender and
    /// panel.
    #[test]
    fn the_chart_shows_every_contender() {
        let names: Vec<String> = [
            "gangway-io_uring",
            "gangway-pipeline-1000-prometheus",
            "nginx",
        ]
        .map(String::from)
        .to_vec();
        let rounds = vec![
            vec![sample(101_000.0, 0.6, 0.0), sample(99_000.0, 0.7, 0.0)],
            vec![sample(80_000.0, 0.9, 0.0), sample(82_000.0, 0.8, 0.0)],
            vec![sample(95_000.0, 0.65, 0.0), sample(96_000.0, 0.61, 0.0)],
        ];
        let path = std::env::temp_dir().join(format!("gangway-chart-{}.svg", std::process::id()));
        chart::write(&path, "cargo xtask bench test", &names, &rounds).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("svg");
        let _ = std::fs::remove_file(&path);
        for name in &names {
            assert!(svg.contains(name.as_str()), "{name} missing");
        }
        assert!(svg.contains("requests per second") && svg.contains("p99 latency"));
    }

    #[test]
    fn identity_times_are_read_in_microseconds() {
        assert_eq!(micros("610 ns").expect("ns"), 0.61);
        assert_eq!(micros("44.6 us").expect("us"), 44.6);
        assert_eq!(micros("2355.2 ms").expect("ms"), 2_355_200.0);
        assert!(micros("12 parsecs").is_err() && micros("12").is_err());
    }

    /// A round during which another contender was busy is called out.
    #[test]
    fn a_busy_neighbour_fails_the_idle_check() {
        let quiet = vec![vec![sample(1000.0, 1.0, 5.0)]];
        let busy = vec![vec![sample(1000.0, 1.0, 400.0)]];
        let names = ["gangway".to_owned()];
        let text = |samples: &[Vec<Sample>]| {
            rounds_table(&names, samples, 10, &Ok(Duration::from_millis(500)))
        };
        assert!(text(&quiet).contains("Idle check passed"));
        assert!(text(&busy).contains("Idle check FAILED"));
    }
}
