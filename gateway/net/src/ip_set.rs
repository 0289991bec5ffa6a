//! A set of IP networks matched with one hash lookup per distinct prefix length, as Kong's
//! lua-resty-ipmatcher matches: a list of 10,000 addresses and ranges costs a few lookups
//! per check, where a scan compared the client with every entry.
//!
//! Networks and addresses are compared in their [`crate::conn_policy::canonical_net`] and
//! canonical forms, so an IPv4-mapped IPv6 client or range counts as the IPv4 one it carries.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::conn_policy::canonical_net;

/// Networks, as configured and as lookup tables. Equal when the configured lists are.
#[derive(Clone, Debug, Default)]
pub struct IpSet {
    nets: Vec<IpNet>,
    /// Per IPv4 prefix length present, the networks of that length (masked), shortest first.
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

impl PartialEq for IpSet {
    fn eq(&self, other: &Self) -> bool {
        self.nets == other.nets
    }
}

impl Eq for IpSet {}

impl From<Vec<IpNet>> for IpSet {
    fn from(nets: Vec<IpNet>) -> Self {
        let mut v4: Vec<(u8, HashSet<u32>)> = Vec::new();
        let mut v6: Vec<(u8, HashSet<u128>)> = Vec::new();
        for net in &nets {
            match canonical_net(*net) {
                IpNet::V4(n) => {
                    let len = n.prefix_len();
                    let bits = mask_v4(u32::from(n.addr()), len);
                    of_length(&mut v4, len).insert(bits);
                }
                IpNet::V6(n) => {
                    let len = n.prefix_len();
                    let bits = mask_v6(u128::from(n.addr()), len);
                    of_length(&mut v6, len).insert(bits);
                }
            }
        }
        v4.sort_by_key(|(len, _)| *len);
        v6.sort_by_key(|(len, _)| *len);
        IpSet { nets, v4, v6 }
    }
}

impl FromIterator<IpNet> for IpSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        IpSet::from(iter.into_iter().collect::<Vec<_>>())
    }
}

/// The set of networks of prefix length `len`, added when absent.
fn of_length<T>(by_length: &mut Vec<(u8, HashSet<T>)>, len: u8) -> &mut HashSet<T> {
    let at = match by_length.iter().position(|(l, _)| *l == len) {
        Some(at) => at,
        None => {
            by_length.push((len, HashSet::new()));
            by_length.len() - 1
        }
    };
    &mut by_length[at].1
}

fn mask_v4(bits: u32, len: u8) -> u32 {
    match len {
        0 => 0,
        _ => bits & (u32::MAX << (32 - u32::from(len))),
    }
}

fn mask_v6(bits: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        _ => bits & (u128::MAX << (128 - u32::from(len))),
    }
}

impl IpSet {
    /// Whether some network of the set covers `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                self.v4
                    .iter()
                    .any(|(len, nets)| nets.contains(&mask_v4(bits, *len)))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                self.v6
                    .iter()
                    .any(|(len, nets)| nets.contains(&mask_v6(bits, *len)))
            }
        }
    }

    /// The networks as configured, in their order.
    pub fn iter(&self) -> std::slice::Iter<'_, IpNet> {
        self.nets.iter()
    }

    /// How many networks were configured.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// True when the set holds no network.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_policy::parse_ip_or_cidr;

    fn set(entries: &[&str]) -> IpSet {
        entries
            .iter()
            .map(|e| parse_ip_or_cidr(e).expect(e))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    #[test]
    fn matches_addresses_and_ranges_of_both_families() {
        let s = set(&[
            "10.0.0.0/8",
            "192.168.1.7",
            "172.16.5.0/24",
            "2001:db8::/32",
            "::1",
        ]);
        for yes in [
            "10.255.0.1",
            "192.168.1.7",
            "172.16.5.200",
            "2001:db8:1::5",
            "::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(s.contains(ip(yes)), "{yes}");
        }
        for no in [
            "11.0.0.1",
            "192.168.1.8",
            "172.16.6.1",
            "2001:db9::1",
            "::2",
            "::ffff:11.0.0.1",
        ] {
            assert!(!s.contains(ip(no)), "{no}");
        }
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn whole_families_and_mapped_ranges() {
        let every_v4 = set(&["0.0.0.0/0"]);
        assert!(every_v4.contains(ip("203.0.113.9")));
        assert!(every_v4.contains(ip("::ffff:203.0.113.9")));
        assert!(!every_v4.contains(ip("2001:db8::1")));
        let every_v6 = set(&["::/0"]);
        assert!(every_v6.contains(ip("2001:db8::1")));
        assert!(!every_v6.contains(ip("203.0.113.9")), "a v4 client is v4");
        let mapped = set(&["::ffff:192.0.2.0/120"]);
        assert!(mapped.contains(ip("192.0.2.77")));
        assert!(!mapped.contains(ip("192.0.3.1")));
        assert!(!IpSet::default().contains(ip("127.0.0.1")));
    }

    /// The lookup agrees with comparing against every entry, over prefix lengths 16 to 32,
    /// for addresses at the edges of each entry and random ones.
    #[test]
    fn agrees_with_a_scan() {
        let v4: Vec<ipnet::Ipv4Net> = (0u32..2_000)
            .map(|i| {
                let addr = std::net::Ipv4Addr::from(i.wrapping_mul(0x9E37_79B9));
                ipnet::Ipv4Net::new(addr, 16 + (i % 17) as u8)
                    .expect("len")
                    .trunc()
            })
            .collect();
        let entries: Vec<IpNet> = v4.iter().copied().map(IpNet::V4).collect();
        let s = IpSet::from(entries.clone());
        let edges = v4.iter().flat_map(|n| {
            let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
            [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
        });
        let random = (0u32..20_000).map(|i| i.wrapping_mul(0x85EB_CA6B));
        let mut hits = 0;
        for bits in edges.chain(random) {
            let probe = IpAddr::V4(std::net::Ipv4Addr::from(bits));
            let scanned = entries.iter().any(|n| n.contains(&probe));
            assert_eq!(s.contains(probe), scanned, "{probe}");
            hits += usize::from(scanned);
        }
        assert!(hits >= 4_000, "the probes hit and miss: {hits}");
    }
}
