/* The ABI between gangway's eBPF programs and its loader (ebpf/src/abi.rs mirrors every
 * struct here, with size asserts on both sides). Map and program names are at most 15
 * characters: the kernel keeps 16 bytes, the last a NUL. */
#ifndef GANGWAY_ABI_H
#define GANGWAY_ABI_H

#include <linux/types.h>

/* Bits of gw_port_cfg.lists: which source lists a guarded port checks. A source is dropped
 * when it is in the deny list, or when the port has an allow list and the source is not in
 * it (Kong's ip-restriction: deny first, then allow). With neither, only the connection
 * limit applies. */
#define GW_LIST_DENY 1
#define GW_LIST_ALLOW 2

/* Slots of gw_stats, a per-CPU array of packet counts. */
#define GW_STAT_DENIED 0      /* source in a deny list */
#define GW_STAT_NOT_ALLOWED 1 /* source outside an allow list */
#define GW_STAT_CONN_LIMIT 2  /* SYN from a source at max_connections_per_ip */
#define GW_STAT_CHECKED 3     /* TCP packets to a guarded port, dropped or not */
#define GW_STAT_SLOTS 4

/* Policy maps come in two generations; gw_active names the one the programs read, so that
 * the loader writes a whole new policy beside the live one and flips to it at once. */
#define GW_GENERATIONS 2

/* gw_ports key: a guarded listener port of one generation. */
struct gw_port_key {
    __u8 gen;
    __u8 pad;
    __u8 port[2]; /* network byte order */
};

/* gw_ports value. */
struct gw_port_cfg {
    __u32 lists;        /* GW_LIST_* bits */
    __u32 max_conn_ip;  /* live connections per source address; 0 = no limit */
};

/* gw_lpm4 / gw_lpm6 keys. The trie matches bit prefixes of everything after prefixlen,
 * so generation, list and port come first and are always matched whole:
 * prefixlen = GW_LPM_FIXED_BITS + the address prefix length. */
struct gw_lpm4_key {
    __u32 prefixlen;
    __u8 gen;
    __u8 list; /* GW_LIST_DENY or GW_LIST_ALLOW */
    __u8 port[2];
    __u8 addr[4];
};

struct gw_lpm6_key {
    __u32 prefixlen;
    __u8 gen;
    __u8 list;
    __u8 port[2];
    __u8 addr[16];
};

#define GW_LPM_FIXED_BITS 32

/* gw_live key: live connections from one source to one port. An IPv4 source (or an
 * IPv4-mapped IPv6 one) is stored as ::ffff:a.b.c.d, so both programs agree on it. */
struct gw_src_key {
    __u8 port[2]; /* network byte order */
    __u8 pad[2];
    __u8 addr[16];
};

/* A closed connection's counters: the kernel's own TCP counters (tcp_sock), read as the
 * socket reaches TCP_CLOSE, and the source it was counted under in gw_live. */
struct gw_conn {
    __u64 bytes_in;   /* payload bytes received */
    __u64 bytes_out;  /* payload bytes sent: acknowledged plus in flight */
    __u32 segs_in;
    __u32 segs_out;
    __u32 retrans;    /* segments retransmitted */
    __u32 closed;     /* 1: the socket reached TCP_CLOSE and left gw_live */
    struct gw_src_key src;
};

/* gw_closed record: a connection's final counters and its socket cookie, sent when its
 * socket reaches TCP_CLOSE. */
struct gw_closed_conn {
    __u64 cookie;
    struct gw_conn conn;
};

/* The Rust mirror (ebpf/src/abi.rs) asserts the same sizes. */
_Static_assert(sizeof(struct gw_port_key) == 4, "gw_port_key");
_Static_assert(sizeof(struct gw_port_cfg) == 8, "gw_port_cfg");
_Static_assert(sizeof(struct gw_lpm4_key) == 12, "gw_lpm4_key");
_Static_assert(sizeof(struct gw_lpm6_key) == 24, "gw_lpm6_key");
_Static_assert(sizeof(struct gw_src_key) == 20, "gw_src_key");
_Static_assert(sizeof(struct gw_conn) == 56, "gw_conn");
_Static_assert(sizeof(struct gw_closed_conn) == 64, "gw_closed_conn");

#endif
