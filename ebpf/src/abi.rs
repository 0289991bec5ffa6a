//! The Rust mirror of `include/gangway_abi.h`: every map key and value the programs share
//! with the loader, with the header's sizes asserted here as they are there.

/// `GW_LIST_DENY`: the port checks a deny list.
pub const LIST_DENY: u8 = 1;
/// `GW_LIST_ALLOW`: the port checks an allow list.
pub const LIST_ALLOW: u8 = 2;

/// `GW_STAT_*`: slots of the per-CPU drop counters.
pub const STAT_DENIED: u32 = 0;
/// A source outside an allow list.
pub const STAT_NOT_ALLOWED: u32 = 1;
/// A SYN from a source at `max_connections_per_ip`.
pub const STAT_CONN_LIMIT: u32 = 2;
/// Packets to a guarded port, dropped or not.
pub const STAT_CHECKED: u32 = 3;

/// `GW_LPM_FIXED_BITS`: generation, list and port, matched whole before the address.
pub const LPM_FIXED_BITS: u32 = 32;

/// `struct gw_port_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortKey {
    /// Policy generation (0 or 1).
    pub gen_: u8,
    /// Zero.
    pub pad: u8,
    /// Port, network byte order.
    pub port: [u8; 2],
}

/// `struct gw_port_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortCfg {
    /// `LIST_*` bits.
    pub lists: u32,
    /// Live connections per source; 0 is no cap.
    pub max_conn_ip: u32,
}

/// The data of `struct gw_lpm4_key` after its prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lpm4 {
    /// Policy generation.
    pub gen_: u8,
    /// `LIST_DENY` or `LIST_ALLOW`.
    pub list: u8,
    /// Port, network byte order.
    pub port: [u8; 2],
    /// IPv4 address, network byte order.
    pub addr: [u8; 4],
}

/// The data of `struct gw_lpm6_key` after its prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lpm6 {
    /// Policy generation.
    pub gen_: u8,
    /// `LIST_DENY` or `LIST_ALLOW`.
    pub list: u8,
    /// Port, network byte order.
    pub port: [u8; 2],
    /// IPv6 address.
    pub addr: [u8; 16],
}

/// `struct gw_src_key`: one source of connections to one port; IPv4 as `::ffff:a.b.c.d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SrcKey {
    /// Port, network byte order.
    pub port: [u8; 2],
    /// Zero.
    pub pad: [u8; 2],
    /// Source address (IPv6, or IPv4-mapped).
    pub addr: [u8; 16],
}

/// `struct gw_conn`: the kernel's TCP counters of one accepted connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent (acknowledged plus in flight).
    pub bytes_out: u64,
    /// Segments received.
    pub segs_in: u32,
    /// Segments sent.
    pub segs_out: u32,
    /// Segments retransmitted.
    pub retrans: u32,
    /// 1: the socket reached TCP_CLOSE.
    pub closed: u32,
    /// The source the connection is counted under.
    pub src: SrcKey,
}

/// `struct gw_closed_conn`: a record of the `gw_closed` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClosedConn {
    /// The socket cookie.
    pub cookie: u64,
    /// Its final counters.
    pub conn: Conn,
}

// SAFETY: plain-old-data: repr(C), integer fields only, no padding (sizes asserted below).
unsafe impl aya::Pod for PortKey {}
// SAFETY: as above.
unsafe impl aya::Pod for PortCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for Lpm4 {}
// SAFETY: as above.
unsafe impl aya::Pod for Lpm6 {}
// SAFETY: as above.
unsafe impl aya::Pod for SrcKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Conn {}

const _: () = assert!(size_of::<PortKey>() == 4);
const _: () = assert!(size_of::<PortCfg>() == 8);
const _: () = assert!(size_of::<Lpm4>() + 4 == 12);
const _: () = assert!(size_of::<Lpm6>() + 4 == 24);
const _: () = assert!(size_of::<SrcKey>() == 20);
const _: () = assert!(size_of::<Conn>() == 56);
const _: () = assert!(size_of::<ClosedConn>() == 64);
