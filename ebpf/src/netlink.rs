//! The two rtnetlink calls aya does not offer: which XDP program an interface holds, and
//! detaching one attached through netlink (not a bpf_link). A netlink attachment outlives
//! the process that made it, so this is how a guard left by a crashed run on a kernel
//! without XDP links (before 5.9) is found and replaced.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
/// nlmsghdr (16 bytes) and ifinfomsg (16 bytes).
const HEADERS: usize = 32;

/// The XDP program an interface holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The program's id.
    pub prog_id: u32,
    /// The `XDP_FLAGS_*_MODE` it was attached with (what a detach must name).
    pub mode_flags: u32,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
}

/// A message: nlmsghdr, an ifinfomsg for `ifindex`, then `attrs`.
fn message(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADERS + attrs.len());
    m.extend_from_slice(&((HEADERS + attrs.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // change
    m.extend_from_slice(attrs);
    m
}

/// Sends `msg` on a new rtnetlink socket and returns the first answer.
fn exchange(msg: &[u8]) -> io::Result<Vec<u8>> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `msg` is a valid buffer of its length.
    let sent = unsafe { libc::send(socket.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    if buf.len() >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(buf)
}

/// Each (type, payload) of the attributes in `bytes`.
fn attrs(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + 4 > bytes.len() {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([bytes[at], bytes[at + 1]]));
        let kind = u16::from_ne_bytes([bytes[at + 2], bytes[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > bytes.len() {
            return None;
        }
        let payload = &bytes[at + 4..at + len];
        at += align4(len);
        Some((kind, payload))
    })
}

/// The XDP program attached to interface `ifindex`, if any.
pub fn attached(ifindex: u32) -> io::Result<Option<Attached>> {
    let answer = exchange(&message(RTM_GETLINK, NLM_F_REQUEST, ifindex, &[]))?;
    let len = answer
        .get(..4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .min(answer.len());
    let Some(body) = answer.get(HEADERS..len) else {
        return Ok(None);
    };
    let Some((_, xdp)) = attrs(body).find(|(kind, _)| *kind == IFLA_XDP) else {
        return Ok(None);
    };
    let (mut prog_id, mut mode) = (0, 0u8);
    for (kind, payload) in attrs(xdp) {
        match kind {
            IFLA_XDP_PROG_ID if payload.len() >= 4 => {
                prog_id = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
            }
            IFLA_XDP_ATTACHED if !payload.is_empty() => mode = payload[0],
            _ => {}
        }
    }
    let mode_flags = match mode {
        1 => XDP_FLAGS_DRV_MODE,
        2 => XDP_FLAGS_SKB_MODE,
        3 => XDP_FLAGS_HW_MODE,
        _ => 0,
    };
    Ok((prog_id != 0).then_some(Attached {
        prog_id,
        mode_flags,
    }))
}

/// Detaches the netlink-attached XDP program of interface `ifindex`.
pub fn detach(ifindex: u32, mode_flags: u32) -> io::Result<()> {
    let mut nested = Vec::new();
    attr(&mut nested, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    attr(&mut nested, IFLA_XDP_FLAGS, &mode_flags.to_ne_bytes());
    let mut attrs = Vec::new();
    attr(&mut attrs, IFLA_XDP | NLA_F_NESTED, &nested);
    exchange(&message(
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        ifindex,
        &attrs,
    ))
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_through_the_parser() {
        let mut nested = Vec::new();
        attr(&mut nested, IFLA_XDP_PROG_ID, &7u32.to_ne_bytes());
        attr(&mut nested, IFLA_XDP_ATTACHED, &[2]);
        let mut outer = Vec::new();
        attr(&mut outer, IFLA_XDP | NLA_F_NESTED, &nested);
        let (kind, inner) = attrs(&outer).next().expect("one attribute");
        assert_eq!(kind, IFLA_XDP);
        let found: Vec<(u16, Vec<u8>)> = attrs(inner).map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(
            found,
            vec![
                (IFLA_XDP_PROG_ID, 7u32.to_ne_bytes().to_vec()),
                (IFLA_XDP_ATTACHED, vec![2])
            ]
        );
    }

    #[test]
    fn loopback_answers_a_query() {
        // Whatever lo holds, the kernel answers the query (no root needed to ask).
        assert!(attached(1).is_ok());
    }
}
