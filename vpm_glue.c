// SPDX-License-Identifier: GPL-2.0
/*
 * Thin C glue for vpm.
 *
 * Only what Rust cannot do through kernel::bindings lives here: structures
 * kernel::bindings does not describe (nf_hook_ops, nf_hook_state) and static
 * inline helpers or macros (net_generic, this_cpu_add, genlmsg_reply,
 * genl_info_net).  Its Rust side is vpm_sys/ (the prototypes in ffi.rs).
 *
 * Every decision about packets and the table is made in Rust, with two
 * exceptions that belong to the netfilter registration kept here: where
 * vpm's hooks sit (the hook and priority table below, see "Where vpm sits
 * relative to conntrack and NAT") and what "sent by this host" and "a
 * local address" mean to the kernel (vpm_skb_received, vpm_skb_sender,
 * vpm_addr_local: the facts, not what vpm does with them).
 */
#include <linux/cgroup.h>
#include <linux/inetdevice.h>
#include <linux/module.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/netfilter_bridge.h>
#include <net/addrconf.h>
#include <net/dst.h>
#include <net/route.h>
#include <net/genetlink.h>
#include <net/inet_hashtables.h>
#include <net/ip.h>
#include <net/sock.h>
#include <net/tcp_states.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/udp.h>

#include "vpm_glue.h"
#include "gen/vpm_nl_gen.h"
#include <uapi/linux/vpm.h>

/*
 * modinfo that module! (vpm_mod.rs) has no field for, or spells only as a
 * hand-written string: the version (Kbuild passes vpm_mod.rs's VERSION, the
 * one get-status reports), and the alias through which the kernel loads
 * vpm.ko on the first lookup of the "vpm" generic netlink family (genl's
 * request_module of "net-pf-16-proto-16-family-vpm"), so `vpmctl add`
 * works before anyone ran modprobe.  The kernel's own macro spells it from
 * the uapi header's family name.
 */
MODULE_ALIAS_GENL_FAMILY(VPM_FAMILY_NAME);
MODULE_VERSION(VPM_VERSION);

#ifndef CONFIG_64BIT
#error "vpm reads per-CPU u64 counters without a seqcount: 64-bit only"
#endif

/* ---- per-network-namespace state ------------------------------------- */

void *vpm_net_generic(const struct net *net, unsigned int id)
{
	return net_generic(net, id);
}

/* ---- netfilter hooks ---------------------------------------------------- */

static unsigned int vpm_hook_entry(void *priv, struct sk_buff *skb,
				   const struct nf_hook_state *state)
{
	return vpm_rs_hook(priv, skb, state->pf, state->hook, state->net,
			   state->in ?: state->out);
}

/*
 * Where vpm sits relative to conntrack and NAT (see README, "Design"):
 *
 * - Inbound translation (fixed port -> anonymous port) runs in PRE_ROUTING
 *   for packets from the wire and in LOCAL_OUT for packets from local
 *   clients (which never pass PRE_ROUTING), at CONNTRACK_DEFRAG + 1: after
 *   defragmentation (-400), so whole datagrams are seen, and before
 *   conntrack (-200) and DNAT (-100), so both only ever see the anonymous
 *   port.
 * - Reply translation (anonymous port -> fixed port) runs in POST_ROUTING
 *   at NAT_SRC + 1: after conntrack matched the reply against the tuple it
 *   recorded on the way in (with the anonymous port) and after SNAT, the
 *   last stage that may change a source port, so the wire only ever sees
 *   the fixed port.
 *
 * Conntrack thus tracks the "inside" view of every translated flow, and
 * nftables rules in between (filter, DNAT, SNAT) match anonymous ports.
 */
#define VPM_PRIO_IN (NF_IP_PRI_CONNTRACK_DEFRAG + 1)
#define VPM_PRIO_OUT (NF_IP_PRI_NAT_SRC + 1)

static_assert((int)NF_IP6_PRI_CONNTRACK_DEFRAG == (int)NF_IP_PRI_CONNTRACK_DEFRAG);
static_assert((int)NF_IP6_PRI_NAT_SRC == (int)NF_IP_PRI_NAT_SRC);

