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
            // Without readiness known this is no syscall; with it, after a write the
            // response is often already there.
            let wanted = buf.capacity() - buf.len();
            match self.0.try_read_buf(&mut buf) {
                Ok(n) => {
                    if n < wanted {
                        forget_readable(&self.0);
                    }
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.0.readable().await {
                return (Err(e), buf);
            }
        }
    }

    async fn ready_to_read(&self) -> bool {
        // An error is for the read that follows to report.
        let _ = self.0.readable().await;
        true
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

/// After a read shorter than asked, the socket is taken as drained, as nginx does: tokio's
/// readiness is cleared without a syscall, so the next read waits for the next edge rather
/// than spending a `recv` on EAGAIN to learn it (most keep-alive reads did). Data that
/// arrives after the short read raises a new edge, which the driver reports on its next
/// poll: nothing is missed.
fn forget_readable(stream: &tokio::net::TcpStream) {
    let _ = stream.try_io(tokio::io::Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
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
        crate::listener::nodelay_for_accepted(&socket)?;
        tokio::net::TcpListener::from_std(socket)
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        // tokio counts a new registration readable until a read says otherwise, which would
        // have an idle connection take its buffers at once. Edge-triggered epoll reports
        // input that came before the registration with its first event, so nothing is missed.
        forget_readable(&stream);
        Ok((EpollStream(stream), peer))
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(EpollStream(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn data_after_a_short_read_is_still_read() {
        Epoll::block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let stream = Epoll::connect(addr).await.expect("connect");
            let (mut peer, _) = listener.accept().expect("accept");
            peer.write_all(b"first").expect("write");
            let (n, buf) = stream.read(Vec::with_capacity(64)).await;
            assert_eq!(n.expect("read"), 5);
            assert_eq!(buf, b"first");
            // The short read cleared readiness; the next bytes come a little later and must
            // still wake the read.
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                peer.write_all(b"second").expect("write");
                peer
            });
            let read =
                tokio::time::timeout(Duration::from_secs(5), stream.read(Vec::with_capacity(64)));
            let (n, buf) = read.await.expect("the second read completes");
            assert_eq!(n.expect("read"), 6);
            assert_eq!(buf, b"second");
            drop(writer.join());
        });
    }
}
