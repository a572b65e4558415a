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
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define EADDRNOTAVAIL 99

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
