//! Other proxies beside nginx in `bench proxy`, each set up as its documentation advises
//! for throughput rather than left at its defaults.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::{Proc, require, spawn_peer};

/// haproxy (Debian's 2.6) as a reverse proxy: `nbthread` threads (the workers' count),
/// `http-reuse always` (idle server connections shared by every client, its advice for
/// keep-alive upstreams that are not stateful), keep-alive both sides, no logging (nginx runs
/// with `access_log off`), and `maxconn 4096` (nginx's `worker_connections`; haproxy needs
/// twice as many open files).
pub(super) fn haproxy(dir: &Path, port: u16, up_port: u16, threads: usize) -> Result<Proc> {
    let haproxy = require("haproxy", "haproxy")?;
    let prefix = dir.join("haproxy");
    std::fs::create_dir_all(&prefix)?;
    let conf = format!(
        "global\n  nbthread {threads}\n  maxconn 4096\n  tune.bufsize 16384\n\n\
         defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\n\n\
         frontend proxy\n  bind 127.0.0.1:{port}\n  default_backend upstream\n\n\
         backend upstream\n  server up 127.0.0.1:{up_port}\n"
    );
    let conf_path = prefix.join("haproxy.cfg");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&conf_path);
    spawn_peer(cmd, "haproxy")
}