#define VPM_HOOK(family, num, prio) \
	{ .hook = vpm_hook_entry, .pf = (family), .hooknum = (num), \
	  .priority = (prio) }

static const struct nf_hook_ops vpm_hook_template[] = {
	VPM_HOOK(NFPROTO_IPV4, NF_INET_PRE_ROUTING, VPM_PRIO_IN),
	VPM_HOOK(NFPROTO_IPV4, NF_INET_LOCAL_OUT, VPM_PRIO_IN),
	VPM_HOOK(NFPROTO_IPV4, NF_INET_POST_ROUTING, VPM_PRIO_OUT),
	VPM_HOOK(NFPROTO_IPV6, NF_INET_PRE_ROUTING, VPM_PRIO_IN),
	VPM_HOOK(NFPROTO_IPV6, NF_INET_LOCAL_OUT, VPM_PRIO_IN),
	VPM_HOOK(NFPROTO_IPV6, NF_INET_POST_ROUTING, VPM_PRIO_OUT),
};

const unsigned int vpm_hook_count = ARRAY_SIZE(vpm_hook_template);

/*
 * Each namespace gets its own copy: the copies differ in .priv.  The copy
 * lives as long as the namespace's vpm state, registered or not, so it
 * can be registered again after an unregistration (as IPVS and nf_tables'
 * dormant tables do) and is never freed under an RCU reader of the old
 * hook entries, whose orig_ops point to it (nfnetlink_hook's dumps).
 */
struct nf_hook_ops *vpm_hooks_alloc(void *priv)
{
	struct nf_hook_ops *ops;
	unsigned int i;

	ops = kmemdup(vpm_hook_template, sizeof(vpm_hook_template),
		      GFP_KERNEL_ACCOUNT);
	if (!ops)
		return NULL;
	for (i = 0; i < ARRAY_SIZE(vpm_hook_template); i++)
		ops[i].priv = priv;
	return ops;
}

int vpm_hooks_register(struct net *net, struct nf_hook_ops *ops)
{
	return nf_register_net_hooks(net, ops, ARRAY_SIZE(vpm_hook_template));
}

void vpm_hooks_unregister(struct net *net, struct nf_hook_ops *ops)
{
	nf_unregister_net_hooks(net, ops, ARRAY_SIZE(vpm_hook_template));
}

void vpm_hooks_free(struct nf_hook_ops *ops)
{
	kfree(ops);
}

/* ---- packets ------------------------------------------------------------ */

/*
 * Fills @h and returns skb->data: one call per packet instead of one per
 * field, and the linear part read in place rather than through
 * skb_copy_bits, as skb_header_pointer does.
 *
 * The checksum field holds a seed (the pseudo-header sum, without the
 * ports) in a CHECKSUM_PARTIAL packet, and also in a UDP GSO packet that
 * is not: when the route's device cannot checksum, udp_send_skb() still
 * writes only the seed (udp4_hwcsum(), udp6_hwcsum_outgoing()) and leaves
 * ip_summed at CHECKSUM_NONE, and __udp_gso_segment() completes each
 * segment's checksum from that seed in software.  Updating such a seed
 * like a final checksum would make every segment's checksum wrong.  (A
 * fraglist GSO packet is the exception: each of its segments carries its
 * own final checksum, the head's included, and segmentation adjusts the
 * others for what changed in the head.)
 */
const u8 *vpm_skb_head(const struct sk_buff *skb, struct vpm_skb_head *h)
{
	h->nh = skb_network_offset(skb);
	h->linear = skb_headlen(skb);
	h->len = skb->len;
	h->csum_seed = skb->ip_summed == CHECKSUM_PARTIAL ||
		       (skb_is_gso(skb) &&
			(skb_shinfo(skb)->gso_type &
			 (SKB_GSO_UDP_L4 | SKB_GSO_FRAGLIST)) == SKB_GSO_UDP_L4);
	return skb->data;
}

