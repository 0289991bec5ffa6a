//! `cargo xtask bench admin`: the Postgres store and the Admin API at `--consumers` consumers
//! (default 100,000), each with a key-auth key, from `cargo xtask gen-config`.
//!
//! The bench starts its own Postgres (Debian's binaries, as the `postgres` user when run as
//! root, fsync off), an nginx upstream for the generated file's service, and measures:
//!
//! 1. `gangway config db_import` of the file: wall time and entities per second.
//! 2. Boot: `gangway start` to `/status/ready` 200 and VmRSS once ready, from Postgres and
//!    DB-less from the same file, interleaved, [`BOOTS`] times each (medians shown).
//! 3. List latency at N: `GET /consumers?size=100` (page 1, median of [`LIST_SAMPLES`]), and the
//!    page at about 90% of N, reached by following `next`: that request's latency and the walk.
//! 4. Admin API create rate, a creation being `POST /consumers` then
//!    `POST /consumers/{username}/key-auth`: [`SEQ_CREATES`] in a row from one client, then
//!    [`CONC_CREATES`] from [`CONC_CLIENTS`] clients at once (std threads).
//! 5. Create-to-visible: [`VISIBLE_CREATES`] consumers, each given the ACL group the route
//!    allows and then a key; from the key's 201 until `GET /` with header `apikey` answers 200
//!    at the node's proxy (polled every millisecond, at most [`VISIBLE_LIMIT`]).
//!
//! Every client is blocking HTTP/1.1 over a `TcpStream` with one keep-alive connection per
//! client (reopened when the server closes it). Everything the bench starts is stopped, and
//! its scratch directory removed, on success and on error (drop guards).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::http_client::Http;
use super::{Proc, build_release, free_port, rss_mb, scratch_dir, upstream};
use gangway_test_support::postgres::Postgres;

/// Boots per mode (DB-less and Postgres, interleaved); the table shows medians.
const BOOTS: usize = 3;
/// How long one boot may take before the bench gives up.
const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// Page-1 list requests; the median is shown.
const LIST_SAMPLES: usize = 20;
/// Repeats of the deep-page request after the walk reached it.
const DEEP_REPEATS: usize = 5;
/// How long walking to the deep page may take.
const WALK_LIMIT: Duration = Duration::from_secs(600);
/// Consumers (with a key) created one after another by one client.
const SEQ_CREATES: usize = 500;
/// Consumers (with a key) created by [`CONC_CLIENTS`] clients at once, in all.
const CONC_CREATES: usize = 2000;
const CONC_CLIENTS: usize = 16;
/// Consumers whose key is polled at the proxy after its creation.
const VISIBLE_CREATES: usize = 200;
/// How long a new key may take to work at the proxy before it counts as not visible.
const VISIBLE_LIMIT: Duration = Duration::from_secs(5);
/// The ACL group the generated route allows (gen_config.rs: `allow: [gold, silver]`).
const ALLOWED_GROUP: &str = "gold";

/// Runs `cargo xtask bench admin --consumers <consumers>`.
pub fn run(consumers: usize) -> Result<()> {
    let (root, bin) = build_release()?;
    // Declared first, so dropped last: every process below is gone before it is removed.
    let scratch = Scratch::new()?;
    let file = scratch.0.join("kong.yml");
    gen_config(consumers, &file, &[])?;
    let (_upstream, up_port) = upstream(&scratch.0)?;
    point_at_upstream(&file, up_port)?;
    let sample_key = first_key(&file)?;
    eprintln!("bench: starting Postgres");
    // Tests get 16 MB of shared buffers; a million consumers and their keys want more.
    let pg = Postgres::start_with_settings(&[("shared_buffers", "256MB")]);
    eprintln!("bench: Postgres {} on port {}", pg.version(), pg.port());
    let ctx = Ctx {
        bin: &bin,
        dir: &scratch.0,
        file: &file,
        pg: &pg,
        consumers,
        sample_key: &sample_key,
    };
    let report = match measure(&ctx) {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "bench: admin failed; the end of the Postgres log:\n{}",
                log_tail(&pg.log(), 40)
            );
            return Err(e);
        }
    };
    write_results(&root, &report)
}

