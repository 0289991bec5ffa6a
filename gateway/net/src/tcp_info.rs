//! The kernel's own counters of a TCP connection, read with `getsockopt`: `TCP_INFO` (the
//! `tcp_sock`'s bytes, segments, retransmits and RTT) and `SO_COOKIE` (the id the kernel,
//! and gangway's eBPF connection tracker, know the connection by).
//!
//! The log phase reads them here rather than from the tracker's map: the tracker copies the
//! same `tcp_sock` fields, but only at its sockops callbacks (state changes and RTT samples,
//! which arrive with the client's ACKs), so at a request's log phase its entry still trails
//! the request being logged. `TCP_INFO` is exact at the moment it is read, and works with
//! eBPF off.

use std::io;
use std::os::fd::RawFd;

/// `SO_COOKIE` (asm-generic, so x86_64 and aarch64 alike); the libc crate does not export
/// it for these targets.
const SO_COOKIE: libc::c_int = 57;

/// A connection's counters since it was accepted, as the kernel keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Payload bytes received (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Payload bytes sent, retransmissions included (`tcpi_bytes_sent`).
    pub bytes_sent: u64,
    /// Payload bytes retransmitted (`tcpi_bytes_retrans`).
    pub bytes_retrans: u64,
    /// Payload bytes the peer acknowledged (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Bytes written but not yet sent (`tcpi_notsent_bytes`).
    pub bytes_unsent: u64,
    /// Segments received (`tcpi_segs_in`).
    pub segs_in: u32,
    /// Segments sent, retransmissions included (`tcpi_segs_out`).
    pub segs_out: u32,
    /// Segments retransmitted (`tcpi_total_retrans`).
    pub retransmits: u32,
    /// Smoothed round-trip time, microseconds (`tcpi_rtt`).
    pub rtt_us: u32,
}

impl TcpCounters {
    /// Bytes the application wrote to the socket: sent once, or still queued.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_sent.saturating_sub(self.bytes_retrans) + self.bytes_unsent
    }
}

/// `getsockopt(fd, level, name)` into `value`, a plain-integer type the kernel fills (a
/// kernel that knows fewer fields leaves the rest as they were).
fn getsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
) -> io::Result<()> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: value is a writable buffer of len bytes that outlives the call.
    let rc = unsafe { libc::getsockopt(fd, level, name, (value as *mut T).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `fd`'s counters. Fails for a socket that is not TCP.
pub fn read(fd: RawFd) -> io::Result<TcpCounters> {
    // SAFETY: tcp_info is plain integers, valid when zeroed; a kernel that fills fewer
    // fields (older than 4.19 lacks the byte counts) leaves the rest zero.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info)?;
    Ok(TcpCounters {
        bytes_received: info.tcpi_bytes_received,
        bytes_sent: info.tcpi_bytes_sent,
        bytes_retrans: info.tcpi_bytes_retrans,
        bytes_acked: info.tcpi_bytes_acked,
        bytes_unsent: u64::from(info.tcpi_notsent_bytes),
        segs_in: info.tcpi_segs_in,
        segs_out: info.tcpi_segs_out,
        retransmits: info.tcpi_total_retrans,
        rtt_us: info.tcpi_rtt,
    })
}

/// Bytes received on `fd` that no read has taken yet (`FIONREAD`).
pub fn unread(fd: RawFd) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &raw mut n) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(n).unwrap_or(0))
}

/// `fd`'s socket cookie: unique per socket for the life of the host, as the eBPF connection
/// tracker's closed-connection records name it.
pub fn cookie(fd: RawFd) -> io::Result<u64> {
    let mut cookie = 0u64;
    getsockopt(fd, libc::SOL_SOCKET, SO_COOKIE, &mut cookie)?;
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn counts_what_crossed_a_loopback_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(&[7u8; 1000]).expect("write");
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).expect("read");
        server.write_all(&[9u8; 300]).expect("write");
        let mut back = [0u8; 300];
        client.read_exact(&mut back).expect("read back");

        let c = read(server.as_raw_fd()).expect("TCP_INFO");
        assert_eq!(c.bytes_received, 1000);
        assert_eq!(c.bytes_written(), 300);
        assert!(c.segs_in >= 2 && c.segs_out >= 2, "{c:?}");
        assert_eq!(unread(server.as_raw_fd()).expect("FIONREAD"), 0);
        client.write_all(&[1u8; 42]).expect("write");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while unread(server.as_raw_fd()).expect("FIONREAD") < 42 {
            assert!(
                std::time::Instant::now() < deadline,
                "42 bytes never arrived"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }

        let (a, b) = (cookie(server.as_raw_fd()), cookie(client.as_raw_fd()));
        let (a, b) = (a.expect("cookie"), b.expect("cookie"));
        assert!(a != 0 && a != b);
        assert_eq!(
            cookie(server.as_raw_fd()).expect("cookie"),
            a,
            "stable for a socket"
        );
    }

    #[test]
    fn a_socket_that_is_not_tcp_is_an_error() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(read(udp.as_raw_fd()).is_err());
    }
}
