//! Who may connect to which listening port: per port, a deny list, an allow list and a cap on
//! live connections per source address. The same policy runs in two places: compiled into
//! the kernel's IP guard (the `gangway-ebpf` crate writes it to eBPF maps), and checked here
//! at accept, before any TLS or HTTP work, when eBPF is off or as a backstop where it is on
//! (a packet can arrive on an interface the guard is not attached to).
//!
//! A source is refused when it is in the deny list, or when the port has an allow list and
//! the source is not in it: Kong's ip-restriction order, deny first, then allow.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

pub use crate::ip_set::IpSet;

/// The policy of every listener port (open ones too, so that the kernel tracks their
/// connections). Ports not in it are open and untracked. Default: empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionPolicy {
    /// Guarded ports by number.
    pub ports: BTreeMap<u16, PortPolicy>,
}

/// One port's rules. Default: no lists, no connection cap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortPolicy {
    /// Sources refused (empty: none).
    pub deny: IpSet,
    /// When non-empty, the only sources admitted.
    pub allow: IpSet,
    /// Live connections one source may hold to this port; 0 is no cap.
    pub max_conn_per_ip: u32,
}

/// Why a connection was refused: the slots of the kernel's drop counters, in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source is in the port's deny list.
    Denied,
    /// The port has an allow list and the source is not in it.
    NotAllowed,
    /// The source already holds `max_conn_per_ip` live connections to the port.
    ConnectionLimit,
}

impl Refusal {
    /// The reason as metrics and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::NotAllowed => "not_allowed",
            Refusal::ConnectionLimit => "connection_limit",
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so lists and counts treat a client
/// of a dual-stack listener as the same source it is on an IPv4 one.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// An IPv4-mapped IPv6 network (`::ffff:192.0.2.0/120`) as the IPv4 network it is
/// (`192.0.2.0/24`): sources are compared as [`canonical`] addresses, and the kernel's guard
/// looks IPv4 packets up in its IPv4 trie, so both forms of a range cover the same clients.
pub fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

impl PortPolicy {
    /// True when the port needs no checking at all.
    pub fn is_open(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty() && self.max_conn_per_ip == 0
    }

    /// The list verdict for `source` (already canonical), ignoring the connection cap.
    pub fn check_lists(&self, source: IpAddr) -> Result<(), Refusal> {
        if self.deny.contains(source) {
            return Err(Refusal::Denied);
        }
        if !self.allow.is_empty() && !self.allow.contains(source) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }
}

/// Parses an address or a CIDR range as Kong's `ip_or_cidr` type accepts it: a plain IPv4
/// or IPv6 address (IPv6 may be bracketed), or one followed by `/` and a prefix length
/// written in plain decimal (`0`..`32`, `0`..`128`). Host bits may be set (`127.0.0.1/8`).
pub fn parse_ip_or_cidr(s: &str) -> Option<IpNet> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let ip = parse_ip(ip)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) => {
            let canonical = !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            let len: u8 = p.parse().ok().filter(|_| canonical)?;
            if len > max {
                return None;
            }
            len
        }
    };
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(v4) = s.parse::<std::net::Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Live connections per (port, source), shared by every worker, for the userspace cap.
#[derive(Debug, Default)]
pub struct PeerCounts {
    live: Mutex<HashMap<(u16, IpAddr), u32>>,
}

/// A live connection counted in [`PeerCounts`]; dropping it uncounts the connection.
#[derive(Debug)]
pub struct Counted {
    counts: Arc<PeerCounts>,
    key: (u16, IpAddr),
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut live = self.counts.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = live.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.key);
            }
        }
    }
}

impl PeerCounts {
    /// Admits a connection from `peer` to `port` under `policy`: `Ok(None)` for a port
    /// without a cap, `Ok(Some(counted))` holds the connection's place until dropped.
    pub fn admit(
        self: &Arc<Self>,
        policy: &ConnectionPolicy,
        port: u16,
        peer: IpAddr,
    ) -> Result<Option<Counted>, Refusal> {
        let Some(rules) = policy.ports.get(&port) else {
            return Ok(None);
        };
        let source = canonical(peer);
        rules.check_lists(source)?;
        if rules.max_conn_per_ip == 0 {
            return Ok(None);
        }
        let key = (port, source);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let n = live.entry(key).or_insert(0);
        if *n >= rules.max_conn_per_ip {
            return Err(Refusal::ConnectionLimit);
        }
        *n += 1;
        Ok(Some(Counted {
            counts: self.clone(),
            key,
        }))
    }