/// What every step needs.
pub(super) struct Ctx<'a> {
    pub(super) bin: &'a Path,
    pub(super) dir: &'a Path,
    pub(super) file: &'a Path,
    pub(super) pg: &'a Postgres,
    pub(super) consumers: usize,
    /// user-0's key: user-0 is in group gold, so the key passes key-auth and acl.
    pub(super) sample_key: &'a str,
}

/// The measurements: the table and the raw numbers.
struct Report {
    setup: String,
    table: String,
    raw: Value,
    /// Every boot, per mode, for the chart.
    boots: Vec<(String, Vec<Boot>)>,
}

fn measure(ctx: &Ctx<'_>) -> Result<Report> {
    let mut notes: Vec<String> = Vec::new();

    // 1. db_import.
    gangway_db(ctx, &["migrations", "bootstrap"])?;
    eprintln!("bench: db_import of {} consumers", ctx.consumers);
    let began = Instant::now();
    let out = gangway_db(ctx, &["config", "db_import", &ctx.file.to_string_lossy()])?;
    let import_s = began.elapsed().as_secs_f64();
    let counts: BTreeMap<String, u64> = out
        .lines()
        .filter_map(|l| {
            let (kind, n) = l.split_once(": ")?;
            Some((kind.trim().to_string(), n.trim().parse().ok()?))
        })
        .collect();
    let entities: u64 = counts.values().sum();
    eprintln!("bench: db_import took {import_s:.2} s ({entities} entities: {counts:?})");
    if entities == 0 {
        bail!("db_import printed no entity counts:\n{out}");
    }

    // 2. Boot, DB-less and from Postgres, interleaved; the last Postgres node stays up.
    let mut boots: BTreeMap<&str, Vec<Boot>> = BTreeMap::new();
    let mut pg_node = None;
    for round in 1..=BOOTS {
        for mode in [Mode::DbLess, Mode::Postgres] {
            let node = Node::start(ctx, mode, round)?;
            eprintln!(
                "bench: boot {round} {}: ready in {:.3} s, RSS {:.1} MB, imported key at the proxy: {}",
                mode.name(),
                node.boot.ready_s,
                node.boot.rss_mb,
                node.boot.sample_status
            );
            if node.boot.sample_status != 200 {
                notes.push(format!(
                    "{} node (boot {round}): GET / with user-0's imported key answered {} (expected 200)",
                    mode.name(),
                    node.boot.sample_status
                ));
            }
            boots
                .entry(mode.name())
                .or_default()
                .push(node.boot.clone());
            if mode == Mode::Postgres && round == BOOTS {
                pg_node = Some(node);
            }
        }
    }
    let node = pg_node.context("no Postgres node")?;
    let med = |mode: Mode, f: fn(&Boot) -> f64| {
        percentile(boots[mode.name()].iter().map(f).collect(), 50.0)
    };
    let (pg_ready, dbless_ready) = (
        med(Mode::Postgres, |b| b.ready_s),
        med(Mode::DbLess, |b| b.ready_s),
    );
    let (pg_rss, dbless_rss) = (
        med(Mode::Postgres, |b| b.rss_mb),
        med(Mode::DbLess, |b| b.rss_mb),
    );

    // 3. List latency at N (before the creations below add consumers).
    let mut admin = Http::new(node.admin);
    let list = list_latency(&mut admin, ctx.consumers)?;
    notes.extend(list.notes.iter().cloned());

    // 4. Create rate.
    eprintln!("bench: {SEQ_CREATES} sequential creations");
    let seq = sequential_creates(&mut admin)?;
    eprintln!(
        "bench: sequential: {:.0}/s, {} errors",
        seq.rate(),
        seq.errors.len()
    );
    eprintln!("bench: {CONC_CREATES} creations from {CONC_CLIENTS} clients");
    let conc = concurrent_creates(node.admin)?;
    eprintln!(
        "bench: concurrent: {:.0}/s, {} errors",
        conc.rate(),
        conc.errors.len()
    );
    for (what, run) in [("sequential", &seq), ("concurrent", &conc)] {
        if !run.errors.is_empty() {
            notes.push(format!(
                "{what} creations: {} of {} failed; first: {}",
                run.errors.len(),
                run.count,
                run.errors[0]
            ));
        }
    }

    // 5. Create-to-visible.
    eprintln!("bench: create-to-visible for {VISIBLE_CREATES} keys");
    let vis = visible_latency(&mut admin, node.proxy)?;
    eprintln!(
        "bench: visible: median {:.2} ms, p99 {:.2} ms, {} not visible within {} s, {} creation errors",
        vis.median_ms(),
        vis.p99_ms(),
        vis.timeouts,
        VISIBLE_LIMIT.as_secs(),
        vis.errors.len()
    );
    if !vis.errors.is_empty() {
        notes.push(format!(
            "create-to-visible: {} creations failed; first: {}",
            vis.errors.len(),
            vis.errors[0]
        ));
    }
    if vis.timeouts > 0 {
        notes.push(format!(
            "create-to-visible: {} of {} keys did not work at the proxy within {} s (statuses seen: {:?})",
            vis.timeouts,
            VISIBLE_CREATES,
            VISIBLE_LIMIT.as_secs(),
            vis.statuses
        ));
    }
    drop(node);

    let n = ctx.consumers;
    let setup = format!(
        "{n} consumers from `cargo xtask gen-config --consumers {n}` (one key-auth key each, every \
         10th an ACL group; route `/` with key-auth (header `apikey`) and acl, its service \
         pointed at an nginx upstream); {entities} entities in all. Postgres {} started by the \
         bench (fsync=off, full_page_writes=off, shared_buffers=256MB), 1 gangway worker, log level error. Clients: \
         blocking HTTP/1.1, one keep-alive connection each. A creation = POST /consumers + POST \
         /consumers/{{username}}/key-auth. Boot: {BOOTS} boots per mode, interleaved, medians.",
        ctx.pg.version()
    );
    let mut table = String::new();
    let _ = writeln!(table, "| measurement | result | note |\n|---|---|---|");
    let mut row = |m: String, r: String, note: &str| {
        let _ = writeln!(table, "| {m} | {r} | {note} |");
    };
    row(
        format!("db_import, {n} consumers ({entities} entities)"),
        format!(
            "{import_s:.2} s, {:.0} entities/s",
            entities as f64 / import_s
        ),
        "one transaction",
    );
    row(
        "boot to /status/ready, from Postgres".into(),
        format!("{pg_ready:.3} s"),
        "",
    );
    row(
        "boot to /status/ready, DB-less (same file)".into(),
        format!("{dbless_ready:.3} s"),
        "",
    );
    row(
        "boot time, Postgres / DB-less".into(),
        format!("{:.2}x", pg_ready / dbless_ready),
        "",
    );
    row(
        "RSS once ready, from Postgres".into(),
        format!("{pg_rss:.1} MB"),
        "",
    );
    row(
        "RSS once ready, DB-less".into(),
        format!("{dbless_rss:.1} MB"),
        "",
    );
    row(
        "RSS, Postgres / DB-less".into(),
        format!("{:.2}x", pg_rss / dbless_rss),
        goal(pg_rss / dbless_rss),
    );
    row(
        format!("GET /consumers?size=100, page 1 (median of {LIST_SAMPLES})"),
        format!("{:.2} ms", list.first_ms),
        "",
    );
    match &list.deep {
        Some(deep) => {
            row(
                format!(
                    "GET /consumers?size=100, page {} (~{:.0}% of N), reached by `next`",
                    deep.page,
                    deep.page as f64 * 100.0 * 100.0 / n as f64
                ),
                format!(
                    "{:.2} ms (then median of {DEEP_REPEATS} repeats: {:.2} ms)",
                    deep.last_ms, deep.repeat_ms
                ),
                "Kong: 18 s for a deep page at 500k consumers (Kong issue #9117)",
            );
            row(
                format!("walking pages 1..{} with `next`", deep.page),
                format!(
                    "{:.2} s ({:.2} ms/page)",
                    deep.walk_s,
                    deep.walk_s * 1000.0 / deep.page as f64
                ),
                "",
            );
        }
        None => row(
            "GET /consumers?size=100, deep page".into(),
            "not reached".into(),
            "see notes",
        ),
    }
    row(
        format!("Admin API creations, sequential ({SEQ_CREATES})"),
        format!(
            "{:.0}/s (per creation p50 {:.2} ms, p99 {:.2} ms)",
            seq.rate(),
            seq.pct_ms(50.0),
            seq.pct_ms(99.0)
        ),
        &format!("{} errors", seq.errors.len()),
    );
    row(
        format!("Admin API creations, {CONC_CLIENTS} concurrent clients ({CONC_CREATES})"),
        format!(
            "{:.0}/s (per creation p50 {:.2} ms, p99 {:.2} ms)",
            conc.rate(),
            conc.pct_ms(50.0),
            conc.pct_ms(99.0)
        ),
        &format!("{} errors", conc.errors.len()),
    );
    row(
        format!("create-to-visible at the proxy ({VISIBLE_CREATES} keys, 1 ms polls)"),
        format!(
            "median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            vis.median_ms(),
            vis.p99_ms(),
            vis.max_ms()
        ),
        &format!(
            "{} not visible within {} s, {} creation errors",
            vis.timeouts,
            VISIBLE_LIMIT.as_secs(),
            vis.errors.len()
        ),
    );
    if !notes.is_empty() {
        table.push_str("\nNotes:\n\n");
        for note in &notes {
            let _ = writeln!(table, "- {note}");
        }
    }
    let boot_json = |mode: Mode| -> Vec<Value> {
        boots[mode.name()]
            .iter()
            .map(|b| json!({"ready_s": b.ready_s, "rss_mb": b.rss_mb, "sample_key_status": b.sample_status}))
            .collect()
    };
    let raw = json!({
        "consumers": n,
        "db_import": {"seconds": import_s, "entities": entities, "counts": counts},
        "boot": {
            "postgres": boot_json(Mode::Postgres),
            "dbless": boot_json(Mode::DbLess),
            "median_ready_s": {"postgres": pg_ready, "dbless": dbless_ready},
            "median_rss_mb": {"postgres": pg_rss, "dbless": dbless_rss},
        },
        "list": {
            "first_page_ms": list.first_samples_ms,
            "deep": list.deep.as_ref().map(|d| json!({
                "page": d.page, "last_ms": d.last_ms, "repeats_ms": d.repeats_ms, "walk_s": d.walk_s,
            })),
        },
        "create_sequential": seq.json(),
        "create_concurrent": conc.json(),
        "create_to_visible": {
            "latencies_ms": vis.latencies_ms,
            "timeouts": vis.timeouts,
            "statuses_seen": vis.statuses,
            "errors": vis.errors,
        },
        "notes": notes,
    });
    let boots = [Mode::DbLess, Mode::Postgres]
        .map(|mode| (mode.name().to_owned(), boots[mode.name()].clone()))
        .to_vec();
    Ok(Report {
        setup,
        table,
        raw,
        boots,
    })
}

