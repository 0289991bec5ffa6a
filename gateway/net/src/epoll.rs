//! The epoll backend (tokio current-thread runtime), used where io_uring is unavailable
//! (Docker's default seccomp profile, Fargate) or when `io_backend = "epoll"`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;

use super::{Backend, Stream};

/// The epoll backend.
pub struct Epoll;

/// A TCP stream driven by readiness events.
pub struct EpollStream(tokio::net::TcpStream);

impl Stream for EpollStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            return (Ok(0), buf);
        }
        loop {
            // Try first: after a write the response is often already there.
            match self.0.try_read_buf(&mut buf) {
                Ok(n) => return (Ok(n), buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.0.readable().await {
                return (Err(e), buf);
            }
        }
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        let mut pos = range.start;
        while pos < range.end {
            match self.0.try_write(&buf[pos..range.end]) {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.0.writable().await {
                        return (Err(e), buf);
                    }
                }
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn shutdown(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Write)
    }

    fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(&self.0))
    }
}

impl Backend for Epoll {
    type Stream = EpollStream;
    type Listener = tokio::net::TcpListener;
    const NAME: &'static str = "epoll";

    fn block_on<F: Future>(future: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("invariant: a current-thread runtime builds");
        tokio::task::LocalSet::new().block_on(&rt, future)
    }

    fn listener(socket: std::net::TcpListener) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::from_std(socket)
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((EpollStream(stream), peer))
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(EpollStream(stream))
    }
}
