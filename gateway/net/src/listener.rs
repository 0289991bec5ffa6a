//! Listening sockets: one per worker per address, with SO_REUSEPORT so the kernel spreads
//! connections across workers and no accept lock or cross-thread handoff is needed.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Kong's default listen backlog.
pub const DEFAULT_BACKLOG: u32 = 16384;

/// Binds a non-blocking listener on `addr` for a single process (the Admin API): SO_REUSEADDR,
/// and IPv6-only for an IPv6 address, as nginx binds, so `0.0.0.0:p, [::]:p` binds both.
pub fn bind(addr: SocketAddr, backlog: Option<u32>) -> io::Result<std::net::TcpListener> {
    bind_with(addr, backlog, false)
}

/// Binds a non-blocking listener with SO_REUSEPORT (and SO_REUSEADDR) on `addr`.
pub fn bind_reuseport(addr: SocketAddr, backlog: Option<u32>) -> io::Result<std::net::TcpListener> {
    bind_with(addr, backlog, true)
}

/// Sets TCP_NODELAY on a listening socket: Linux copies it to every connection the socket
/// accepts, which then need no `setsockopt` of their own (one system call less per
/// connection).
pub fn nodelay_for_accepted(listener: &std::net::TcpListener) -> io::Result<()> {
    socket2::SockRef::from(listener).set_tcp_nodelay(true)
}

fn bind_with(
    addr: SocketAddr,
    backlog: Option<u32>,
    reuseport: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let backlog = backlog.unwrap_or(DEFAULT_BACKLOG).min(i32::MAX as u32) as i32;
    socket.listen(backlog)?;
    Ok(socket.into())
}
