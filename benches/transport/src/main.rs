//! `transport-peer MODE LISTEN UPSTREAM`: accepts on LISTEN, opens one connection to
//! UPSTREAM per client, and forwards bytes both ways, one thread. No HTTP: the load's
//! requests and answers pass through as they are, so its CPU per request is what the I/O
//! driver costs.
//!
//! Modes:
//! - `tokio-uring`: tokio-uring 0.5 as gangway's io_uring backend runs it (COOP_TASKRUN; the
//!   ring is polled through epoll by a tokio runtime).
//! - `tokio-epoll`: tokio's epoll reactor, as gangway's epoll backend.
//! - `ring`: the io-uring crate driven directly: SINGLE_ISSUER and DEFER_TASKRUN, one
//!   `io_uring_enter` per loop that submits and waits, single-shot recv and send.
//! - `ring-fixed`: `ring` on registered (fixed) files.
//! - `ring-multishot`: multishot receive into a provided-buffer ring; sends from the buffer.
//! - `tokio-ring`: the io-uring crate driven by a task of a tokio runtime (COOP_TASKRUN):
//!   one enter per turn of the task queue submits and reaps; tokio keeps tasks and epoll.

mod ring;
mod tokio_ring;

use std::net::SocketAddr;

use tokio_uring::buf::BoundedBuf;

/// Bytes one read takes at most.
const READ_SIZE: usize = 16 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, listen, upstream] = args.as_slice() else {
        eprintln!("usage: transport-peer MODE LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let (listen, upstream): (SocketAddr, SocketAddr) = match (listen.parse(), upstream.parse()) {
        (Ok(l), Ok(u)) => (l, u),
        _ => {
            eprintln!("transport-peer: LISTEN and UPSTREAM are ip:port");
            std::process::exit(2);
        }
    };
    match mode.as_str() {
        "tokio-uring" => tokio_uring_mode(listen, upstream),
        "tokio-epoll" => tokio_epoll_mode(listen, upstream),
        "ring" => ring::run(listen, upstream, ring::Recv::Single { fixed: false }),
        "ring-fixed" => ring::run(listen, upstream, ring::Recv::Single { fixed: true }),
        "ring-multishot" => ring::run(listen, upstream, ring::Recv::Multishot),
        "tokio-ring" => tokio_ring::run(listen, upstream),
        other => {
            eprintln!("transport-peer: unknown mode {other}");
            std::process::exit(2);
        }
    }
}

fn tokio_uring_mode(listen: SocketAddr, upstream: SocketAddr) {
    tokio_uring::builder()
        .entries(1024)
        .uring_builder(tokio_uring::uring_builder().setup_coop_taskrun())
        .start(async move {
            let listener = tokio_uring::net::TcpListener::bind(listen).expect("bind");
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio_uring::spawn(async move {
                    let Ok(up) = tokio_uring::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true).and(up.set_nodelay(true));
                    let mut buf = Vec::with_capacity(READ_SIZE);
                    loop {
                        for (from, to) in [(&client, &up), (&up, &client)] {
                            buf.clear();
                            let (read, b) = from.read(buf).await;
                            let n = match read {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let (written, b) = to.write_all(b.slice(..n)).await;
                            buf = b.into_inner();
                            if written.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
}

fn tokio_epoll_mode(listen: SocketAddr, upstream: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            tokio::task::spawn_local(async move {
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true).and(up.set_nodelay(true));
                let mut buf = vec![0u8; READ_SIZE];
                loop {
                    let n = match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if up.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let n = match up.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if client.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