/*
 * Makes the first @len bytes from skb->data writable (unsharing a clone,
 * pulling paged data into the head) and returns skb->data, or NULL.
 * Any header pointer taken before the call is stale afterwards.
 */
u8 *vpm_skb_writable(struct sk_buff *skb, unsigned int len)
{
	if (skb_ensure_writable(skb, len))
		return NULL;
	return skb->data;
}

/* Whether a locally generated packet was routed for local delivery. */
bool vpm_skb_dst_local(const struct sk_buff *skb)
{
	const struct dst_entry *dst = skb_dst(skb);

	return dst && dst->dev && (dst->dev->flags & IFF_LOOPBACK);
}

/*
 * Whether @addr (4 bytes for NFPROTO_IPV4, 16 for NFPROTO_IPV6) is a local
 * unicast address of @net: what the routing table calls RTN_LOCAL (in
 * @dev's VRF, if any) for IPv4, an address configured on any device of
 * @net for IPv6.  Broadcast and multicast addresses are not.  Any context;
 * takes the RCU read lock itself.
 *
 * IPv4 asks the address hash first (__ip_dev_find, which falls back to
 * the main local table for addresses local by route alone, AnyIP): one
 * hash lookup answers for an address of a device outside any VRF, where
 * a FIB lookup in the local table costs several times that per packet.
 * Whatever involves a VRF (@dev or the address's device in one, on the
 * slave's or on the VRF device's own pass) takes the routing table's
 * answer, as before.  An address whose local route an administrator
 * deleted by hand still counts as local here.
 */
bool vpm_addr_local(struct net *net, const struct net_device *dev, u8 pf,
		    const u8 *addr)
{
	if (pf == NFPROTO_IPV4) {
		const struct net_device *owner;
		bool vrf;
		__be32 a;

		memcpy(&a, addr, sizeof(a));
		if (ipv4_is_zeronet(a) || ipv4_is_lbcast(a) || ipv4_is_multicast(a))
			return false;
		if (dev && (netif_is_l3_slave(dev) || netif_is_l3_master(dev)))
			return inet_addr_type_dev_table(net, dev, a) == RTN_LOCAL;
		rcu_read_lock();
		owner = __ip_dev_find(net, a, false);
		vrf = owner && (netif_is_l3_slave(owner) || netif_is_l3_master(owner));
		rcu_read_unlock();
		if (vrf)
			return inet_addr_type_dev_table(net, dev, a) == RTN_LOCAL;
		return owner != NULL;
	}
#if IS_ENABLED(CONFIG_IPV6)
	if (pf == NFPROTO_IPV6)
		return ipv6_chk_addr(net, (const struct in6_addr *)addr, NULL, 0);
#endif
	return false;
}

/*
 * Whether @addr, the source address of a packet that arrived on @dev, is
 * one no other host can send from: a loopback address, or one of this
 * host's own, seen on a device other than the loopback (or a VRF's).
 * IPv4 drops such a packet as a martian only after PRE_ROUTING
 * (fib_validate_source(), unless accept_local is set); IPv6 drops ::1
 * before PRE_ROUTING but takes its own addresses from any device.
 */
bool vpm_src_martian(struct net *net, const struct net_device *dev, u8 pf,
		     const u8 *addr)
{
	/* Local traffic comes back in through the loopback, or through the
	 * VRF device (vrf_local_xmit()) inside a VRF. */
	if (dev && ((dev->flags & IFF_LOOPBACK) || netif_is_l3_master(dev)))
		return false;
	if (pf == NFPROTO_IPV4) {
		__be32 a;

		memcpy(&a, addr, sizeof(a));
		if (ipv4_is_loopback(a))
			return true;
	}
#if IS_ENABLED(CONFIG_IPV6)
	if (pf == NFPROTO_IPV6 &&
	    ipv6_addr_loopback((const struct in6_addr *)addr))
		return true;
#endif
	return vpm_addr_local(net, dev, pf, addr);
}

