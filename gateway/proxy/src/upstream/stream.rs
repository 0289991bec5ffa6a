//! An upstream connection: plain TCP or TLS over the worker's backend stream.

use std::io;
use std::ops::Range;

use gangway_net::Stream;
use gangway_net::tls::TlsStream;

/// A connection to an upstream, pooled as one type whatever its protocol.
pub enum UpstreamStream<S> {
    /// http upstreams.
    Plain(S),
    /// https upstreams.
    Tls(Box<TlsStream<S>>),
}

impl<S: Stream> Stream for UpstreamStream<S> {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            UpstreamStream::Plain(s) => s.read(buf).await,
            UpstreamStream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&self, buf: Vec<u8>, range: Range<usize>) -> (io::Result<()>, Vec<u8>) {
        match self {
            UpstreamStream::Plain(s) => s.write_all(buf, range).await,
            UpstreamStream::Tls(s) => s.write_all(buf, range).await,
        }
    }

    async fn shutdown(&self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.shutdown().await,
            UpstreamStream::Tls(s) => s.shutdown().await,
        }
    }

    fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            UpstreamStream::Plain(s) => s.socket_fd(),
            UpstreamStream::Tls(s) => s.socket_fd(),
        }
    }

    fn holds_input(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.holds_input(),
            UpstreamStream::Tls(s) => s.holds_input(),
        }
    }
}
