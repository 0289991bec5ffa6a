/* The connection tracker (sockops, on gangway's own cgroup): for each connection accepted
 * on a guarded port, the kernel's TCP counters (bytes, segments, retransmits) keyed by
 * socket cookie, and the live count per (port, source) that the IP guard's connection
 * limit reads.
 *
 * Why sockops alone and not cgroup_skb: tcp_sock already counts payload bytes, segments
 * and retransmits; sockops reads them at each state change and RTT sample, where a
 * cgroup_skb program would run and look up a map on every packet to count the same. */
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
    struct gw_conn conn = {};
    if (!gw_source(skops, &conn.src))
        return;
    if (!gw_port(conn.src.port))
        return;
    __u64 cookie = bpf_get_socket_cookie(skops);
    gw_read_counts(skops, &conn);
    if (bpf_map_update_elem(&gw_conns, &cookie, &conn, BPF_ANY))
        return;
    __u32 one = 1;
    if (bpf_map_update_elem(&gw_live, &conn.src, &one, BPF_NOEXIST)) {
        __u32 *live = bpf_map_lookup_elem(&gw_live, &conn.src);
        if (live)
            __sync_fetch_and_add(live, 1);
    }
    bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTT_CB_FLAG);
}

static __always_inline void gw_update(struct bpf_sock_ops *skops, int closing)
{
    __u64 cookie = bpf_get_socket_cookie(skops);
    struct gw_conn *conn = bpf_map_lookup_elem(&gw_conns, &cookie);
    if (!conn)
        return;
    gw_read_counts(skops, conn);
    if (!closing || conn->closed)
        return;
    conn->closed = 1;
    __u32 *live = bpf_map_lookup_elem(&gw_live, &conn->src);
    if (live && *live > 0)
        __sync_fetch_and_add(live, -1);
    /* A full ring loses this record (the totals undercount), never the live count. */
    struct gw_closed_conn *out = bpf_ringbuf_reserve(&gw_closed, sizeof(*out), 0);
    if (out) {
        out->cookie = cookie;
        __builtin_memcpy(&out->conn, conn, sizeof(*conn));
        bpf_ringbuf_submit(out, 0);
    }
    bpf_map_delete_elem(&gw_conns, &cookie);
}

SEC("sockops")
int gw_conn_track(struct bpf_sock_ops *skops)
{
    switch (skops->op) {
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
        gw_established(skops);
        break;
    case BPF_SOCK_OPS_RTT_CB:
        gw_update(skops, 0);
        break;
    case BPF_SOCK_OPS_STATE_CB:
        gw_update(skops, skops->args[1] == BPF_TCP_CLOSE);
        break;
    }
    return 1;
}
