//! [`Prefixed`]: a stream that first replays bytes already read from it.
//!
//! Reading a PROXY protocol header may read past it, into the start of the client's request;
//! wrapping the socket hands those bytes to whoever reads next, without the session knowing.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Range;

use super::Stream;

/// A [`Stream`] that yields `prefix` before reading from `inner`; writes go straight through.
pub struct Prefixed<S> {
    inner: S,
    prefix: RefCell<Vec<u8>>,
    /// Bytes of `prefix` already handed out.
    pos: Cell<usize>,
}

impl<S> Prefixed<S> {
    /// Wraps `inner`; `prefix` (possibly empty) is read first.
    pub fn new(inner: S, prefix: Vec<u8>) -> Self {
        // An empty prefix may still hold a read buffer's capacity; do not keep it for the
        // connection's life.
        let prefix = if prefix.is_empty() {
            Vec::new()
        } else {
            prefix
        };
        Prefixed {
            inner,
            prefix: RefCell::new(prefix),
            pos: Cell::new(0),
        }
    }

    /// The stream underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Stream> Stream for Prefixed<S> {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            return (Ok(0), buf);
        }
        {
            // Borrowed only in this synchronous block, never across an await.
            let mut prefix = self.prefix.borrow_mut();
            let pos = self.pos.get();
            if pos < prefix.len() {
                let n = (prefix.len() - pos).min(buf.capacity() - buf.len());
                buf.extend_from_slice(&prefix[pos..pos + n]);
                if pos + n == prefix.len() {
                    // Fully replayed: free it for the rest of a long-lived connection.
                    *prefix = Vec::new();
                    self.pos.set(0);
                } else {
                    self.pos.set(pos + n);
                }
                return (Ok(n), buf);
            }
        }
        self.inner.read(buf).await
    }

    async fn ready_to_read(&self) -> bool {
        self.pos.get() < self.prefix.borrow().len() || self.inner.ready_to_read().await
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        self.inner.write_all(buf, range).await
    }

    async fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown().await
    }

    fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.socket_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that returns `data` in one read, then EOF.
    struct Once(RefCell<Vec<u8>>);

    impl Stream for Once {
        async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
            let mut data = self.0.borrow_mut();
            let n = data.len().min(buf.capacity() - buf.len());
            buf.extend(data.drain(..n));
            (Ok(n), buf)
        }
        async fn write_all(&self, buf: Vec<u8>, _: Range<usize>) -> (io::Result<()>, Vec<u8>) {
            (Ok(()), buf)
        }
        async fn shutdown(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn replays_the_prefix_in_pieces_then_reads_the_inner_stream() {
        let s = Prefixed::new(Once(RefCell::new(b"world".to_vec())), b"hello ".to_vec());
        let out = block_on(async {
            let mut out = Vec::new();
            loop {
                // A 4-byte buffer splits the prefix across reads.
                let (res, buf) = s.read(Vec::with_capacity(4)).await;
                match res.expect("read") {
                    0 => return out,
                    n => out.extend_from_slice(&buf[..n]),
                }
            }
        });
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn appends_after_existing_bytes_and_respects_a_full_buffer() {
        let s = Prefixed::new(Once(RefCell::new(Vec::new())), b"abc".to_vec());
        block_on(async {
            let mut buf = Vec::with_capacity(8);
            buf.extend_from_slice(b"xy");
            let (res, buf) = s.read(buf).await;
            assert_eq!(res.expect("read"), 3);
            assert_eq!(buf, b"xyabc");
            let full = Vec::with_capacity(0);
            let (res, _) = s.read(full).await;
            assert_eq!(res.expect("read"), 0, "no spare capacity reads nothing");
            let (res, _) = s.read(Vec::with_capacity(8)).await;
            assert_eq!(res.expect("read"), 0, "then the inner stream's EOF");
        });
    }
}