/*
 * Whether @skb came into this host (forwarded or bridged) rather than
 * being sent by it.  A received skb keeps the index of the device it
 * arrived on (skb_iif); a locally generated one has 0.  IPv4 also marks
 * forwarded packets, and br_netfilter attaches its state to bridged ones.
 */
bool vpm_skb_received(const struct sk_buff *skb, u8 pf)
{
	if (skb->skb_iif)
		return true;
	if (pf == NFPROTO_IPV4 && (IPCB(skb)->flags & IPSKB_FORWARDED))
		return true;
#if IS_ENABLED(CONFIG_BRIDGE_NETFILTER)
	if (nf_bridge_info_exists(skb))
		return true;
#endif
	return false;
}

/*
 * Who sent @skb, packed for one call per packet:
 *   VPM_SENDER_SOCKET      it carries a socket: full, request or time-wait;
 *                          the low 16 bits are its local port (skc_num);
 *   VPM_SENDER_CONTROL     that socket is one of the kernel's raw control
 *                          sockets (TCP resets and ACKs sent on behalf of
 *                          no socket), whose skc_num is a protocol number;
 *   VPM_SENDER_CONNECTED   a full socket that is not listening: only such
 *                          a socket sends a TCP segment after a completed
 *                          handshake (listeners answer spoofed SYNs too).
 */
u32 vpm_skb_sender(const struct sk_buff *skb)
{
	const struct sock *sk = skb->sk;
	u32 info;

	if (!sk)
		return 0;
	info = VPM_SENDER_SOCKET | sk->sk_num;
	if (sk_fullsock(sk)) {
		if (sk->sk_kern_sock && sk->sk_type == SOCK_RAW)
			info |= VPM_SENDER_CONTROL;
		else if (sk->sk_state != TCP_LISTEN)
			info |= VPM_SENDER_CONNECTED;
	}
	return info;
}

/*
 * The cgroup v2 id of the sending socket's ancestor (or own) cgroup at
 * depth @level of the hierarchy, or 0 when there is none: no full socket
 * (request sockets stand for their listener; time-wait sockets and
 * socketless packets have none), or the socket's cgroup is shallower.
 * This is what bpf_skb_ancestor_cgroup_id() computes.  Called under RCU: a
 * socket pins its cgroup, a cgroup its ancestors.
 */
u64 vpm_skb_cgroup_ancestor(const struct sk_buff *skb, int level)
{
#ifdef CONFIG_SOCK_CGROUP_DATA
	struct sock *sk = skb_to_full_sk(skb);
	struct cgroup *cgrp;

	if (!sk || !sk_fullsock(sk))
		return 0;
	cgrp = cgroup_ancestor(sock_cgroup_ptr(&sk->sk_cgrp_data), level);
	return cgrp ? cgroup_id(cgrp) : 0;
#else
	return 0;
#endif
}

/*
 * The id and depth (@level, 0 for the root) of the cgroup v2 at @path
 * (relative to the caller's cgroup namespace root), or a negative errno:
 * -ENOENT, -ENOTDIR.
 */
s64 vpm_cgroup_id(const char *path, int *level)
{
#ifdef CONFIG_CGROUPS
	struct cgroup *cgrp = cgroup_get_from_path(path);
	u64 id;

	if (IS_ERR(cgrp))
		return PTR_ERR(cgrp);
	id = cgroup_id(cgrp);
	*level = cgrp->level;
	cgroup_put(cgrp);
	return id;
#else
	return -EOPNOTSUPP;
#endif
}

/* Seconds since boot, wrapping: the flow table's clock. */
u32 vpm_now_secs(void)
{
	return (u32)(get_jiffies_64() / HZ);
}

/* ---- reserved ports ------------------------------------------------------ */

/*
 * net.ipv4.ip_local_reserved_ports (shared by IPv4 and IPv6): a port set
 * there is never picked for an automatic bind (connect(), UDP autobind,
 * bind to port 0) but can still be bound explicitly, which is exactly what
 * an anonymous port needs.  Returns whether the bit was clear before.
 */