/// The last `n` lines of `log`.
fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Issue 9's memory goal: a node loaded from Postgres within 10% of the same config loaded
/// from a file.
fn goal(ratio: f64) -> &'static str {
    if ratio <= 1.10 {
        "goal: within 10% (met)"
    } else {
        "goal: within 10% (NOT met)"
    }
}

fn write_results(root: &Path, report: &Report) -> Result<()> {
    println!("\n{}\n\n{}", report.setup, report.table);
    let mut raw = report.raw.clone();
    raw["setup"] = json!(report.setup);
    let (names, rounds): (Vec<String>, Vec<Vec<Boot>>) = report.boots.iter().cloned().unzip();
    super::chart::write_panels(
        &root.join("benches/results/admin-latest.svg"),
        "cargo xtask bench admin: boot, DB-less against Postgres",
        &names,
        &[
            (
                "seconds from start to /status/ready (bar: median; whiskers: fastest and slowest boot)",
                super::chart::spread(&rounds, |b| b.ready_s),
            ),
            (
                "RSS once ready, MB (bar: median; whiskers: lowest and highest boot)",
                super::chart::spread(&rounds, |b| b.rss_mb),
            ),
        ],
    )?;
    super::save_results(
        root,
        "admin",
        raw,
        &format!(
            "![boot time and memory per mode](admin-latest.svg)\n\n{}\n\n{}",
            report.setup, report.table
        ),
    )
}

