//! Whether an idle keep-alive connection is still fit to carry a request.
//!
//! nginx keeps a read armed on every cached upstream connection and closes it the moment the
//! upstream sends anything or closes (`ngx_http_upstream_keepalive_close_handler`). Upstreams
//! with a keep-alive timeout shorter than ours (uvicorn and Node.js 5 s, gunicorn 2 s) close
//! idle connections all the time; a request written to one fails after it was sent, and only
//! an idempotent one can be sent again. Bytes waiting on an idle connection are a response
//! to no request (a second response, or data past the first's length), and would be read
//! as the answer to the next. One non-blocking peek before reuse sees both.

use std::os::fd::RawFd;

/// What a peek at an idle connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleState {
    /// Nothing to read and not closed: fit for reuse.
    Quiet,
    /// The peer closed it (FIN or reset).
    Closed,
    /// The peer sent bytes no request asked for.
    Unsolicited,
}

/// Peeks at `fd` without blocking and without consuming anything.
pub fn probe(fd: RawFd) -> IdleState {
    let mut byte = 0u8;
    // SAFETY: `byte` is a valid one-byte buffer for the duration of the call, and `fd` is an
    // open socket owned by the caller; MSG_PEEK leaves the data where it is.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => IdleState::Closed,
        n if n > 0 => IdleState::Unsolicited,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => IdleState::Quiet,
            _ => IdleState::Closed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let ours = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (theirs, _) = listener.accept().expect("accept");
        (ours, theirs)
    }

    /// Waits for what the peer did to reach our socket (loopback is fast, not instant).
    fn settled(fd: RawFd, want: IdleState) -> IdleState {
        for _ in 0..200 {
            let state = probe(fd);
            if state == want {
                return state;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        probe(fd)
    }

    #[test]
    fn a_quiet_connection_is_fit_for_reuse() {
        let (ours, _theirs) = pair();
        assert_eq!(probe(ours.as_raw_fd()), IdleState::Quiet);
    }

    #[test]
    fn a_connection_the_peer_closed_is_not() {
        let (ours, theirs) = pair();
        drop(theirs);
        assert_eq!(
            settled(ours.as_raw_fd(), IdleState::Closed),
            IdleState::Closed
        );
    }

    #[test]
    fn bytes_nobody_asked_for_are_seen_and_left_in_place() {
        let (ours, mut theirs) = pair();
        theirs.write_all(b"HTTP/1.1 200 OK\r\n").expect("write");
        let fd = ours.as_raw_fd();
        assert_eq!(settled(fd, IdleState::Unsolicited), IdleState::Unsolicited);
        assert_eq!(probe(fd), IdleState::Unsolicited, "a peek consumes nothing");
    }
}