bool vpm_port_reserve(struct net *net, u16 port)
{
#ifdef CONFIG_SYSCTL
	unsigned long *map = net->ipv4.sysctl_local_reserved_ports;

	return map && !test_and_set_bit(port, map);
#else
	return false;
#endif
}

void vpm_port_unreserve(struct net *net, u16 port)
{
#ifdef CONFIG_SYSCTL
	unsigned long *map = net->ipv4.sysctl_local_reserved_ports;

	if (map)
		clear_bit(port, map);
#endif
}

/* ---- per-CPU counters ---------------------------------------------------- */

u64 __percpu *vpm_pcpu_alloc(unsigned int n)
{
	return __alloc_percpu_gfp(n * sizeof(u64), __alignof__(u64),
				  GFP_KERNEL_ACCOUNT);
}

void vpm_pcpu_free(u64 __percpu *ctrs)
{
	free_percpu(ctrs);
}

/* Safe in any context, preemption and interrupts included. */
void vpm_pcpu_add(u64 __percpu *ctrs, unsigned int idx, u64 val)
{
	this_cpu_add(ctrs[idx], val);
}

/* Two counters in one call: the packet path's calls cost more than the adds. */
void vpm_pcpu_add2(u64 __percpu *ctrs, unsigned int i, u64 v, unsigned int j,
		   u64 w)
{
	this_cpu_add(ctrs[i], v);
	this_cpu_add(ctrs[j], w);
}

/* A 64-bit load cannot tear on the 64-bit architectures vpm supports. */
u64 vpm_pcpu_sum(u64 __percpu *ctrs, unsigned int idx)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += READ_ONCE(per_cpu_ptr(ctrs, cpu)[idx]);
	return sum;
}

/* Zeroes one counter on every CPU; racing additions may be lost. */
void vpm_pcpu_reset(u64 __percpu *ctrs, unsigned int idx)
{
	int cpu;

	for_each_possible_cpu(cpu)
		WRITE_ONCE(per_cpu_ptr(ctrs, cpu)[idx], 0);
}

/* ---- generic netlink ------------------------------------------------------ */

struct net *vpm_genl_net(const struct genl_info *info)
{
	return genl_info_net(info);
}

void *vpm_genl_reply_header(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_iput(skb, info);
}

int vpm_genl_reply_send(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_reply(skb, info);
}

/*
 * Extended ack: @msg must be static (it is referenced, not copied) unless
 * @copy is set, in which case it is copied into the ack's own buffer.
 * @missing names a required attribute the request lacked (0: none).
 */
void vpm_genl_set_err(struct genl_info *info, const char *msg, bool copy,
		      u16 missing)
{
	struct netlink_ext_ack *extack = info->extack;

	if (!extack)
		return;
	if (copy) {
		strscpy(extack->_msg_buf, msg, sizeof(extack->_msg_buf));
		msg = extack->_msg_buf;
	}
	do_trace_netlink_extack(msg);
	extack->_msg = msg;
	if (missing) {
		extack->miss_type = missing;
		extack->miss_nest = NULL;
	}
}

/*
 * The attribute of type @type of the request, or NULL.  Searching the
 * message (rather than indexing info->attrs, sized by the operation's
 * policy) is safe for any @type; the core has already validated the
 * attributes against the policy.
 */
const struct nlattr *vpm_genl_attr(const struct genl_info *info, u16 type)
{
	return nla_find(nlmsg_attrdata(info->nlhdr, GENL_HDRLEN),
			nlmsg_attrlen(info->nlhdr, GENL_HDRLEN), type);
}

/* ---- dumps ------------------------------------------------------------- */

struct net *vpm_dump_net(const struct netlink_callback *cb)
{
	return sock_net(cb->skb->sk);
}

/* The callback's scratch space, kept across the calls of one dump. */
void *vpm_dump_ctx(struct netlink_callback *cb)
{
	return cb->ctx;
}

const size_t vpm_dump_ctx_size = sizeof_field(struct netlink_callback, ctx);

/*
 * Starts one NLM_F_MULTI message of the dump; @gen is the table generation
 * the dump started from, so a change in between flags NLM_F_DUMP_INTR.
 */