/// The scratch directory, removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new() -> Result<Scratch> {
        let dir = scratch_dir()?;
        // The postgres user must reach its subdirectories.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the N-consumer file with this very xtask's `gen-config`, with `extra` flags.
pub(super) fn gen_config(consumers: usize, file: &Path, extra: &[&str]) -> Result<()> {
    let status = Command::new(std::env::current_exe()?)
        .args(["gen-config", "--consumers", &consumers.to_string()])
        .args(extra)
        .arg("--out")
        .arg(file)
        .status()
        .context("running xtask gen-config")?;
    if !status.success() {
        bail!("xtask gen-config failed ({status})");
    }
    Ok(())
}

/// gen-config's service points at 127.0.0.1:9000, where nothing listens here: point it at
/// the bench's upstream so a request with a valid key answers 200.
pub(super) fn point_at_upstream(file: &Path, port: u16) -> Result<()> {
    const URL: &str = "url: http://127.0.0.1:9000\n";
    let text = std::fs::read_to_string(file)?;
    // The service comes before the consumers, in the first lines.
    let at = text
        .find(URL)
        .filter(|&at| at < 4096)
        .with_context(|| format!("{}: no service {URL:?} near the top", file.display()))?;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..at]);
    let _ = writeln!(out, "url: http://127.0.0.1:{port}");
    out.push_str(&text[at + URL.len()..]);
    std::fs::write(file, out)?;
    Ok(())
}

