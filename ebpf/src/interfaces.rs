//! Which interfaces carry a set of listener addresses (`ebpf_interfaces`' default).

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The interfaces that carry `addrs`: for a wildcard address every interface that is up,
/// else the interfaces holding one of the addresses. Sorted, without duplicates.
pub fn interfaces_for(addrs: &[IpAddr]) -> Vec<String> {
    let wildcard = addrs.iter().any(IpAddr::is_unspecified);
    let mut out = BTreeSet::new();
    for (name, addr, up) in interface_addresses() {
        let carries = match addr {
            Some(a) => addrs.iter().any(|l| l.to_canonical() == a),
            None => false,
        };
        if (wildcard && up) || carries {
            out.insert(name);
        }
    }
    out.into_iter().collect()
}

/// (name, address, up) for each address of each interface, from getifaddrs(3).
fn interface_addresses() -> Vec<(String, Option<IpAddr>, bool)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned, valid until freeifaddrs.
        let entry = unsafe { &*cursor };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let up = entry.ifa_flags & libc::IFF_UP as u32 != 0;
        // SAFETY: ifa_addr is null or points to a sockaddr of the family it names.
        let addr = unsafe { sockaddr_ip(entry.ifa_addr) };
        out.push((name, addr, up));
        cursor = entry.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// # Safety
/// `sa` is null or points to a valid sockaddr whose size matches its family.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `sa` is valid; the family says which struct it is.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let v4 = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let v6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_carries_127_0_0_1_and_a_wildcard_takes_every_interface_that_is_up() {
        assert_eq!(
            interfaces_for(&["127.0.0.1".parse().expect("ip")]),
            vec!["lo".to_owned()]
        );
        let all = interfaces_for(&["0.0.0.0".parse().expect("ip")]);
        assert!(all.contains(&"lo".to_owned()), "{all:?}");
        assert!(interfaces_for(&["192.0.2.77".parse().expect("ip")]).is_empty());
    }
}