void *vpm_dump_msg_start(struct sk_buff *skb, struct netlink_callback *cb,
			 u32 gen)
{
	const struct genl_info *info = genl_info_dump(cb);
	void *hdr;

	hdr = genlmsg_put(skb, info->snd_portid, info->snd_seq, info->family,
			  NLM_F_MULTI, info->genlhdr->cmd);
	if (!hdr)
		return NULL;
	cb->seq = gen;
	genl_dump_check_consistent(cb, hdr);
	return hdr;
}

void vpm_dump_msg_end(struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
}

void vpm_dump_msg_cancel(struct sk_buff *skb, void *hdr)
{
	genlmsg_cancel(skb, hdr);
}

unsigned int vpm_skb_len(const struct sk_buff *skb)
{
	return skb->len;
}

/* ---- events ------------------------------------------------------------ */

/*
 * Starts an event for the "events" group of @net.  Returns NULL when
 * nobody listens there (the common case, and free) or memory is short:
 * events are best effort, like every netlink notification.
 */
struct sk_buff *vpm_event_new(struct net *net, u8 cmd, void **hdr)
{
	struct sk_buff *skb;

	if (!genl_has_listeners(&vpm_nl_family, net, VPM_NLGRP_EVENTS))
		return NULL;
	skb = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!skb)
		return NULL;
	*hdr = genlmsg_put(skb, 0, 0, &vpm_nl_family, 0, cmd);
	if (!*hdr) {
		nlmsg_free(skb);
		return NULL;
	}
	return skb;
}

/* Sends an event started by vpm_event_new(); consumes @skb. */
void vpm_event_send(struct net *net, struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
	genlmsg_multicast_netns(&vpm_nl_family, net, skb, 0, VPM_NLGRP_EVENTS,
				GFP_KERNEL);
}

/* ---- dump consistency ---------------------------------------------------- */

/*
 * Records the table generation of the current dumpit call.  Called on
 * every call, even one that adds no message: the core checks cb->seq
 * against the previous call's on the NLMSG_DONE message too
 * (nl_dump_check_consistent() in netlink_dump_done()).
 */
void vpm_dump_set_seq(struct netlink_callback *cb, u32 gen)
{
	cb->seq = gen;
}

/* ---- bound ports ---------------------------------------------------------- */

/* Whether a TCP socket (IPv4 or IPv6) of @net holds a bind bucket of @port. */
static bool vpm_tcp_port_bound(struct net *net, u16 port)
{
	struct inet_hashinfo *hinfo = net->ipv4.tcp_death_row.hashinfo;
	struct inet_bind_hashbucket *head;
	struct inet_bind_bucket *tb;
	bool found = false;

	head = &hinfo->bhash[inet_bhashfn(net, port, hinfo->bhash_size)];
	spin_lock_bh(&head->lock);
	inet_bind_bucket_for_each(tb, &head->chain) {
		if (net_eq(ib_net(tb), net) && tb->port == port) {
			found = true;
			break;
		}
	}
	spin_unlock_bh(&head->lock);
	return found;
}

/* Whether a UDP socket (IPv4 or IPv6) of @net is bound to @port. */
static bool vpm_udp_port_bound(struct net *net, u16 port)
{
	struct udp_hslot *hslot = udp_hashslot(net->ipv4.udp_table, net, port);
	struct sock *sk;
	bool found = false;

	spin_lock_bh(&hslot->lock);
	sk_for_each(sk, &hslot->head) {
		if (net_eq(sock_net(sk), net) &&
		    udp_sk(sk)->udp_port_hash == port) {
			found = true;
			break;
		}
	}
	spin_unlock_bh(&hslot->lock);
	return found;
}

/*
 * Whether any TCP or UDP socket of @net (IPv4 or IPv6: both share these
 * tables) is bound to @port, under the tables' own locks.  A snapshot: a
 * socket may bind the port right after.
 */
bool vpm_port_bound(struct net *net, u16 port)
{
	return vpm_tcp_port_bound(net, port) || vpm_udp_port_bound(net, port);
}
