//! gangway's sockets: one owned-buffer seam ([`Stream`]) with two backends: io_uring
//! ([`uring`]) and epoll ([`epoll`], tokio). TLS wraps either backend's stream.
//! [`proxy_protocol`] reads a PROXY header at accept time; [`prefixed`] replays the bytes read
//! past it.
//!
//! A [`Backend`] owns a worker thread's runtime: the data plane is written once, generic over
//! the backend, and monomorphized per backend so neither pays for the other.
//!
//! It moves bytes and certificates; it knows nothing of HTTP, routes or plugins (the
//! certificate entities it reads come from `gangway-config`). Plugins and config never see
//! which backend runs.

pub mod conn_policy;
pub mod epoll;
pub mod idle_probe;
pub mod ip_set;
pub mod listener;
pub mod prefixed;
pub mod proxy_protocol;
mod stream;
pub mod tcp_info;
pub mod tls;
pub mod uring;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

pub use stream::Stream;

/// An I/O backend: a single-threaded runtime plus its socket types.
#[allow(async_fn_in_trait)]
pub trait Backend: 'static {
    /// A connected TCP stream.
    type Stream: Stream + 'static;
    /// A listening socket.
    type Listener: 'static;

    /// The setting value naming this backend (`io_uring` or `epoll`).
    const NAME: &'static str;

    /// Runs `future` to completion on a new runtime on the current thread; tasks spawned with
    /// `tokio::task::spawn_local` inside it run on this thread.
    fn block_on<F: Future>(future: F) -> F::Output;

    /// Adopts a bound, listening std socket (already non-blocking with SO_REUSEPORT set), and
    /// sets TCP_NODELAY on it for the connections it accepts.
    fn listener(socket: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Accepts one connection, with TCP_NODELAY set.
    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)>;

    /// Opens a connection to `addr` with TCP_NODELAY set.
    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream>;
}

/// Which backends this process can use: io_uring needs kernel support and a seccomp profile
/// that allows it (Docker's default does not).
pub fn probe_io_uring() -> Result<(), String> {
    match tokio_uring::uring_builder().build(8) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("io_uring_setup failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a connection `B` accepts has TCP_NODELAY set.
    fn accepted_nodelay<B: Backend>() -> bool {
        B::block_on(async {
            let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            std.set_nonblocking(true).expect("non-blocking");
            let addr = std.local_addr().expect("address");
            let listener = B::listener(std).expect("adopted");
            let _client = std::net::TcpStream::connect(addr).expect("connect");
            let (accepted, _) = B::accept(&listener).await.expect("accept");
            let fd = accepted.socket_fd().expect("a socket");
            // SAFETY: `fd` stays open while `accepted` lives; the SockRef does not close it.
            let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            socket2::SockRef::from(&socket)
                .tcp_nodelay()
                .expect("getsockopt")
        })
    }

    #[test]
    fn accepted_connections_have_nagle_off_on_both_backends() {
        assert!(accepted_nodelay::<epoll::Epoll>(), "epoll");
        assert!(accepted_nodelay::<uring::Uring>(), "io_uring");
    }
}