/// The first consumer's key (user-0, in group gold, so its key passes the route's acl).
pub(super) fn first_key(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)?;
    let mut lines = text.lines();
    lines
        .find(|l| l.trim() == "- username: user-0")
        .context("no user-0 in the generated file")?;
    let key = lines
        .take(4)
        .find_map(|l| l.trim().strip_prefix("- key: "))
        .context("no key under user-0 in the generated file")?;
    Ok(key.to_string())
}

/// Runs a `gangway` database command (`migrations ...`, `config ...`) against the bench's
/// Postgres; returns its stdout.
pub(super) fn gangway_db(ctx: &Ctx<'_>, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(ctx.bin);
    clean_env(&mut cmd);
    let out = cmd
        .args(args)
        .envs(ctx.pg.gangway_env())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running gangway {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "gangway {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes gangway's and Kong's settings inherited from the caller's environment, so only the
/// bench's own apply.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("GANGWAY_") || k.starts_with("KONG_") {
            cmd.env_remove(k.as_ref());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    DbLess,
    Postgres,
}

impl Mode {
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::DbLess => "DB-less",
            Mode::Postgres => "Postgres",
        }
    }
}

#[derive(Clone)]
pub(super) struct Boot {
    pub(super) ready_s: f64,
    /// The process's CPU time (user and system) until ready.
    pub(super) cpu_s: f64,
    pub(super) rss_mb: f64,
    /// The proxy's status for `GET /` with user-0's key, once ready.
    pub(super) sample_status: u16,
    /// Its `X-RateLimit-Limit-Month` header, if any (user-0's plan, where it has one).
    pub(super) sample_month_limit: Option<String>,
}

/// A running gangway node.
pub(super) struct Node {
    proxy: u16,
    admin: u16,
    pub(super) boot: Boot,
    // Last: the process is stopped when the node is dropped.
    _proc: Proc,
}

