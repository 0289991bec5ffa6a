//! The io_uring backend (tokio-uring): reads and writes are submitted as ring operations on
//! owned buffers, so a request costs no readiness round trip.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use futures_util::FutureExt as _;
use futures_util::future::{self, Either};
use tokio_uring::buf::BoundedBuf;

use super::{Backend, Stream};

/// The io_uring backend.
pub struct Uring;

/// A TCP stream driven by io_uring.
pub struct UringStream(tokio_uring::net::TcpStream);

impl Stream for UringStream {
    // A future that holds the ring's read and nothing else: an idle connection's task waits
    // in it, and an async fn would add its arguments and locals beside it.
    fn read(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        let (len, cap) = (buf.len(), buf.capacity());
        if len == cap {
            return Either::Left(future::ready((Ok(0), buf)));
        }
        Either::Right(
            self.0
                .read(buf.slice(len..cap))
                .map(|(res, slice)| (res, slice.into_inner())),
        )
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        if range.is_empty() {
            return (Ok(()), buf);
        }
        let (res, slice) = self.0.write_all(buf.slice(range)).await;
        (res, slice.into_inner())
    }

    async fn shutdown(&self) -> io::Result<()> {
        self.0.shutdown(std::net::Shutdown::Write)
    }

    fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(&self.0))
    }
}

impl Backend for Uring {
    type Stream = UringStream;
    type Listener = tokio_uring::net::TcpListener;
    const NAME: &'static str = "io_uring";

    fn block_on<F: Future>(future: F) -> F::Output {
        // COOP_TASKRUN: a completion's task work waits for this thread's next syscall
        // instead of interrupting it. Interrupted, the thread ran the socket read at once,
        // while the peer's CPU still held the socket lock from delivering the data, and spun
        // on it: on loopback that was a third of a plain proxy's CPU per request (16 us to
        // 9.5 us per request when this was set, benches/README.md). A sleeping thread is still
        // woken.
        tokio_uring::builder()
            .entries(1024)
            .uring_builder(tokio_uring::uring_builder().setup_coop_taskrun())
            .start(future)
    }

    fn listener(socket: std::net::TcpListener) -> io::Result<Self::Listener> {
        crate::listener::nodelay_for_accepted(&socket)?;
        Ok(tokio_uring::net::TcpListener::from_std(socket))
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        Ok((UringStream(stream), peer))
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio_uring::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(UringStream(stream))
    }
}
