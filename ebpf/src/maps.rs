//! Reading and writing the programs' maps.
//!
//! The policy maps (`gw_ports`, `gw_lpm4`, `gw_lpm6`) hold two generations side by side, and
//! `gw_active` names the one the programs read. An update clears and rewrites the other
//! generation, then flips `gw_active`: a packet is judged by the old policy or the new one,
//! never by a half-written one, and no allowed packet is dropped on the way. The previous
//! generation stays in place until the next update clears it, so a program that read
//! `gw_active` just before the flip still finds every entry it looks up.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use aya::Ebpf;
use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf};
use gangway_net::conn_policy::{ConnectionPolicy, PortPolicy, canonical_net};
use ipnet::IpNet;

use crate::abi::{self, ClosedConn, Lpm4, Lpm6, PortCfg, PortKey, SrcKey};

/// Packets the IP guard counted, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Dropped: source in a deny list.
    pub denied: u64,
    /// Dropped: source outside an allow list.
    pub not_allowed: u64,
    /// Dropped: SYN from a source at `max_connections_per_ip`.
    pub connection_limit: u64,
    /// Packets to guarded ports, dropped or not.
    pub checked: u64,
}

fn map_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> io::Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| io::Error::other(format!("map {name} missing from the object")))
}

pub fn map<'a>(ebpf: &'a Ebpf, name: &str) -> io::Result<&'a aya::maps::Map> {
    ebpf.map(name)
        .ok_or_else(|| io::Error::other(format!("map {name} missing from the object")))
}

/// Clears generation `generation` and writes `policy` into it.
pub fn write_generation(
    ebpf: &mut Ebpf,
    generation: u8,
    policy: &ConnectionPolicy,
) -> io::Result<()> {
    {
        let mut ports: HashMap<&mut MapData, PortKey, PortCfg> =
            HashMap::try_from(map_mut(ebpf, "gw_ports")?).map_err(map_error)?;
        let stale: Vec<PortKey> = ports
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.gen_ == generation)
            .collect();
        for key in stale {
            ports.remove(&key).map_err(map_error)?;
        }
        for (port, rules) in &policy.ports {
            let key = PortKey {
                gen_: generation,
                pad: 0,
                port: port.to_be_bytes(),
            };
            let cfg = PortCfg {
                lists: u32::from(lists_of(rules)),
                max_conn_ip: rules.max_conn_per_ip,
            };
            ports.insert(key, cfg, 0).map_err(map_error)?;
        }
    }
    rewrite_trie(
        ebpf,
        "gw_lpm4",
        policy,
        |k: &Lpm4| k.gen_ == generation,
        |port, list, net| {
            let IpNet::V4(net) = net else { return None };
            let data = Lpm4 {
                gen_: generation,
                list,
                port: port.to_be_bytes(),
                addr: net.network().octets(),
            };
            Some(Key::new(lpm_bits(net.prefix_len()), data))
        },
    )?;
    rewrite_trie(
        ebpf,
        "gw_lpm6",
        policy,
        |k: &Lpm6| k.gen_ == generation,
        |port, list, net| {
            let IpNet::V6(net) = net else { return None };
            let data = Lpm6 {
                gen_: generation,
                list,
                port: port.to_be_bytes(),
                addr: net.network().octets(),
            };
            Some(Key::new(lpm_bits(net.prefix_len()), data))
        },
    )
}

fn lpm_bits(prefix_len: u8) -> u32 {
    abi::LPM_FIXED_BITS + u32::from(prefix_len)
}

/// Removes the trie's entries that `stale` picks, then inserts the key `make` gives each
/// of the policy's networks (`None` for a network of the other family).
fn rewrite_trie<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
    policy: &ConnectionPolicy,
    stale: impl Fn(&K) -> bool,
    make: impl Fn(u16, u8, IpNet) -> Option<Key<K>>,
) -> io::Result<()> {
    let mut trie: LpmTrie<&mut MapData, K, u8> =
        LpmTrie::try_from(map_mut(ebpf, name)?).map_err(map_error)?;
    let old: Vec<Key<K>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| stale(&k.data()))
        .collect();
    for key in old {
        trie.remove(&key).map_err(map_error)?;
    }
    for (port, list, net) in entries(policy) {
        if let Some(key) = make(port, list, net) {
            trie.insert(&key, 1, 0).map_err(map_error)?;
        }
    }
    Ok(())
}

fn lists_of(rules: &PortPolicy) -> u8 {
    let mut lists = 0;
    if !rules.deny.is_empty() {
        lists |= abi::LIST_DENY;
    }
    if !rules.allow.is_empty() {
        lists |= abi::LIST_ALLOW;
    }
    lists
}

/// Every (port, list, network) of the policy; an IPv4-mapped IPv6 network is written as the
/// IPv4 network it is, since the guard looks IPv4 packets up in the IPv4 trie.
fn entries(policy: &ConnectionPolicy) -> impl Iterator<Item = (u16, u8, IpNet)> + '_ {
    policy.ports.iter().flat_map(|(port, rules)| {
        let deny = rules.deny.iter().map(move |n| (*port, abi::LIST_DENY, *n));
        let allow = rules
            .allow
            .iter()
            .map(move |n| (*port, abi::LIST_ALLOW, *n));
        deny.chain(allow).map(|(p, l, n)| (p, l, canonical_net(n)))
    })
}