impl Node {
    /// Starts a node, DB-less from the file or on the bench's Postgres, and waits for
    /// `/status/ready` 200.
    pub(super) fn start(ctx: &Ctx<'_>, mode: Mode, round: usize) -> Result<Node> {
        let (proxy, admin, status) = (free_port()?, free_port()?, free_port()?);
        let name = format!("gangway-{}-{round}", mode.name());
        let prefix = ctx.dir.join(&name);
        std::fs::create_dir_all(&prefix)?;
        let mut cmd = Command::new(ctx.bin);
        clean_env(&mut cmd);
        cmd.arg("start")
            .env("GANGWAY_PROXY_LISTEN", format!("127.0.0.1:{proxy}"))
            .env("GANGWAY_STATUS_LISTEN", format!("127.0.0.1:{status}"))
            .env("GANGWAY_WORKERS", "1")
            .env("GANGWAY_LOG_LEVEL", "error")
            .env("GANGWAY_PREFIX", &prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match mode {
            Mode::DbLess => {
                cmd.env("GANGWAY_ADMIN_LISTEN", "off")
                    .env("GANGWAY_DECLARATIVE_CONFIG", ctx.file);
            }
            Mode::Postgres => {
                cmd.env("GANGWAY_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
                    .envs(ctx.pg.gangway_env());
            }
        }
        let began = Instant::now();
        let child = cmd.spawn().context("starting gangway")?;
        let mut proc_ = Proc {
            child,
            name: name.clone(),
            status: Some(status),
        };
        let mut http = Http::new(status);
        loop {
            if let Ok(Some(exit)) = proc_.child.try_wait() {
                bail!("{name} exited ({exit}) before /status/ready answered 200");
            }
            if http
                .call("GET", "/status/ready", &[], None)
                .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            if began.elapsed() > BOOT_LIMIT {
                bail!(
                    "{name}: /status/ready not 200 within {} s",
                    BOOT_LIMIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let ready_s = began.elapsed().as_secs_f64();
        let cpu_s = proc_.cpu_seconds();
        let rss = rss_mb(proc_.child.id());
        let sample = Http::new(proxy)
            .call("GET", "/", &[("apikey", ctx.sample_key)], None)
            .ok();
        let sample_status = sample.as_ref().map_or(0, |r| r.status);
        let sample_month_limit = sample
            .as_ref()
            .and_then(|r| r.header("x-ratelimit-limit-month"))
            .map(str::to_owned);
        Ok(Node {
            proxy,
            admin,
            boot: Boot {
                ready_s,
                cpu_s,
                rss_mb: rss,
                sample_status,
                sample_month_limit,
            },
            _proc: proc_,
        })
    }
}

struct DeepPage {
    page: usize,
    last_ms: f64,
    repeats_ms: Vec<f64>,
    repeat_ms: f64,
    walk_s: f64,
}

struct ListLatency {
    first_samples_ms: Vec<f64>,
    first_ms: f64,
    deep: Option<DeepPage>,
    notes: Vec<String>,
}

/// Page 1 [`LIST_SAMPLES`] times, then pages 1, 2, ... by `next` up to the page at about 90%
/// of `consumers`.
fn list_latency(admin: &mut Http, consumers: usize) -> Result<ListLatency> {
    const FIRST: &str = "/consumers?size=100";
    eprintln!("bench: GET {FIRST} x {LIST_SAMPLES}");
    let mut first_samples_ms = Vec::new();
    for _ in 0..LIST_SAMPLES {
        let (ms, r) = timed(|| admin.call("GET", FIRST, &[], None))?;
        if r.status != 200 {
            bail!("GET {FIRST}: {} {}", r.status, r.text());
        }
        first_samples_ms.push(ms);
    }
    let first_ms = percentile(first_samples_ms.clone(), 50.0);
    let mut notes = Vec::new();
    let target = (consumers * 9 / 10).div_ceil(100).max(2);
    eprintln!("bench: walking to page {target} by `next`");
    let began = Instant::now();
    let mut path = FIRST.to_string();
    let mut last_ms = 0.0;
    let mut reached = None;
    for page in 1..=target {
        let (ms, r) = timed(|| admin.call("GET", &path, &[], None))?;
        if r.status != 200 {
            bail!("GET {path} (page {page}): {} {}", r.status, r.text());
        }
        last_ms = ms;
        if page == target {
            reached = Some(page);
            break;
        }
        let body = r.json()?;
        let data_len = body["data"].as_array().map_or(0, Vec::len);
        if data_len != 100 {
            notes.push(format!(
                "page {page} of /consumers?size=100 had {data_len} entries (expected 100)"
            ));
        }
        path = match (body["next"].as_str(), body["offset"].as_str()) {
            (Some(next), _) => next.to_string(),
            (None, Some(offset)) => format!("{FIRST}&offset={}", percent_encode(offset)),
            (None, None) => {
                notes.push(format!(
                    "/consumers?size=100 ended at page {page}, before page {target}"
                ));
                break;
            }
        };
        if page % 100 == 0 {
            eprintln!(
                "bench: page {page}/{target}, {:.1} s",
                began.elapsed().as_secs_f64()
            );
        }
        if began.elapsed() > WALK_LIMIT {
            notes.push(format!(
                "walking /consumers stopped at page {page} after {} s",
                WALK_LIMIT.as_secs()
            ));
            break;
        }
    }
    let walk_s = began.elapsed().as_secs_f64();
    let deep = match reached {
        Some(page) => {
            let mut repeats_ms = Vec::new();
            for _ in 0..DEEP_REPEATS {
                let (ms, r) = timed(|| admin.call("GET", &path, &[], None))?;
                if r.status != 200 {
                    bail!("GET {path} (repeat): {} {}", r.status, r.text());
                }
                repeats_ms.push(ms);
            }
            let repeat_ms = percentile(repeats_ms.clone(), 50.0);
            eprintln!(
                "bench: page {page}: {last_ms:.2} ms (repeats: median {repeat_ms:.2} ms), walk {walk_s:.2} s"
            );
            Some(DeepPage {
                page,
                last_ms,
                repeats_ms,
                repeat_ms,
                walk_s,
            })
        }
        None => None,
    };
    Ok(ListLatency {
        first_samples_ms,
        first_ms,
        deep,
        notes,
    })
}

/// Creations from one or more clients.
struct Creates {
    count: usize,
    wall_s: f64,
    /// Each successful creation's latency (both POSTs).
    latencies_ms: Vec<f64>,
    errors: Vec<String>,
}

impl Creates {
    fn rate(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall_s
    }

    fn pct_ms(&self, p: f64) -> f64 {
        percentile(self.latencies_ms.clone(), p)
    }

    fn json(&self) -> Value {
        json!({
            "count": self.count,
            "ok": self.latencies_ms.len(),
            "wall_s": self.wall_s,
            "per_second": self.rate(),
            "p50_ms": self.pct_ms(50.0),
            "p99_ms": self.pct_ms(99.0),
            "errors": self.errors.iter().take(20).collect::<Vec<_>>(),
            "error_count": self.errors.len(),
        })
    }
}

/// POST /consumers, optionally POST /consumers/{u}/acls, then POST /consumers/{u}/key-auth;
/// each must answer 201. The error names the failing call, its status and body.
fn create(admin: &mut Http, user: &str, key: &str, group: Option<&str>) -> Result<(), String> {
    let mut post = |path: &str, body: Value| -> Result<(), String> {
        match admin.call("POST", path, &[], Some(&body)) {
            Ok(r) if r.status == 201 => Ok(()),
            Ok(r) => Err(format!("POST {path} {body} -> {} {}", r.status, r.text())),
            Err(e) => Err(format!("POST {path} {body} -> {e:#}")),
        }
    };
    post("/consumers", json!({"username": user}))?;
    if let Some(group) = group {
        post(&format!("/consumers/{user}/acls"), json!({"group": group}))?;
    }
    post(&format!("/consumers/{user}/key-auth"), json!({"key": key}))
}

fn sequential_creates(admin: &mut Http) -> Result<Creates> {
    let began = Instant::now();
    let mut latencies_ms = Vec::new();
    let mut errors = Vec::new();
    for i in 0..SEQ_CREATES {
        let t = Instant::now();
        match create(
            admin,
            &format!("bench-seq-{i}"),
            &format!("bench-seq-key-{i:019}"),
            None,
        ) {
            Ok(()) => latencies_ms.push(ms_since(t)),
            Err(e) => errors.push(e),
        }
    }
    Ok(Creates {
        count: SEQ_CREATES,
        wall_s: began.elapsed().as_secs_f64(),
        latencies_ms,
        errors,
    })
}

fn concurrent_creates(port: u16) -> Result<Creates> {
    let per_client = CONC_CREATES / CONC_CLIENTS;
    let barrier = Barrier::new(CONC_CLIENTS + 1);
    let (results, wall_s) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CONC_CLIENTS)
            .map(|c| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut admin = Http::new(port);
                    // Open the connection before the clock starts.
                    let _ = admin.connect();
                    barrier.wait();
                    let mut latencies_ms = Vec::new();
                    let mut errors = Vec::new();
                    for i in 0..per_client {
                        let t = Instant::now();
                        match create(
                            &mut admin,
                            &format!("bench-conc-{c}-{i}"),
                            &format!("bench-conc-key-{c:02}-{i:016}"),
                            None,
                        ) {
                            Ok(()) => latencies_ms.push(ms_since(t)),
                            Err(e) => errors.push(e),
                        }
                    }
                    (latencies_ms, errors)
                })
            })
            .collect();
        barrier.wait();
        let began = Instant::now();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (results, began.elapsed().as_secs_f64())
    });
    let mut latencies_ms = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        let (l, e) = r.map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        latencies_ms.extend(l);
        errors.extend(e);
    }
    Ok(Creates {
        count: per_client * CONC_CLIENTS,
        wall_s,
        latencies_ms,
        errors,
    })
}

