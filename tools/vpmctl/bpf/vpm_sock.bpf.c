// SPDX-License-Identifier: GPL-2.0
/*
 * vpm's socket hooks: cgroup-BPF sock_addr programs attached to one AID's
 * cgroup v2 group by `vpmctl exec`.
 *
 * An unmodified server in the group binds its fixed port; bind4/bind6 turn
 * that into a bind of the AID's anonymous port, which vpm.ko translates
 * to and from the fixed port on the wire.  getsockname4/6 show the fixed
 * port again, so the server never learns the anonymous port.
 *
 * One copy of these programs, with its own map, is loaded per AID: the
 * map says which fixed ports (and protocols) this AID multiplexes.  vpmctl
 * keeps it equal to the kernel's allocations of the AID.  An entry whose
 * allocation was deleted while the group still runs is kept, marked
 * revoked: a new bind of that fixed port then fails with EADDRNOTAVAIL
 * instead of silently binding the fixed port itself.  Ports not in the
 * map, and sockets of other protocols, are left alone.
 *
 * The layout of struct vpm_hook_key/vpm_hook_val is shared with
 * tools/vpmctl/src/hooks.rs (HookKey/HookVal); its unit tests and the
 * loader check their sizes.
 *
 * Cooperative mode (docs/COOPERATIVE.md), the client side: the same copy
 * also translates the AID's connections to a peer host's fixed port.
 * connect4/6 and sendmsg4/6 turn a destination of (peer address, fixed
 * port) into the port the agents negotiated; getpeername4/6 and
 * recvmsg4/6 show the fixed port again.  Their map, vpm_remote, is one
 * per network namespace, shared by every AID's copy and written by the
 * agent (src/coop/remote.rs, RemoteKey/RemoteVal); each copy finds its
 * own entries by its AID, which vpmctl writes into vpm_aid.  A mapping
 * still being negotiated (or refused) makes connect and sendmsg fail at
 * once with ECONNREFUSED rather than reach the fixed port's default
 * instance.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define EADDRNOTAVAIL 99
#define ECONNREFUSED 111

/* What a key looks up. */
enum vpm_hook_dir {
	VPM_HOOK_BIND = 0,	/* port: a fixed port; value: its anonymous port */
	VPM_HOOK_NAME = 1,	/* port: an anonymous port; value: its fixed port */
};

/* vpm_hook_val.flags */
#define VPM_HOOK_REVOKED 1	/* the allocation is gone: refuse the bind */

struct vpm_hook_key {
	__u16 port;	/* host byte order */
	__u8 proto;	/* IPPROTO_TCP or IPPROTO_UDP */
	__u8 dir;	/* enum vpm_hook_dir */
};

struct vpm_hook_val {
	__u16 port;	/* host byte order */
	__u16 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct vpm_hook_key);
	__type(value, struct vpm_hook_val);
} vpm_ports SEC(".maps");

/* The cgroup this copy is attached to: its id (the directory's inode) and
 * absolute path, NUL-terminated.  Written once by vpmctl, read back to
 * tell whether the hooks are on the group an exec is about to enter and
 * when tidying up; the programs never look at it. */
struct vpm_group_path {
	__u64 id;
	char path[4088];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vpm_group_path);
} vpm_group SEC(".maps");

static __always_inline struct vpm_hook_val *
vpm_lookup(struct bpf_sock_addr *ctx, __u8 dir)
{
	struct vpm_hook_key key = {
		/* user_port holds the port in network byte order, in its
		 * first two bytes. */
		.port = bpf_ntohs((__u16)ctx->user_port),
		/* An MPTCP socket's own hooks (getsockname) see
		 * IPPROTO_MPTCP; its subflows, which bind, see TCP. */
		.proto = ctx->protocol == IPPROTO_MPTCP ? IPPROTO_TCP : (__u8)ctx->protocol,
		.dir = dir,
	};

	if (!key.port)
		return NULL;
	return bpf_map_lookup_elem(&vpm_ports, &key);
}

