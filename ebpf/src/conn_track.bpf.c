/* The connection tracker (sockops, on gangway's own cgroup): for each connection accepted
 * on a guarded port, the live count per (port, source) that the IP guard's connection
 * limit reads, and at its close the kernel's TCP counters (bytes, segments, retransmits),
 * with its socket cookie, for the loader's traffic totals.
 *
 * Why sockops alone and not cgroup_skb: tcp_sock already counts payload bytes, segments
 * and retransmits; sockops reads them once, as the connection closes, where a cgroup_skb
 * program would run and look up a map on every packet to count the same.
 *
 * Why no map per live connection: nothing reads a live connection's counters (the log
 * phase takes TCP_INFO), and the socket itself says at its close what a map entry would
 * have kept (its source and port; its counters). Only accepted connections on guarded
 * ports get the state callback, so every TCP_CLOSE seen here is one counted in gw_live.
 * Neither RTT samples nor the states before TCP_CLOSE are asked for: each would cost a
 * program run per ACK or per state. */
#include <linux/bpf.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

static __always_inline void gw_read_counts(struct bpf_sock_ops *skops, struct gw_conn *c)
{
    c->bytes_in = skops->bytes_received;
    c->bytes_out = skops->bytes_acked + (__u32)(skops->snd_nxt - skops->snd_una);
    c->segs_in = skops->segs_in;
    c->segs_out = skops->segs_out;
    c->retrans = skops->total_retrans;
}

static __always_inline int gw_source(struct bpf_sock_ops *skops, struct gw_src_key *src)
{
    __u16 port = (__u16)skops->local_port; /* host byte order */
    src->port[0] = port >> 8;
    src->port[1] = port & 0xff;
    if (skops->family == AF_INET) {
        __u32 a = skops->remote_ip4;
        src->addr[10] = 0xff;
        src->addr[11] = 0xff;
        __builtin_memcpy(&src->addr[12], &a, 4);
        return 1;
    }
    if (skops->family == AF_INET6) {
        __u32 a[4] = {skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
                      skops->remote_ip6[3]};
        __builtin_memcpy(src->addr, a, 16);
        return 1;
    }
    return 0;
}

static __always_inline void gw_established(struct bpf_sock_ops *skops)
{
    struct gw_src_key src = {};
    if (!gw_source(skops, &src) || !gw_port(src.port))
        return;
    __u32 one = 1;
    if (bpf_map_update_elem(&gw_live, &src, &one, BPF_NOEXIST)) {
        __u32 *live = bpf_map_lookup_elem(&gw_live, &src);
        if (!live)
            return; /* gw_live is full: the connection goes uncounted, and untracked */
        __sync_fetch_and_add(live, 1);
    }
    bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline void gw_closed_now(struct bpf_sock_ops *skops)
{
    struct gw_closed_conn *out = bpf_ringbuf_reserve(&gw_closed, sizeof(*out), 0);
    struct gw_src_key src = {};
    struct gw_src_key *key = out ? &out->conn.src : &src;
    if (out)
        __builtin_memset(key, 0, sizeof(*key));
    if (!gw_source(skops, key)) {
        if (out)
            bpf_ringbuf_discard(out, 0);
        return;
    }
    __u32 *live = bpf_map_lookup_elem(&gw_live, key);
    if (live && *live > 0) {
        __sync_fetch_and_add(live, -1);
        /* A source's last connection frees its entry: kept at zero, entries filled the map
         * and every new source then went uncounted, past the limit. A connection from the
         * source established in between is then uncounted (the limit admits one more). */
        if (*live == 0)
            bpf_map_delete_elem(&gw_live, key);
    }
    /* A full ring loses this record (the totals undercount), never the live count. */
    if (out) {
        out->cookie = bpf_get_socket_cookie(skops);
        gw_read_counts(skops, &out->conn);
        out->conn.closed = 1;
        bpf_ringbuf_submit(out, 0);
    }
}

SEC("sockops")
int gw_conn_track(struct bpf_sock_ops *skops)
{
    switch (skops->op) {
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
        gw_established(skops);
        break;
    case BPF_SOCK_OPS_STATE_CB:
        /* args: the old state, the new one. */
        if (skops->args[1] == BPF_TCP_CLOSE && skops->args[0] != BPF_TCP_CLOSE)
            gw_closed_now(skops);
        break;
    }
    return 1;
}
