//! `cargo xtask bench transport`: what the I/O driver alone costs a proxied request. Byte
//! forwarders (`benches/transport`, no HTTP) on tokio-uring as gangway's io_uring backend
//! runs it, on tokio's epoll reactor, and on the io-uring crate driven directly (DEFER_TASKRUN;
//! then with registered files; then with multishot receive into provided buffers; then under a
//! tokio runtime, as gangway's backend would keep it for tasks and timers), beside
//! gangway's plain proxy and nginx's for scale, one thread each, under the same wrk load.

use std::process::Command;

use anyhow::Result;

use super::peers;
use super::proxy::nginx_proxy;
use super::{
    Contender, Load, NGINX_CONNECTIONS, Params, build_release, compare, free_port, gangway,
    plain_config, scratch_dir, spawn_peer, upstream,
};

/// The forwarders' modes, each a contender named after it.
const MODES: [&str; 6] = [
    "tokio-uring",
    "tokio-epoll",
    "ring",
    "ring-fixed",
    "ring-multishot",
    "tokio-ring",
];

pub fn run(p: &Params) -> Result<()> {
    let (root, bin) = build_release()?;
    let forwarder = peers::build_transport(&root)?;
    let dir = scratch_dir()?;
    let (_upstream, up_port) = upstream(&dir)?;
    let mut contenders = Vec::new();
    for mode in MODES {
        let port = free_port()?;
        let mut cmd = Command::new(&forwarder);
        cmd.args([
            mode.to_string(),
            format!("127.0.0.1:{port}"),
            format!("127.0.0.1:{up_port}"),
        ]);
        contenders.push(Contender {
            name: mode.into(),
            proc_: spawn_peer(cmd, mode)?,
            port,
            load: None,
        });
    }
    let port = free_port()?;
    contenders.push(Contender {
        name: "gangway-io_uring".into(),
        proc_: gangway(
            &bin,
            &dir,
            "gangway-io_uring",
            "io_uring",
            port,
            &plain_config(up_port),
            1,
        )?,
        port,
        load: None,
    });
    let port = free_port()?;
    contenders.push(Contender {
        name: "nginx".into(),
        proc_: nginx_proxy(&dir, port, up_port, 1, None, NGINX_CONNECTIONS)?,
        port,
        load: None,
    });
    let setup = format!(
        "plain keep-alive GETs, 24-byte body, through byte forwarders (no HTTP; one upstream connection per client; benches/transport) and, for scale, gangway's and nginx's plain proxies; wrk -t1 -c{} -d{}s, {} interleaved rounds after {} s warm-up, one thread each, upstream: nginx (1 worker); ratios to tokio-uring, the driver under gangway's io_uring backend; medians shown",
        p.connections, p.duration_s, p.repeat, p.warmup_s
    );
    compare(
        &root,
        &dir,
        "transport",
        &setup,
        p,
        &contenders,
        &Load::root(),
        "tokio-uring",
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
