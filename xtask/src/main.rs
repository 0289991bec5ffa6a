//! Project tasks: `cargo xtask test` (the full CI suite), `cargo xtask build-ebpf` (the eBPF
//! programs, failing without clang), `cargo xtask bench <name>` and `cargo xtask gen-config`
//! (large declarative files for scale tests). The command line is
//! parsed by clap, so `cargo xtask --help` (and `--help` on every task) lists every task and
//! flag with its default.

mod bench;
mod build_ebpf;
mod gen_config;
mod layers;

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// gangway's project tasks: the CI suite, benchmarks and scale-test configs.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    /// The task to run.
    #[command(subcommand)]
    task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
enum Task {
    /// The full CI suite: the crate layering (gateway/README.md), cargo fmt --check, clippy
    /// -D warnings, unit tests, then the integration suite once per I/O backend (io_uring,
    /// epoll).
    Test,
    /// Compiles the eBPF programs (ebpf/src/*.bpf.c) with clang (-O2 -g -target bpf -Wall
    /// -Werror), failing if clang is missing or the programs do not compile, and copies the
    /// object to target/bpf/gangway.bpf.o (for bpftool).
    BuildEbpf,
    /// Benchmarks: builds gangway (release) and compares it with nginx under wrk; results go
    /// to benches/results/.
    #[command(arg_required_else_help = true)]
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        bench: bench::Bench,
    },
    /// Write a large declarative config (YAML or JSON) for scale tests.
    GenConfig(gen_config::Params),
    /// Checks and lints the workspace for aarch64-unknown-linux-gnu (Graviton, the
    /// deployment's hosts): clippy -D warnings for that target. Needs its standard library
    /// (`rustup target add aarch64-unknown-linux-gnu`) and a C cross compiler for ring
    /// (Debian's gcc-aarch64-linux-gnu); fails saying which is missing.
    CheckAarch64,
}

/// A `cargo` command without the variables `cargo run` set for xtask itself: build scripts
/// (ring's) track `CARGO_MANIFEST_DIR`, and inheriting xtask's would make every build from
/// here rebuild what a plain `cargo build` just built, and the next plain build undo it.
fn cargo_command() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = cargo_command();
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

/// The whole suite: the layering check, formatting, lints, unit tests (xtask's own
/// included), and the integration suite once per I/O backend.
fn test() -> Result<()> {
    layers::check()?;
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
    build_ebpf::run()?;
    cargo(&["test", "--workspace", "--lib", "--bins"], &[])?;
    // The function the Lambda end-to-end test runs under cargo lambda's runtime emulator.
    cargo(&["build", "-p", "gangway-test-lambda"], &[])?;
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
    match Cli::parse().task {
        Task::Test => test(),
        Task::BuildEbpf => build_ebpf::run().map(|_| ()),
        Task::Bench { bench } => bench::run(bench),
        Task::GenConfig(params) => gen_config::run(&params),
        Task::CheckAarch64 => check_aarch64(),
    }
}

/// `cargo xtask check-aarch64`: what builds on x86-64 can still fail on aarch64, where
/// `c_char` is unsigned and `cfg(target_arch)` code differs (the counters' prefetch).
fn check_aarch64() -> Result<()> {
    const TARGET: &str = "aarch64-unknown-linux-gnu";
    const CC: &str = "aarch64-linux-gnu-gcc";
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup target list --installed")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        bail!("the {TARGET} standard library is missing: rustup target add {TARGET}");
    }
    if Command::new(CC).arg("--version").output().is_err() {
        bail!("{CC} is missing (ring's C needs it): apt-get install gcc-aarch64-linux-gnu");
    }
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--target",
            TARGET,
            "--",
            "-D",
            "warnings",
        ],
        &[("CC_aarch64_unknown_linux_gnu", CC)],
    )
}
