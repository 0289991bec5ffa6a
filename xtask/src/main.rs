//! Project tasks: `cargo xtask test` (the full CI suite), `cargo xtask bench <name>` and
//! `cargo xtask gen-config` (large declarative files for scale tests).

mod bench;
mod gen_config;

use std::process::Command;

use anyhow::{Context, Result, bail};

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = cmd
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The whole suite: formatting, lints, unit tests, and the integration suite once per I/O
/// backend.
fn test() -> Result<()> {
    cargo(&["fmt", "--all", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(&["test", "--workspace", "--lib", "--bins"], &[])?;
    for backend in ["io_uring", "epoll"] {
        eprintln!("xtask: integration suite with io_backend = {backend}");
        cargo(
            &[
                "test",
                "-p",
                "gangway",
                "--test",
                "integration",
                "--",
                "--test-threads",
                "4",
            ],
            &[("GANGWAY_TEST_IO_BACKEND", backend)],
        )?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench::run(&args[1..]),
        Some("gen-config") => gen_config::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask test | cargo xtask bench proxy|pipeline|identity [--duration S] [--repeat N] | cargo xtask gen-config --consumers N --out FILE"
            );
            bail!("unknown task")
        }
    }
}
