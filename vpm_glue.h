/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C side of vpm's Rust/C boundary.
 *
 * vpm_glue.c wraps what kernel::bindings does not expose (static inline
 * functions and macros, structures Rust must not lay out by hand); its
 * Rust twins are generated from this header (gen/vpm_glue.rs, by
 * tools/glue-gen.sh; make check-spec fails on drift).  vpm_rs_hook is
 * implemented in Rust (vpm_nf.rs, through vpm_sys/nf.rs) and called from
 * here.
 */
#ifndef _VPM_GLUE_H
#define _VPM_GLUE_H

#include <linux/types.h>

struct genl_info;
struct netlink_callback;
struct nlattr;
struct net;
struct net_device;
struct nf_hook_ops;
struct sk_buff;

/* Implemented in Rust. */
unsigned int vpm_rs_hook(void *priv, struct sk_buff *skb, u8 pf,
			 unsigned int hooknum, struct net *net,
			 const struct net_device *in);

/* Per-network-namespace state. */
void *vpm_net_generic(const struct net *net, unsigned int id);

/* Netfilter hooks of one namespace: a copy of the template per namespace,
 * registered while the namespace has something for vpm. */
extern const unsigned int vpm_hook_count;
struct nf_hook_ops *vpm_hooks_alloc(void *priv);
int vpm_hooks_register(struct net *net, struct nf_hook_ops *ops);
void vpm_hooks_unregister(struct net *net, struct nf_hook_ops *ops);
void vpm_hooks_free(struct nf_hook_ops *ops);

/* Packets. */
/* What the packet path reads of an skb, fetched in one call. */
struct vpm_skb_head {
	int nh;		/* network header offset from data (0 at the hooks) */
	u32 linear;	/* bytes in the linear part, from data */
	u32 len;	/* bytes in all, from data */
	u8 csum_seed;	/* the transport checksum field holds a pseudo-header
			 * seed, completed later over the final bytes */
};
const u8 *vpm_skb_head(const struct sk_buff *skb, struct vpm_skb_head *h);
u8 *vpm_skb_writable(struct sk_buff *skb, unsigned int len);
bool vpm_skb_dst_local(const struct sk_buff *skb);
bool vpm_addr_local(struct net *net, const struct net_device *dev, u8 pf,
		    const u8 *addr);
bool vpm_src_martian(struct net *net, const struct net_device *dev, u8 pf,
		     const u8 *addr);
bool vpm_skb_received(const struct sk_buff *skb, u8 pf);
#define VPM_SENDER_SOCKET	(1U << 31)
#define VPM_SENDER_CONTROL	(1U << 30)
#define VPM_SENDER_CONNECTED	(1U << 29)
u32 vpm_skb_sender(const struct sk_buff *skb);
u64 vpm_skb_cgroup_ancestor(const struct sk_buff *skb, int level);

s64 vpm_cgroup_id(const char *path, int *level);
u32 vpm_now_secs(void);

/* Reserved ports (net.ipv4.ip_local_reserved_ports). */
bool vpm_port_reserve(struct net *net, u16 port);
void vpm_port_unreserve(struct net *net, u16 port);

/* Per-CPU u64 counters. */
u64 __percpu *vpm_pcpu_alloc(unsigned int n);
void vpm_pcpu_free(u64 __percpu *ctrs);
void vpm_pcpu_add(u64 __percpu *ctrs, unsigned int idx, u64 val);
void vpm_pcpu_add2(u64 __percpu *ctrs, unsigned int i, u64 v, unsigned int j,
		   u64 w);
u64 vpm_pcpu_sum(u64 __percpu *ctrs, unsigned int idx);
void vpm_pcpu_reset(u64 __percpu *ctrs, unsigned int idx);

/* Generic netlink. */
struct net *vpm_genl_net(const struct genl_info *info);
void *vpm_genl_reply_header(struct sk_buff *skb, struct genl_info *info);
int vpm_genl_reply_send(struct sk_buff *skb, struct genl_info *info);
void vpm_genl_set_err(struct genl_info *info, const char *msg, bool copy,
		      u16 missing);
const struct nlattr *vpm_genl_attr(const struct genl_info *info, u16 type);

/* Generic netlink dumps. */
struct net *vpm_dump_net(const struct netlink_callback *cb);
void *vpm_dump_ctx(struct netlink_callback *cb);
extern const size_t vpm_dump_ctx_size;
void *vpm_dump_msg_start(struct sk_buff *skb, struct netlink_callback *cb,
			 u32 gen);
void vpm_dump_msg_end(struct sk_buff *skb, void *hdr);
void vpm_dump_msg_cancel(struct sk_buff *skb, void *hdr);
unsigned int vpm_skb_len(const struct sk_buff *skb);

/* Events (multicast group "events"). */
struct sk_buff *vpm_event_new(struct net *net, u8 cmd, void **hdr);
void vpm_event_send(struct net *net, struct sk_buff *skb, void *hdr);

/* Dump consistency: the table generation of the current dumpit call. */
void vpm_dump_set_seq(struct netlink_callback *cb, u32 gen);

/* Whether a TCP or UDP socket of @net is bound to @port. */
bool vpm_port_bound(struct net *net, u16 port);

/*
 * The in-kernel micro-benchmark (vpm_bench.rs), in vpm_bench_glue.c, which
 * only a VPM_BENCH=1 build compiles: a packet-like skb to run the hook on.
 */
struct net *vpm_bench_current_net(void);
struct sk_buff *vpm_bench_skb_new(const u8 *data, unsigned int len, u8 pf);
void vpm_bench_skb_free(struct sk_buff *skb);
u8 *vpm_bench_skb_nh(struct sk_buff *skb);
void vpm_bench_bh_disable(void);
void vpm_bench_bh_enable(void);
u64 vpm_bench_ns(void);

#endif /* _VPM_GLUE_H */