    /// Live connections per port, for metrics and `/status`.
    pub fn per_port(&self) -> BTreeMap<u16, u64> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for ((port, _), n) in live.iter() {
            *out.entry(*port).or_insert(0) += u64::from(*n);
        }
        out
    }
}

/// The accept-time check of a node: live counts and refusals by reason.
#[derive(Debug, Default)]
pub struct AcceptCheck {
    counts: Arc<PeerCounts>,
    refused: [AtomicU64; 3],
}

/// Connections refused at accept, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// In a deny list.
    pub denied: u64,
    /// Outside an allow list.
    pub not_allowed: u64,
    /// Over `max_connections_per_ip`.
    pub connection_limit: u64,
}

impl AcceptCheck {
    /// [`PeerCounts::admit`], counting refusals.
    pub fn admit(
        &self,
        policy: &ConnectionPolicy,
        port: u16,
        peer: IpAddr,
    ) -> Result<Option<Counted>, Refusal> {
        let verdict = self.counts.admit(policy, port, peer);
        if let Err(reason) = verdict {
            self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// Refusals since start.
    pub fn refused(&self) -> Refused {
        let n = |r: Refusal| self.refused[r as usize].load(Ordering::Relaxed);
        Refused {
            denied: n(Refusal::Denied),
            not_allowed: n(Refusal::NotAllowed),
            connection_limit: n(Refusal::ConnectionLimit),
        }
    }

    /// Live capped connections per port.
    pub fn live_per_port(&self) -> BTreeMap<u16, u64> {
        self.counts.per_port()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// An IPv4-mapped range covers the IPv4 clients it names, as the kernel's guard writes
    /// it as that IPv4 range: the two used to disagree.
    #[test]
    fn a_mapped_range_covers_the_ipv4_clients_it_names() {
        let deny = PortPolicy {
            deny: vec![net("::ffff:192.0.2.0/120")].into(),
            ..PortPolicy::default()
        };
        assert_eq!(deny.check_lists(ip("192.0.2.5")), Err(Refusal::Denied));
        assert_eq!(deny.check_lists(ip("192.0.3.5")), Ok(()));
        let allow = PortPolicy {
            allow: vec![net("::ffff:192.0.2.0/120")].into(),
            ..PortPolicy::default()
        };
        assert_eq!(allow.check_lists(ip("192.0.2.5")), Ok(()));
        assert_eq!(canonical_net(net("2001:db8::/32")), net("2001:db8::/32"));
        assert_eq!(canonical_net(net("::ffff:0:0/90")), net("::ffff:0:0/90"));
    }

    #[test]
    fn deny_comes_before_allow_as_in_kong() {
        let port = PortPolicy {
            deny: vec![net("10.0.0.0/8")].into(),
            allow: vec![net("10.1.0.0/16"), net("192.0.2.0/24")].into(),
            max_conn_per_ip: 0,
        };
        assert_eq!(port.check_lists(ip("10.1.2.3")), Err(Refusal::Denied));
        assert_eq!(
            port.check_lists(ip("198.51.100.1")),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(port.check_lists(ip("192.0.2.9")), Ok(()));
    }

    #[test]
    fn the_cap_counts_live_connections_per_source_and_port() {
        let mut policy = ConnectionPolicy::default();
        policy.ports.insert(
            80,
            PortPolicy {
                max_conn_per_ip: 2,
                ..PortPolicy::default()
            },
        );
        let counts = Arc::new(PeerCounts::default());
        let a = counts.admit(&policy, 80, ip("192.0.2.1")).expect("first");
        // A mapped address is the same source.
        let b = counts
            .admit(&policy, 80, ip("::ffff:192.0.2.1"))
            .expect("second");
        assert_eq!(
            counts.admit(&policy, 80, ip("192.0.2.1")).err(),
            Some(Refusal::ConnectionLimit)
        );
        assert!(counts.admit(&policy, 80, ip("192.0.2.2")).is_ok());
        assert!(
            counts.admit(&policy, 81, ip("192.0.2.1")).is_ok(),
            "open port"
        );
        drop(a);
        assert!(counts.admit(&policy, 80, ip("192.0.2.1")).is_ok());
        drop(b);
        assert_eq!(counts.per_port().get(&80), None, "every place given back");
    }
}