/// The policy of the generation the programs read: per port, its list bits, its cap, and
/// how many deny and allow entries it has.
pub fn active_ports(
    active: &aya::maps::Map,
    ports: &aya::maps::Map,
    lpm4: &aya::maps::Map,
    lpm6: &aya::maps::Map,
) -> io::Result<Vec<PortReport>> {
    let active: Array<&MapData, u32> = Array::try_from(active).map_err(map_error)?;
    let generation = active.get(&0, 0).map_err(map_error)? as u8;
    let ports: HashMap<&MapData, PortKey, PortCfg> = HashMap::try_from(ports).map_err(map_error)?;
    let mut out: Vec<PortReport> = ports
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| k.gen_ == generation)
        .map(|(k, cfg)| PortReport {
            port: u16::from_be_bytes(k.port),
            max_conn_per_ip: cfg.max_conn_ip,
            ..PortReport::default()
        })
        .collect();
    let lpm4: LpmTrie<&MapData, Lpm4, u8> = LpmTrie::try_from(lpm4).map_err(map_error)?;
    let lpm6: LpmTrie<&MapData, Lpm6, u8> = LpmTrie::try_from(lpm6).map_err(map_error)?;
    let v4 = lpm4.keys().filter_map(Result::ok).map(|k| {
        let d = k.data();
        (d.gen_, d.list, d.port)
    });
    let v6 = lpm6.keys().filter_map(Result::ok).map(|k| {
        let d = k.data();
        (d.gen_, d.list, d.port)
    });
    for (entry_gen, list, port) in v4.chain(v6) {
        let port = u16::from_be_bytes(port);
        let Some(report) = out.iter_mut().find(|r| r.port == port) else {
            continue;
        };
        if entry_gen != generation {
            continue;
        }
        if list == abi::LIST_DENY {
            report.deny_entries += 1;
        } else {
            report.allow_entries += 1;
        }
    }
    out.sort_by_key(|r| r.port);
    Ok(out)
}

/// One guarded port as the maps hold it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// Deny-list prefixes.
    pub deny_entries: usize,
    /// Allow-list prefixes.
    pub allow_entries: usize,
    /// Live connections one source may hold; 0 is no cap.
    pub max_conn_per_ip: u32,
}

/// Points the programs at generation `generation`.
pub fn activate(ebpf: &mut Ebpf, generation: u8) -> io::Result<()> {
    let mut active: Array<&mut MapData, u32> =
        Array::try_from(map_mut(ebpf, "gw_active")?).map_err(map_error)?;
    active.set(0, u32::from(generation), 0).map_err(map_error)
}

pub fn drops(stats: &aya::maps::Map) -> io::Result<DropCounts> {
    let stats: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(stats).map_err(map_error)?;
    let sum = |slot: u32| -> io::Result<u64> {
        Ok(stats
            .get(&slot, 0)
            .map_err(map_error)?
            .iter()
            .copied()
            .sum())
    };
    Ok(DropCounts {
        denied: sum(abi::STAT_DENIED)?,
        not_allowed: sum(abi::STAT_NOT_ALLOWED)?,
        connection_limit: sum(abi::STAT_CONN_LIMIT)?,
        checked: sum(abi::STAT_CHECKED)?,
    })
}

fn source_ip(key: &SrcKey) -> IpAddr {
    IpAddr::from(key.addr).to_canonical()
}

pub fn live_sources(live: &aya::maps::Map) -> io::Result<Vec<(u16, IpAddr, u32)>> {
    let live: HashMap<&MapData, SrcKey, u32> = HashMap::try_from(live).map_err(map_error)?;
    let mut out: Vec<(u16, IpAddr, u32)> = live
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (u16::from_be_bytes(k.port), source_ip(&k), n))
        .collect();
    out.sort();
    Ok(out)
}

pub fn live_per_port(live: &aya::maps::Map) -> io::Result<BTreeMap<u16, u64>> {
    let mut out = BTreeMap::new();
    for (port, _, n) in live_sources(live)? {
        *out.entry(port).or_insert(0) += u64::from(n);
    }
    Ok(out)
}

/// Traffic of the connections closed on one port, from the kernel's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections closed.
    pub connections: u64,
    /// Payload bytes received from clients.
    pub bytes_in: u64,
    /// Payload bytes sent to clients.
    pub bytes_out: u64,
    /// Segments received.
    pub segs_in: u64,
    /// Segments sent.
    pub segs_out: u64,
    /// Segments retransmitted.
    pub retrans: u64,
}

/// Adds every record waiting in the `gw_closed` ring to `totals`, by port; returns how
/// many there were.
pub fn drain_closed(ring: &mut RingBuf<MapData>, totals: &mut BTreeMap<u16, Traffic>) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        if item.len() < size_of::<ClosedConn>() {
            continue;
        }
        // SAFETY: the record is a `struct gw_closed_conn` (size checked above), plain old
        // data; read unaligned since the ring guarantees only 8-byte alignment.
        let record: ClosedConn = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        let c = record.conn;
        let t = totals.entry(u16::from_be_bytes(c.src.port)).or_default();
        t.connections += 1;
        t.bytes_in += c.bytes_in;
        t.bytes_out += c.bytes_out;
        t.segs_in += u64::from(c.segs_in);
        t.segs_out += u64::from(c.segs_out);
        t.retrans += u64::from(c.retrans);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_networks_are_written_as_ipv4() {
        let mapped: IpNet = "::ffff:192.0.2.0/120".parse().expect("cidr");
        let policy = ConnectionPolicy {
            ports: [(
                8000,
                PortPolicy {
                    deny: vec![mapped].into(),
                    ..PortPolicy::default()
                },
            )]
            .into(),
        };
        let written: Vec<_> = entries(&policy).collect();
        let v4 = "192.0.2.0/24".parse::<IpNet>().expect("cidr");
        assert_eq!(written, [(8000, abi::LIST_DENY, v4)]);
    }
}
