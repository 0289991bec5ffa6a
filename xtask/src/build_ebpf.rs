//! `cargo xtask build-ebpf`: builds the loader crate with `GANGWAY_EBPF_REQUIRE=1`, so its
//! build script (which owns the clang command line) fails instead of embedding nothing, then
//! copies the object out of the build directory for bpftool and for a look at its sections.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Builds the programs; returns where the object was copied.
pub fn run() -> Result<PathBuf> {
    let out = crate::cargo_command()
        .args(["build", "-p", "gangway-ebpf", "--message-format=json"])
        .env("GANGWAY_EBPF_REQUIRE", "1")
        .output()
        .context("running cargo build -p gangway-ebpf")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let messages: Vec<String> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|m| m["message"]["rendered"].as_str().map(str::to_owned))
            .collect();
        bail!(
            "the eBPF programs did not build (clang and libbpf-dev are needed):\n{}{}",
            messages.join(""),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out_dir = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| {
            m["reason"] == "build-script-executed"
                && m["package_id"]
                    .as_str()
                    .is_some_and(|id| id.contains("gangway-ebpf") || id.contains("/ebpf#"))
        })
        .and_then(|m| m["out_dir"].as_str().map(PathBuf::from))
        .context("cargo reported no build-script output for gangway-ebpf")?;
    let object = out_dir.join("gangway.bpf.o");
    let size = std::fs::metadata(&object)
        .with_context(|| format!("reading {}", object.display()))?
        .len();
    if size == 0 {
        bail!("{} is empty: the programs were not built", object.display());
    }
    let dest_dir = PathBuf::from("target/bpf");
    std::fs::create_dir_all(&dest_dir)?;
    let dest = dest_dir.join("gangway.bpf.o");
    std::fs::copy(&object, &dest)?;
    eprintln!(
        "xtask: eBPF object built: {} ({size} bytes)",
        dest.display()
    );
    Ok(dest)
}
