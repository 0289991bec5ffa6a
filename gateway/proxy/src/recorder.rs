//! The client stream as the log phase sees it: the bytes sent for the current request, and
//! (when a log plugin will want it) a copy of the final response head.
//!
//! Recording at the stream keeps the many places that answer a client (the upstream's
//! response, plugin responses, gateway errors) free of log bookkeeping.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Range;

use gangway_net::Stream;

/// A client stream that counts what it writes.
pub struct Recorded<S> {
    inner: S,
    sent: Cell<u64>,
    capture: Cell<bool>,
    head: RefCell<Vec<u8>>,
    /// Note the final head's status and length (for the access log) without copying it.
    track: Cell<bool>,
    status: Cell<u16>,
    head_bytes: Cell<u64>,
}

impl<S> Recorded<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Recorded {
            inner,
            sent: Cell::new(0),
            capture: Cell::new(false),
            head: RefCell::new(Vec::new()),
            track: Cell::new(false),
            status: Cell::new(0),
            head_bytes: Cell::new(0),
        }
    }

    /// Starts a request: the byte count restarts and nothing is captured.
    pub fn begin(&self) {
        self.sent.set(0);
        self.capture.set(false);
        self.head.borrow_mut().clear();
        self.track.set(false);
        self.status.set(0);
        self.head_bytes.set(0);
    }

    /// Notes the next final response head's status and length ([`Self::status`],
    /// [`Self::body_bytes`]).
    pub fn track_status(&self) {
        self.track.set(true);
    }

    /// The status of the final response head, 0 when none was written.
    pub fn status(&self) -> u16 {
        self.status.get()
    }

    /// Bytes written after the final response head (nginx's `$body_bytes_sent`).
    pub fn body_bytes(&self) -> u64 {
        self.sent.get().saturating_sub(self.head_bytes.get())
    }

    /// Keeps a copy of the next final (non-1xx, or 101) response head written.
    pub fn capture_head(&self) {
        self.capture.set(true);
    }

    /// Bytes written since [`Self::begin`].
    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// The captured response head (status line and headers, without the blank line);
    /// empty when none was captured.
    pub fn head(&self) -> std::cell::Ref<'_, Vec<u8>> {
        self.head.borrow()
    }

    fn observe(&self, bytes: &[u8]) {
        let before = self.sent.get();
        self.sent.set(before + bytes.len() as u64);
        let wanted = self.capture.get() || self.track.get();
        if !wanted || !bytes.starts_with(b"HTTP/1.") {
            return;
        }
        let interim = bytes.get(9) == Some(&b'1') && !bytes[9..].starts_with(b"101");
        if interim {
            return;
        }
        let end = head_end().find(bytes).unwrap_or(bytes.len());
        if self.track.get() {
            self.status.set(status_of(bytes));
            self.head_bytes
                .set(before + (end + 4).min(bytes.len()) as u64);
            self.track.set(false);
        }
        if self.capture.get() {
            self.head.borrow_mut().extend_from_slice(&bytes[..end]);
            self.capture.set(false);
        }
    }
}

/// The searcher for a head's end, built once: `memmem::find` would build one per call.
fn head_end() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(b"\r\n\r\n"))
}

impl<S: Stream> Stream for Recorded<S> {
    // The inner futures themselves, not wrapped in an async fn of their own: each wrapper
    // would add its arguments to the state an idle connection's task holds.
    fn read(&self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        self.inner.read(buf)
    }

    fn ready_to_read(&self) -> impl Future<Output = bool> {
        self.inner.ready_to_read()
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        self.observe(&buf[range.clone()]);
        self.inner.write_all(buf, range).await
    }

    async fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown().await
    }

    fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.socket_fd()
    }
}

/// The status code of a captured head (`HTTP/1.1 200 OK`), or 0.
pub fn status_of(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// The header lines of a captured head, as `(name, value)` pairs.
pub fn headers_of(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut lines = memchr::memchr_iter(b'\n', head);
    let mut start = lines.next().map_or(head.len(), |end| end + 1);
    std::iter::from_fn(move || {
        let end = lines.next().unwrap_or(head.len());
        let line = head.get(start..end)?;
        start = end + 1;
        Some(line)
    })
    .filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = memchr::memchr(b':', line)?;
        let value = &line[colon + 1..];
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        Some((&line[..colon], &value[start..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sink;

    impl Stream for Sink {
        async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
            (Ok(0), buf)
        }
        async fn write_all(&self, buf: Vec<u8>, _: Range<usize>) -> (io::Result<()>, Vec<u8>) {
            (Ok(()), buf)
        }
        async fn shutdown(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn write(r: &Recorded<Sink>, bytes: &[u8]) {
        let buf = bytes.to_vec();
        let len = buf.len();
        let fut = r.write_all(buf, 0..len);
        futures_lite_block_on(fut).0.expect("sink accepts");
    }

    /// Polls a future that never waits (the sink is always ready).
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the sink never waits"),
        }
    }

    #[test]
    fn counts_bytes_and_keeps_the_final_head_only() {
        let r = Recorded::new(Sink);
        r.begin();
        r.capture_head();
        let writes: [&[u8]; 3] = [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A:  b \r\n\r\nok",
            b"HTTP/1.1 200 OK\r\n\r\n",
        ];
        for w in writes {
            write(&r, w);
        }
        assert_eq!(r.sent(), writes.iter().map(|w| w.len() as u64).sum::<u64>());
        let head = r.head();
        assert_eq!(status_of(&head), 201);
        let headers: Vec<_> = headers_of(&head).collect();
        assert_eq!(
            headers,
            [(&b"Content-Length"[..], &b"2"[..]), (b"X-A", b"b ")]
        );
    }

    #[test]
    fn begin_resets_and_capture_is_optional() {
        let r = Recorded::new(Sink);
        r.begin();
        write(&r, b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(r.head().is_empty());
        r.begin();
        r.capture_head();
        assert_eq!(r.sent(), 0);
        write(
            &r,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(status_of(&r.head()), 101);
    }
}