static __always_inline int vpm_bind(struct bpf_sock_addr *ctx)
{
	struct vpm_hook_val *val = vpm_lookup(ctx, VPM_HOOK_BIND);

	if (!val)
		return 1;
	if (val->flags & VPM_HOOK_REVOKED) {
		/* Returning 0 alone would give EPERM, which reads as a
		 * privilege problem. */
		bpf_set_retval(-EADDRNOTAVAIL);
		return 0;
	}
	ctx->user_port = bpf_htons(val->port);
	return 1;
}

static __always_inline int vpm_name(struct bpf_sock_addr *ctx)
{
	struct vpm_hook_val *val = vpm_lookup(ctx, VPM_HOOK_NAME);

	if (val)
		ctx->user_port = bpf_htons(val->port);
	return 1;
}

/* struct vpm_remote_key.dir */
enum vpm_remote_dir {
	VPM_REMOTE_CONNECT = 0,	/* port: the fixed port; value: the negotiated port */
	VPM_REMOTE_PEER = 1,	/* port: the negotiated port; value: the fixed port */
};

/* vpm_remote_val.flags */
#define VPM_REMOTE_PENDING 1	/* not (or not yet) granted: refuse */

#define VPM_AID_SIZE 32

struct vpm_remote_key {
	__u8 addr[16];	/* the peer; IPv4 in the first 4 bytes, the rest 0 */
	__u16 port;	/* host byte order */
	__u8 proto;	/* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;	/* 4 or 6 */
	__u8 dir;	/* enum vpm_remote_dir */
	__u8 pad[3];
	char aid[VPM_AID_SIZE];	/* NUL-padded */
};

struct vpm_remote_val {
	__u16 port;	/* host byte order */
	__u16 flags;
	__u32 pad;
	/* On CLOCK_BOOTTIME, ns: a grant redirects until `redirect_until`
	 * (its end), and the entry then refuses until `refuse_until` (a
	 * lease the agent renews while it runs) and counts as absent after
	 * that.  So a grant the agent has not renewed in time is refused,
	 * not sent to the fixed port, and an agent that stopped for good
	 * leaves nothing that redirects or refuses for long. */
	__u64 redirect_until;
	__u64 refuse_until;
};

/* Not preallocated: an element an update replaces is freed after an RCU
 * grace period, so a lookup never reads half of a reused one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct vpm_remote_key);
	__type(value, struct vpm_remote_val);
} vpm_remote SEC(".maps");

/* This copy's AID, NUL-padded; written once by vpmctl. */
struct vpm_self {
	char aid[VPM_AID_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vpm_self);
} vpm_aid SEC(".maps");

/* The peer address of a sock_addr context, as a remote key has it. */
static __always_inline int vpm_remote_addr(struct bpf_sock_addr *ctx,
					   struct vpm_remote_key *key, int v6)
{
	if (!v6) {
		__u32 a = ctx->user_ip4;

		__builtin_memcpy(key->addr, &a, 4);
		key->family = 4;
		return 0;
	}
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
	__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];

	/* A dual-stack socket's IPv4-mapped peer is an IPv4 peer. */
	if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff)) {
		__builtin_memcpy(key->addr, &w3, 4);
		key->family = 4;
		return 0;
	}
	__builtin_memcpy(key->addr, &w0, 4);
	__builtin_memcpy(key->addr + 4, &w1, 4);
	__builtin_memcpy(key->addr + 8, &w2, 4);
	__builtin_memcpy(key->addr + 12, &w3, 4);
	key->family = 6;
	return 0;
}

