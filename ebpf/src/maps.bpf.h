/* Maps shared by the IP guard and the connection tracker. Both programs are built from one
 * object (gangway.bpf.c includes both), so the maps exist once and both see them. */
#ifndef GANGWAY_MAPS_BPF_H
#define GANGWAY_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "gangway_abi.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} gw_active SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct gw_port_key);
    __type(value, struct gw_port_cfg);
} gw_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct gw_lpm4_key);
    __type(value, __u8);
} gw_lpm4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct gw_lpm6_key);
    __type(value, __u8);
} gw_lpm6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, GW_STAT_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} gw_stats SEC(".maps");

/* Resized by the loader to the node's connection capacity. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct gw_src_key);
    __type(value, __u32);
} gw_live SEC(".maps");

/* Final counters of closed connections, for the loader's traffic totals. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} gw_closed SEC(".maps");

static __always_inline struct gw_port_cfg *gw_port(const __u8 port_be[2])
{
    __u32 zero = 0;
    __u32 *gen = bpf_map_lookup_elem(&gw_active, &zero);
    if (!gen)
        return 0;
    struct gw_port_key key = {.gen = (__u8)*gen, .port = {port_be[0], port_be[1]}};
    return bpf_map_lookup_elem(&gw_ports, &key);
}

#endif
