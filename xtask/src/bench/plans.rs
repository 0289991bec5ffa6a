//! `cargo xtask bench plans`: what per-consumer plans cost a node's config load. Issue 10's
//! goal: at 100,000 consumers with a rate-limiting instance each, the load stays within 2x
//! of the same config without them, and memory grows by less than 1 KB per instance.
//!
//! Two files from `cargo xtask gen-config --consumers N` (each consumer with a key-auth key,
//! every 10th with an ACL group): `base`, and `plans`, the same with `--plans` (each consumer
//! also gets its own rate-limiting instance, a monthly limit of 10,000, 100,000 or 1,000,000
//! in turn). Each is loaded DB-less and, after `gangway config db_import` into a Postgres of
//! its own, from Postgres: `gangway start` (one worker) until `/status/ready` answers 200,
//! [`BOOTS`] times each, the four interleaved. Each boot is checked with user-0's key: 200,
//! and its plan's `X-RateLimit-Limit-Month` exactly where it has one. Reported: time to
//! ready, the process's CPU until then, and VmRSS once ready (medians); the plans/base ratio
//! of each, and the RSS difference per instance.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use serde_json::json;

use super::admin::{Boot, Ctx, Mode, Node, Scratch, first_key, gangway_db, gen_config};
use super::{build_release, median, upstream};
use gangway_test_support::postgres::Postgres;

/// Boots per mode and file.
const BOOTS: usize = 5;
/// Issue 10's bound on the plans/base load ratio.
const LOAD_GOAL: f64 = 2.0;
/// Issue 10's bound on the memory per instance, bytes.
const MEMORY_GOAL: f64 = 1024.0;
/// user-0's plan: gen-config hands out 10,000 a month to consumers 0, 3, 6, ...
const USER0_MONTH_LIMIT: &str = "10000";

/// The two files.
const FILES: [(&str, &[&str]); 2] = [("base", &[]), ("plans", &["--plans"])];

/// Runs `cargo xtask bench plans --consumers <consumers>`.
pub fn run(consumers: usize) -> Result<()> {
    let (root, bin) = build_release()?;
    // Declared first, so dropped last: every process below is gone before it is removed.
    let scratch = Scratch::new()?;
    let (_upstream, up_port) = upstream(&scratch.0)?;
    let mut files = Vec::new();
    for (name, flags) in FILES {
        let file = scratch.0.join(format!("{name}.yml"));
        gen_config(consumers, &file, flags)?;
        super::admin::point_at_upstream(&file, up_port)?;
        files.push(file);
    }
    // The same seed gives both files the same keys.
    let sample_key = first_key(&files[0])?;
    eprintln!("bench: starting a Postgres per file");
    let servers: Vec<Postgres> = FILES
        .iter()
        .map(|_| Postgres::start_with_settings(&[("shared_buffers", "256MB")]))
        .collect();
    let ctxs: Vec<Ctx<'_>> = files
        .iter()
        .zip(&servers)
        .map(|(file, pg)| Ctx {
            bin: &bin,
            dir: &scratch.0,
            file,
            pg,
            consumers,
            sample_key: &sample_key,
        })
        .collect();
    for (ctx, (name, _)) in ctxs.iter().zip(FILES) {
        gangway_db(ctx, &["migrations", "bootstrap"])?;
        eprintln!("bench: db_import of {name}");
        gangway_db(ctx, &["config", "db_import", &ctx.file.to_string_lossy()])?;
    }

    let modes = [Mode::DbLess, Mode::Postgres];
    let mut boots: Vec<Vec<Vec<Boot>>> = vec![vec![Vec::new(); FILES.len()]; modes.len()];
    for round in 1..=BOOTS {
        for (m, mode) in modes.iter().enumerate() {
            for (f, ctx) in ctxs.iter().enumerate() {
                let node = Node::start(ctx, *mode, round)?;
                let b = node.boot.clone();
                drop(node);
                let name = FILES[f].0;
                eprintln!(
                    "bench: boot {round} {} {name}: ready in {:.3} s, CPU {:.2} s, RSS {:.1} MB",
                    mode.name(),
                    b.ready_s,
                    b.cpu_s,
                    b.rss_mb
                );
                let expected = (name == "plans").then_some(USER0_MONTH_LIMIT);
                if b.sample_status != 200 || b.sample_month_limit.as_deref() != expected {
                    bail!(
                        "{} {name}: user-0's request answered {} with X-RateLimit-Limit-Month {:?} (expected 200 and {expected:?})",
                        mode.name(),
                        b.sample_status,
                        b.sample_month_limit
                    );
                }
                boots[m][f].push(b);
            }
        }
    }
    write_results(&root, consumers, &modes, &boots)
}