static __always_inline struct vpm_remote_val *
vpm_remote_lookup(struct bpf_sock_addr *ctx, __u8 dir, int v6)
{
	__u32 zero = 0;
	struct vpm_self *self = bpf_map_lookup_elem(&vpm_aid, &zero);
	struct vpm_remote_key key = {};
	struct vpm_remote_val *val;
	/* An MPTCP socket's own hooks (getpeername) see IPPROTO_MPTCP. */
	__u32 proto = ctx->protocol == IPPROTO_MPTCP ? IPPROTO_TCP : ctx->protocol;

	if (!self || !self->aid[0])
		return NULL;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return NULL;
	key.port = bpf_ntohs((__u16)ctx->user_port);
	if (!key.port)
		return NULL;
	key.proto = (__u8)proto;
	key.dir = dir;
	vpm_remote_addr(ctx, &key, v6);
	__builtin_memcpy(key.aid, self->aid, VPM_AID_SIZE);
	val = bpf_map_lookup_elem(&vpm_remote, &key);
	if (val && bpf_ktime_get_boot_ns() >= val->refuse_until)
		return NULL;
	return val;
}

/* Whether `val` (not refused-or-absent) redirects now. */
static __always_inline int vpm_redirects(struct vpm_remote_val *val)
{
	return !(val->flags & VPM_REMOTE_PENDING) && val->port &&
	       bpf_ktime_get_boot_ns() < val->redirect_until;
}

/* connect and sendmsg: towards the negotiated port, or refused while
 * there is none. */
static __always_inline int vpm_towards(struct bpf_sock_addr *ctx, int v6)
{
	struct vpm_remote_val *val = vpm_remote_lookup(ctx, VPM_REMOTE_CONNECT, v6);

	if (!val)
		return 1;
	if (!vpm_redirects(val)) {
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	ctx->user_port = bpf_htons(val->port);
	return 1;
}

/* getpeername and recvmsg: the negotiated port shows as the fixed one. */
static __always_inline int vpm_from(struct bpf_sock_addr *ctx, int v6)
{
	struct vpm_remote_val *val = vpm_remote_lookup(ctx, VPM_REMOTE_PEER, v6);

	/* Until the entry goes: a connection made under the grant keeps
	 * showing the fixed port while the agent renews it. */
	if (val && val->port)
		ctx->user_port = bpf_htons(val->port);
	return 1;
}

SEC("cgroup/connect4")
int vpm_connect4(struct bpf_sock_addr *ctx)
{
	return vpm_towards(ctx, 0);
}

SEC("cgroup/connect6")
int vpm_connect6(struct bpf_sock_addr *ctx)
{
	return vpm_towards(ctx, 1);
}

SEC("cgroup/sendmsg4")
int vpm_sendmsg4(struct bpf_sock_addr *ctx)
{
	return vpm_towards(ctx, 0);
}

SEC("cgroup/sendmsg6")
int vpm_sendmsg6(struct bpf_sock_addr *ctx)
{
	return vpm_towards(ctx, 1);
}

SEC("cgroup/recvmsg4")
int vpm_recvmsg4(struct bpf_sock_addr *ctx)
{
	return vpm_from(ctx, 0);
}

SEC("cgroup/recvmsg6")
int vpm_recvmsg6(struct bpf_sock_addr *ctx)
{
	return vpm_from(ctx, 1);
}

SEC("cgroup/getpeername4")
int vpm_getpeername4(struct bpf_sock_addr *ctx)
{
	return vpm_from(ctx, 0);
}

SEC("cgroup/getpeername6")
int vpm_getpeername6(struct bpf_sock_addr *ctx)
{
	return vpm_from(ctx, 1);
}

SEC("cgroup/bind4")
int vpm_bind4(struct bpf_sock_addr *ctx)
{
	return vpm_bind(ctx);
}

SEC("cgroup/bind6")
int vpm_bind6(struct bpf_sock_addr *ctx)
{
	return vpm_bind(ctx);
}

SEC("cgroup/getsockname4")
int vpm_getsockname4(struct bpf_sock_addr *ctx)
{
	return vpm_name(ctx);
}

SEC("cgroup/getsockname6")
int vpm_getsockname6(struct bpf_sock_addr *ctx)
{
	return vpm_name(ctx);
}

char _license[] SEC("license") = "GPL";
