//! `cargo xtask bench connections`: what a client connection costs in memory, gangway beside
//! nginx, one worker each. Each round opens `--clients` connections (measured idle), sends one
//! keep-alive request on each (measured again), then closes them all (measured once the
//! process has seen the closes). The round's figures are RSS growth per connection and the
//! RSS left after the clients close; rounds repeat so growth that is never given back shows.
//! Each contender runs twice: in front of a keep-alive upstream, and of one that closes every
//! connection (each request then opens an upstream connection). With `--burst` every
//! request is written before any answer is read, so all of them are in flight at once.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Proc, build_release, free_port, gangway, nginx, plain_config, scratch_dir, wait_port};

/// How long the process gets to settle after connections open or close, before RSS is read.
const SETTLE: Duration = Duration::from_millis(1500);

/// RSS in KiB of a contender's worker processes (nginx's master is left out: it holds no
/// connection).
fn worker_rss_kib(proc_: &Proc) -> f64 {
    let pids = proc_.pids();
    let workers = if pids.len() > 1 {
        &pids[1..]
    } else {
        &pids[..]
    };
    workers
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .sum()
}

/// One round's readings, in KiB.
#[derive(Clone, Copy, Default)]
struct Round {
    before: f64,
    idle: f64,
    after_request: f64,
    closed: f64,
}

/// Sends one keep-alive request on `stream` and reads its whole answer (Content-Length
/// framed, as both upstreams answer).
pub(super) fn one_request(stream: &mut TcpStream) -> Result<()> {
    send_request(stream)?;
    read_answer(stream)
}

fn send_request(stream: &mut TcpStream) -> Result<()> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: gangway-bench\r\n\r\n")?;
    Ok(())
}

fn read_answer(stream: &mut TcpStream) -> Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            bail!("the proxy closed the connection before answering");
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            bail!(
                "unexpected answer: {}",
                head.lines().next().unwrap_or_default()
            );
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("answer without content-length")?;
        if buf.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

/// Runs `rounds` rounds of `clients` connections against `port`.
fn measure(
    proc_: &Proc,
    port: u16,
    clients: usize,
    rounds: usize,
    burst: bool,
) -> Result<Vec<Round>> {
    let mut out = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let mut r = Round {
            before: worker_rss_kib(proc_),
            ..Round::default()
        };
        let mut streams = Vec::with_capacity(clients);
        for _ in 0..clients {
            let s = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            streams.push(s);
        }
        sleep(SETTLE);
        r.idle = worker_rss_kib(proc_);
        if burst {
            for s in &mut streams {
                send_request(s)?;
            }
            for s in &mut streams {
                read_answer(s)?;
            }
        } else {
            for s in &mut streams {
                one_request(s)?;
            }
        }
        sleep(SETTLE);
        r.after_request = worker_rss_kib(proc_);
        drop(streams);
        sleep(SETTLE);
        r.closed = worker_rss_kib(proc_);
        eprintln!(
            "bench: round {round}: {:.2} KiB per idle connection, {:.2} KiB after a request, {:.1} MiB after close ({:+.1} MiB)",
            (r.idle - r.before) / clients as f64,
            (r.after_request - r.before) / clients as f64,
            r.closed / 1024.0,
            (r.closed - r.before) / 1024.0
        );
        out.push(r);
    }
    Ok(out)
}

/// The contenders and upstreams a run keeps; empty keeps them all.
pub struct Narrowed {
    pub kinds: Vec<String>,
    pub upstream: Option<String>,
}

impl Narrowed {
    fn keeps(&self, kind: &str, upstream: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && self.upstream.as_deref().is_none_or(|u| u == upstream)
    }

    fn is_narrowed(&self) -> bool {
        !self.kinds.is_empty() || self.upstream.is_some()
    }
}

