//! Other proxies beside nginx in `bench proxy`, each set up as its documentation advises
//! for throughput rather than left at its defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use super::{Proc, require, spawn_peer};

/// A self-signed ECDSA P-256 certificate for `localhost`, shared by every contender of the
/// TLS workload so that they all do the same handshake and record work.
pub(super) struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate and key in one file, as haproxy's `crt` takes them.
    pub combined: PathBuf,
}

impl Tls {
    /// Writes the certificate under `dir` with Debian's openssl.
    pub fn generate(dir: &Path) -> Result<Tls> {
        let openssl = require("openssl", "openssl")?;
        let tls = Tls {
            cert: dir.join("bench-cert.pem"),
            key: dir.join("bench-key.pem"),
            combined: dir.join("bench-combined.pem"),
        };
        let status = Command::new(openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
            .arg(&tls.key)
            .arg("-out")
            .arg(&tls.cert)
            .stderr(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            bail!("openssl req could not make the benchmark's certificate");
        }
        let combined = std::fs::read_to_string(&tls.cert)? + &std::fs::read_to_string(&tls.key)?;
        std::fs::write(&tls.combined, combined)?;
        Ok(tls)
    }
}

/// haproxy (Debian's 2.6) as a reverse proxy: `nbthread` threads (the workers' count),
/// `http-reuse always` (idle server connections shared by every client, its advice for
/// keep-alive upstreams that are not stateful), keep-alive both sides, no logging (nginx runs
/// with `access_log off`), and `maxconn 4096` (nginx's `worker_connections`; haproxy needs
/// twice as many open files).
pub(super) fn haproxy(
    dir: &Path,
    port: u16,
    up_port: u16,
    threads: usize,
    tls: Option<&Tls>,
) -> Result<Proc> {
    let haproxy = require("haproxy", "haproxy")?;
    let prefix = dir.join("haproxy");
    std::fs::create_dir_all(&prefix)?;
    let ssl = tls.map_or(String::new(), |t| {
        format!(" ssl crt {} alpn http/1.1", t.combined.display())
    });
    let conf = format!(
        "global\n  nbthread {threads}\n  maxconn 4096\n  tune.bufsize 16384\n\n\
         defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\n\n\
         frontend proxy\n  bind 127.0.0.1:{port}{ssl}\n  default_backend upstream\n\n\
         backend upstream\n  server up 127.0.0.1:{up_port}\n"
    );
    let conf_path = prefix.join("haproxy.cfg");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&conf_path);
    spawn_peer(cmd, "haproxy")
}

/// Builds the Pingora peer (`benches/peers/pingora`, outside the workspace) into
/// `target/pingora-peer`; returns its binary. The first build compiles Pingora (minutes).
pub(super) fn build_pingora(root: &Path) -> Result<PathBuf> {
    build_outside(root, "peers/pingora", "pingora-peer")
}

/// Builds the crate in `benches/<dir>` (a workspace of its own) in release mode into
/// `target/<name>`, and answers its binary `name`.
fn build_outside(root: &Path, dir: &str, name: &str) -> Result<PathBuf> {
    eprintln!("bench: building {name} (release; benches/{dir})");
    let target = root.join("target").join(name);
    let status = crate::cargo_command()
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(root.join("benches").join(dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()?;
    if !status.success() {
        bail!("building {name} failed (benches/{dir})");
    }
    Ok(target.join("release").join(name))
}

/// Builds the transport forwarders (`benches/transport`) into `target/transport-peer`, outside
/// the workspace's build.
pub(super) fn build_transport(root: &Path) -> Result<PathBuf> {
    build_outside(root, "transport", "transport-peer")
}

/// Pingora (0.9, the `pingora` crates) as a reverse proxy: `threads` threads, keep-alive
/// both sides, an upstream pool of 512 idle connections (nginx's `keepalive 512` here;
/// Pingora's default is 128), no logging; TLS through its rustls feature.
pub(super) fn pingora(
    bin: &Path,
    dir: &Path,
    port: u16,
    up_port: u16,
    threads: usize,
    tls: Option<&Tls>,
) -> Result<Proc> {
    let prefix = dir.join("pingora");
    std::fs::create_dir_all(&prefix)?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("127.0.0.1:{port}"))
        .arg(format!("127.0.0.1:{up_port}"))
        .arg(threads.to_string())
        .arg(&prefix)
        .env("RUST_LOG", "error");
    if let Some(t) = tls {
        cmd.arg(&t.cert).arg(&t.key);
    }
    spawn_peer(cmd, "pingora")
}
