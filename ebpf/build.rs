//! Compiles the eBPF programs (`src/gangway.bpf.c`) with clang into `OUT_DIR`, where the
//! loader embeds the object. Without clang, or when clang fails, the build still succeeds: the
//! object is empty and `GANGWAY_EBPF_BUILD` carries the reason, which gangway reports as why
//! eBPF is unavailable. `GANGWAY_EBPF_REQUIRE=1` (set by `cargo xtask build-ebpf`) turns
//! that into a build error instead.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env("OUT_DIR")).join("gangway.bpf.o");
    for watched in ["src", "include"] {
        println!("cargo:rerun-if-changed={}", dir.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=PATH");
    watch_compiler();
    println!("cargo:rerun-if-env-changed=GANGWAY_EBPF_REQUIRE");
    let status = match compile(&dir, &out) {
        Ok(()) => "ok".to_owned(),
        Err(reason) => {
            if std::env::var("GANGWAY_EBPF_REQUIRE").is_ok_and(|v| v == "1") {
                panic!("eBPF programs not built: {reason}");
            }
            println!(
                "cargo:warning=eBPF programs not built ({reason}); gangway will enforce its IP policy in userspace"
            );
            std::fs::write(&out, b"").expect("write OUT_DIR");
            reason
        }
    };
    println!("cargo:rustc-env=GANGWAY_EBPF_BUILD={status}");
}

/// Reruns this script when the compiler changes, or appears: a build made before clang was
/// installed would otherwise keep its empty object for good.
fn watch_compiler() {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let dirs: Vec<PathBuf> = if Path::new(&clang).is_absolute() {
        Vec::new()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default()
    };
    match dirs.iter().map(|d| d.join(&clang)).find(|c| c.exists()) {
        Some(found) => println!("cargo:rerun-if-changed={}", found.display()),
        None if dirs.is_empty() => println!("cargo:rerun-if-changed={clang}"),
        // Not installed: any change to a directory it would land in reruns the script.
        None => dirs
            .iter()
            .filter(|d| d.is_dir())
            .for_each(|d| println!("cargo:rerun-if-changed={}", d.display())),
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

/// The multiarch include directory with `asm/types.h` for the host (clang's bpf target
/// has no default system include path for it).
fn multiarch_include() -> String {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "aarch64-linux-gnu",
        "x86_64" => "x86_64-linux-gnu",
        other => return format!("/usr/include/{other}-linux-gnu"),
    };
    format!("/usr/include/{arch}")
}

fn compile(dir: &Path, out: &Path) -> Result<(), String> {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I")
        .arg(dir.join("include"))
        .arg("-I")
        .arg(multiarch_include())
        .arg("-c")
        .arg(dir.join("src/gangway.bpf.c"))
        .arg("-o")
        .arg(out)
        .output()
        .map_err(|e| {
            format!("{clang} not found ({e}); install clang and libbpf-dev (Debian) to build them")
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| l.contains("error")).unwrap_or("");
        return Err(format!("{clang} failed: {first}"));
    }
    Ok(())
}