/// Runs the benchmark: `clients` connections per round, `rounds` rounds per contender.
pub fn run(clients: usize, rounds: usize, burst: bool, narrowed: &Narrowed) -> Result<()> {
    let bench = match (burst, narrowed.is_narrowed()) {
        (true, false) => "connections-burst",
        (true, true) => "connections-burst-partial",
        (false, false) => "connections",
        (false, true) => "connections-partial",
    };
    let (root, bin) = build_release()?;
    let dir = scratch_dir()?;
    let (keepalive_up, closing_up) = (free_port()?, free_port()?);
    // In a burst every client's request has an upstream connection open at the same time.
    let connections = if burst {
        (2 * clients + 64).max(super::NGINX_CONNECTIONS)
    } else {
        super::NGINX_CONNECTIONS
    };
    let _upstream = nginx(
        &dir,
        "upstream",
        &format!(
            "  server {{ listen 127.0.0.1:{keepalive_up} reuseport backlog=4096; location / {{ return 200 \"hello from the upstream\\n\"; }} }}\n  \
             server {{ listen 127.0.0.1:{closing_up} reuseport backlog=4096; keepalive_timeout 0; location / {{ return 200 \"hello from the upstream\\n\"; }} }}"
        ),
        1,
        connections,
    )?;
    wait_port(keepalive_up, "upstream nginx")?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for (upstream, up_port) in [("keep-alive", keepalive_up), ("closing", closing_up)] {
        for kind in ["gangway-io_uring", "gangway-epoll", "nginx"] {
            if !narrowed.keeps(kind, upstream) {
                continue;
            }
            let name = format!("{kind} ({upstream} upstream)");
            let port = free_port()?;
            let proc_ = match kind {
                "nginx" => super::proxy::nginx_proxy(&dir, port, up_port, 1, None, connections)?,
                _ => gangway(
                    &bin,
                    &dir,
                    &format!("{kind}-{upstream}"),
                    kind.trim_start_matches("gangway-"),
                    port,
                    &plain_config(up_port),
                    1,
                )?,
            };
            wait_port(port, &name)?;
            // One request first, so the baseline is a process that has served.
            let mut first = TcpStream::connect(("127.0.0.1", port))?;
            one_request(&mut first)?;
            drop(first);
            sleep(SETTLE);
            let started = Instant::now();
            eprintln!("bench: {name}: {rounds} rounds of {clients} connections");
            let base = worker_rss_kib(&proc_);
            let rounds = match measure(&proc_, port, clients, rounds, burst) {
                Ok(rounds) => rounds,
                // A peer that drops clients under the burst is a result, not a broken bench.
                Err(e) if burst && kind == "nginx" => {
                    eprintln!("bench: {name}: failed: {e:#}");
                    failed.push(format!("- {name}: failed: {e:#}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            eprintln!("bench: {name}: {:.0} s", started.elapsed().as_secs_f64());
            results.push((name, base, rounds));
            drop(proc_);
        }
    }
    let mut table = report(clients, burst, &results);
    if !failed.is_empty() {
        let _ = writeln!(
            table,
            "\nContenders that did not finish:\n\n{}",
            failed.join("\n")
        );
    }
    println!("\n{table}");
    let raw: Vec<_> = results
        .iter()
        .map(|(name, base, rounds)| {
            json!({"name": name, "base_kib": base, "rounds": rounds.iter().map(|r| json!({
                "before_kib": r.before, "idle_kib": r.idle, "after_request_kib": r.after_request, "closed_kib": r.closed,
            })).collect::<Vec<_>>()})
        })
        .collect();
    let names: Vec<String> = results.iter().map(|(name, _, _)| name.clone()).collect();
    let rounds: Vec<Vec<(f64, Round)>> = results
        .iter()
        .map(|(_, base, rounds)| rounds.iter().map(|r| (*base, *r)).collect())
        .collect();
    let per_conn = clients as f64;
    std::fs::create_dir_all(root.join("benches/results"))?;
    super::chart::write_panels(
        &root.join(format!("benches/results/{bench}-latest.svg")),
        &format!(
            "cargo xtask bench connections{} ({clients} clients a round)",
            if burst { " --burst" } else { "" }
        ),
        &names,
        &[
            (
                "KiB per idle keep-alive connection, RSS with them open against the start (bar: median round; whiskers: lowest and highest)",
                super::chart::spread(&rounds, |(base, r)| (r.idle - base) / per_conn),
            ),
            (
                "MiB above the start after the clients closed (bar: median round; whiskers: lowest and highest)",
                super::chart::spread(&rounds, |(base, r)| ((r.closed - base) / 1024.0).max(0.0)),
            ),
        ],
    )?;
    super::save_results(
        &root,
        bench,
        json!({"clients": clients, "burst": burst, "contenders": raw}),
        &format!("![memory per connection]({bench}-latest.svg)\n\n{table}"),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The markdown report: per contender, the first round's cost per connection, the RSS after
/// the clients closed (against the baseline), and the closed RSS of every round.
fn report(clients: usize, burst: bool, results: &[(String, f64, Vec<Round>)]) -> String {
    let requests = if burst {
        "writes one keep-alive request on each before reading any answer (all in flight at once)"
    } else {
        "sends one keep-alive request on each"
    };
    let mut t = format!(
        "One worker each; each round opens {clients} connections, {requests}, then closes them all. \
         RSS of the worker process(es), read {:.1} s after each step.\n\n\
         | contender | RSS at start | per idle connection (round 1) | per connection after a request (round 1) | after close, round 1 | last round | last against round {} |\n|---|---|---|---|---|---|---|\n",
        SETTLE.as_secs_f64(),
        results.first().map_or(1, |r| r.2.len().min(5))
    );
    for (name, base, rounds) in results {
        let (Some(first), Some(last)) = (rounds.first(), rounds.last()) else {
            continue;
        };
        let reference = rounds.get(4).or(rounds.last()).copied().unwrap_or_default();
        let _ = writeln!(
            t,
            "| {name} | {:.1} MiB | {:.2} KiB | {:.2} KiB | {:.1} MiB ({:+.1}) | {:.1} MiB ({:+.1}) | {:.2}x |",
            base / 1024.0,
            (first.idle - first.before) / clients as f64,
            (first.after_request - first.before) / clients as f64,
            first.closed / 1024.0,
            (first.closed - base) / 1024.0,
            last.closed / 1024.0,
            (last.closed - base) / 1024.0,
            last.closed / reference.closed.max(1.0),
        );
    }
    t.push_str("\nRSS after each round's clients closed, MiB:\n\n");
    for (name, _, rounds) in results {
        let closed: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.1}", r.closed / 1024.0))
            .collect();
        let _ = writeln!(t, "- {name}: {}", closed.join(", "));
    }
    t
}
