/* The IP guard (XDP): drops TCP packets to a guarded listener port from a denied source,
 * from a source outside an allow list, and SYNs from a source already holding
 * max_connections_per_ip live connections to that port. Everything it does not parse
 * (VLAN tags, IP options it cannot skip, IPv6 extension headers, non-TCP) passes. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

static __always_inline void gw_count(__u32 slot)
{
    __u64 *n = bpf_map_lookup_elem(&gw_stats, &slot);
    if (n)
        *n += 1; /* per-CPU: no other CPU writes this slot */
}

static __always_inline int gw_drop(__u32 slot)
{
    gw_count(slot);
    return XDP_DROP;
}

/* The verdict for a TCP packet from `src` (::ffff:a.b.c.d for IPv4) to `dport`. */
static __always_inline int gw_judge(const struct gw_port_cfg *cfg, const struct gw_src_key *src,
                                    int listed, const struct tcphdr *tcp)
{
    gw_count(GW_STAT_CHECKED);
    if (listed & GW_LIST_DENY)
        return gw_drop(GW_STAT_DENIED);
    if ((cfg->lists & GW_LIST_ALLOW) && !(listed & GW_LIST_ALLOW))
        return gw_drop(GW_STAT_NOT_ALLOWED);
    if (cfg->max_conn_ip && tcp->syn && !tcp->ack) {
        __u32 *live = bpf_map_lookup_elem(&gw_live, src);
        if (live && *live >= cfg->max_conn_ip)
            return gw_drop(GW_STAT_CONN_LIMIT);
    }
    return XDP_PASS;
}

/* Which of the port's lists hold the source: `key` is looked up once per list, with its
 * list byte (`*list`) set to each in turn. */
static __always_inline int gw_listed(void *trie, void *key, __u8 *list, __u32 lists)
{
    int listed = 0;
    if (lists & GW_LIST_DENY) {
        *list = GW_LIST_DENY;
        if (bpf_map_lookup_elem(trie, key))
            listed |= GW_LIST_DENY;
    }
    if (lists & GW_LIST_ALLOW) {
        *list = GW_LIST_ALLOW;
        if (bpf_map_lookup_elem(trie, key))
            listed |= GW_LIST_ALLOW;
    }
    return listed;
}

/* The port's policy in generation `gen`, or null for a port that is not guarded. */
static __always_inline struct gw_port_cfg *gw_port_of(__u8 gen, const struct tcphdr *tcp)
{
    const __u8 *dport = (const __u8 *)&tcp->dest;
    struct gw_port_key key = {.gen = gen, .port = {dport[0], dport[1]}};
    return bpf_map_lookup_elem(&gw_ports, &key);
}

SEC("xdp")
int gw_ip_guard(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;

    __u32 zero = 0;
    __u32 *active = bpf_map_lookup_elem(&gw_active, &zero);
    if (!active)
        return XDP_PASS;
    __u8 gen = (__u8)*active;
    struct gw_src_key src = {};
    struct gw_port_cfg *cfg;
    struct tcphdr *tcp;
    int listed;

    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP)
            return XDP_PASS;
        /* A later fragment has no TCP header; the first one was judged. */
        if (ip->frag_off & bpf_htons(0x1fff))
            return XDP_PASS;
        __u32 ihl = ip->ihl * 4;
        if (ihl < sizeof(*ip))
            return XDP_PASS;
        tcp = (void *)ip + ihl;
        if ((void *)(tcp + 1) > end || !(cfg = gw_port_of(gen, tcp)))
            return XDP_PASS;
        struct gw_lpm4_key key = {.prefixlen = GW_LPM_FIXED_BITS + 32, .gen = gen};
        __builtin_memcpy(key.port, &tcp->dest, 2);
        __builtin_memcpy(key.addr, &ip->saddr, 4);
        listed = gw_listed(&gw_lpm4, &key, &key.list, cfg->lists);
        src.addr[10] = 0xff;
        src.addr[11] = 0xff;
        __builtin_memcpy(&src.addr[12], &ip->saddr, 4);
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
            return XDP_PASS;
        tcp = (void *)(ip6 + 1);
        if ((void *)(tcp + 1) > end || !(cfg = gw_port_of(gen, tcp)))
            return XDP_PASS;
        struct gw_lpm6_key key = {.prefixlen = GW_LPM_FIXED_BITS + 128, .gen = gen};
        __builtin_memcpy(key.port, &tcp->dest, 2);
        __builtin_memcpy(key.addr, &ip6->saddr, 16);
        listed = gw_listed(&gw_lpm6, &key, &key.list, cfg->lists);
        __builtin_memcpy(src.addr, &ip6->saddr, 16);
    } else {
        return XDP_PASS;
    }
    __builtin_memcpy(src.port, &tcp->dest, 2);
    return gw_judge(cfg, &src, listed, tcp);
}
