//! The I/O seam: every socket the data plane touches implements [`Stream`].
//!
//! Buffers are owned and handed back with the result because io_uring needs the kernel to own
//! the memory while an operation is in flight. Methods take `&self` so one task can read and
//! write the same stream concurrently (upgrade tunnels); futures are `!Send` by design, since a
//! connection never leaves its worker thread.

use std::io;
use std::ops::Range;
use std::os::fd::RawFd;

/// An owned-buffer byte stream.
#[allow(async_fn_in_trait)]
pub trait Stream {
    /// Reads into the spare capacity of `buf` (`buf.len()..buf.capacity()`) and extends its
    /// length by the bytes read. `Ok(0)` means end of stream (or no spare capacity).
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);

    /// Writes every byte of `buf[range]`.
    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>);

    /// Shuts down the write half (sends FIN, or TLS close_notify then FIN).
    async fn shutdown(&self) -> io::Result<()>;

    /// Waits until a read would not wait (input, the peer's end or an error is there) and
    /// returns true, when the stream can tell without a buffer: an idle keep-alive
    /// connection then holds none. False at once when it cannot (io_uring takes the buffer
    /// when the read is posted; TLS may have records to send first): the caller reads.
    async fn ready_to_read(&self) -> bool {
        false
    }

    /// The TCP socket underneath, for reading the kernel's counters of the connection
    /// ([`crate::tcp_info`]); `None` for a stream with no socket (tests' in-memory streams).
    fn socket_fd(&self) -> Option<RawFd> {
        None
    }

    /// True when the stream itself holds input no read has taken yet, or has taken in the
    /// peer's end (a TLS layer's decrypted records, unprocessed ciphertext, close_notify).
    /// An idle connection with such input is unfit for reuse; what waits in the socket is
    /// seen by [`crate::idle_probe`]. Default false: a stream with no buffer of its own.
    fn holds_input(&self) -> bool {
        false
    }
}