/// Medians of one mode and file.
struct Medians {
    ready_s: f64,
    cpu_s: f64,
    rss_mb: f64,
}

fn medians(boots: &[Boot]) -> Medians {
    let of = |f: fn(&Boot) -> f64| median(boots.iter().map(f).collect());
    Medians {
        ready_s: of(|b| b.ready_s),
        cpu_s: of(|b| b.cpu_s),
        rss_mb: of(|b| b.rss_mb),
    }
}

fn verdict(held: bool) -> &'static str {
    if held { "met" } else { "missed" }
}

fn write_results(
    root: &std::path::Path,
    consumers: usize,
    modes: &[Mode],
    boots: &[Vec<Vec<Boot>>],
) -> Result<()> {
    let mut table =
        String::from("| load | file | ready s | CPU s | RSS MB |\n|---|---|---|---|---|\n");
    let mut ratios = format!(
        "| load | ready, plans / base | CPU, plans / base | RSS per instance | goals (load <= {LOAD_GOAL}x, < 1 KB) |\n|---|---|---|---|---|\n"
    );
    let mut raw = serde_json::Map::new();
    for (m, mode) in modes.iter().enumerate() {
        let [base, plans] = [medians(&boots[m][0]), medians(&boots[m][1])];
        for ((name, _), med) in FILES.iter().zip([&base, &plans]) {
            let _ = writeln!(
                table,
                "| {} | {name} | {:.3} | {:.2} | {:.1} |",
                mode.name(),
                med.ready_s,
                med.cpu_s,
                med.rss_mb
            );
        }
        let ready = plans.ready_s / base.ready_s;
        let cpu = plans.cpu_s / base.cpu_s;
        let per_instance = (plans.rss_mb - base.rss_mb) * 1024.0 * 1024.0 / consumers as f64;
        let _ = writeln!(
            ratios,
            "| {} | {ready:.2}x | {cpu:.2}x | {per_instance:.0} B | load {}, memory {} |",
            mode.name(),
            verdict(ready <= LOAD_GOAL),
            verdict(per_instance < MEMORY_GOAL),
        );
        let every = |f: usize| {
            boots[m][f]
                .iter()
                .map(|b| json!({"ready_s": b.ready_s, "cpu_s": b.cpu_s, "rss_mb": b.rss_mb}))
                .collect::<Vec<_>>()
        };
        raw.insert(
            mode.name().to_owned(),
            json!({
                "base": every(0),
                "plans": every(1),
                "ready_ratio": ready,
                "cpu_ratio": cpu,
                "rss_bytes_per_instance": per_instance,
            }),
        );
    }
    let mut rounds = String::from("Every boot (ready s / CPU s / RSS MB):\n\n| load | file |");
    for r in 1..=BOOTS {
        let _ = write!(rounds, " boot {r} |");
    }
    let _ = write!(rounds, "\n|---|---|{}\n", "---|".repeat(BOOTS));
    for (m, mode) in modes.iter().enumerate() {
        for (f, (name, _)) in FILES.iter().enumerate() {
            let _ = write!(rounds, "| {} | {name} |", mode.name());
            for b in &boots[m][f] {
                let _ = write!(
                    rounds,
                    " {:.3} / {:.2} / {:.1} |",
                    b.ready_s, b.cpu_s, b.rss_mb
                );
            }
            rounds.push('\n');
        }
    }
    let setup = format!(
        "{consumers} consumers, each with a key-auth key (every 10th with an ACL group), from \
         `cargo xtask gen-config`; `plans` gives each its own rate-limiting instance (a \
         consumer-scoped plugin; three distinct configs). `gangway start`, one worker, until \
         `/status/ready` answers 200, {BOOTS} boots per load and file, interleaved; each \
         checked with a request (200, and user-0's plan's X-RateLimit-Limit-Month where it \
         has one). Postgres: each file `gangway config db_import`ed into a server of its own. \
         Medians shown; ready time includes process start."
    );
    let markdown = format!("{setup}\n\n{table}\n{ratios}\n{rounds}");
    print!("{markdown}");
    super::save_results(
        root,
        "plans",
        json!({"consumers": consumers, "modes": raw}),
        &markdown,
    )
}