struct Visible {
    latencies_ms: Vec<f64>,
    timeouts: usize,
    /// Every status seen while polling (how many times), e.g. 401 before the key arrives.
    statuses: BTreeMap<String, u64>,
    errors: Vec<String>,
}

impl Visible {
    fn median_ms(&self) -> f64 {
        percentile(self.latencies_ms.clone(), 50.0)
    }

    fn p99_ms(&self) -> f64 {
        percentile(self.latencies_ms.clone(), 99.0)
    }

    fn max_ms(&self) -> f64 {
        percentile(self.latencies_ms.clone(), 100.0)
    }
}

/// For each new consumer: created with the allowed ACL group, then its key; from the key's
/// 201, `GET /` with the key at the proxy every millisecond until 200.
fn visible_latency(admin: &mut Http, proxy_port: u16) -> Result<Visible> {
    let mut proxy = Http::new(proxy_port);
    let mut v = Visible {
        latencies_ms: Vec::new(),
        timeouts: 0,
        statuses: BTreeMap::new(),
        errors: Vec::new(),
    };
    for i in 0..VISIBLE_CREATES {
        let key = format!("bench-vis-key-{i:018}");
        if let Err(e) = create(admin, &format!("bench-vis-{i}"), &key, Some(ALLOWED_GROUP)) {
            v.errors.push(e);
            continue;
        }
        let t = Instant::now();
        loop {
            let status = proxy
                .call("GET", "/", &[("apikey", &key)], None)
                .map_or_else(|_| "error".to_string(), |r| r.status.to_string());
            *v.statuses.entry(status.clone()).or_default() += 1;
            if status == "200" {
                v.latencies_ms.push(ms_since(t));
                break;
            }
            if t.elapsed() > VISIBLE_LIMIT {
                v.timeouts += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if (i + 1) % 50 == 0 {
            eprintln!("bench: visible {}/{VISIBLE_CREATES}", i + 1);
        }
    }
    Ok(v)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let out = f()?;
    Ok((ms_since(t), out))
}

/// Nearest-rank percentile; NaN for no samples.
fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(v.clone(), 50.0), 100.0);
        assert_eq!(percentile(v.clone(), 99.0), 198.0);
        assert_eq!(percentile(v, 100.0), 200.0);
        assert!(percentile(Vec::new(), 50.0).is_nan());
    }

    #[test]
    fn offsets_are_percent_encoded() {
        assert_eq!(percent_encode("ab+/=c"), "ab%2B%2F%3Dc");
    }
}
