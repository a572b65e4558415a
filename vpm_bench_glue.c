// SPDX-License-Identifier: GPL-2.0
/*
 * C glue of vpm's in-kernel micro-benchmark (vpm_bench.rs, reached through
 * vpm_sys/bench.rs), compiled only into a VPM_BENCH=1 build (make bench):
 * a production vpm.ko has none of it.
 *
 * The benchmark runs vpm's hook on skbs shaped like those a netfilter
 * hook receives: linear, not cloned, network header at data, the checksum
 * verified in software (CHECKSUM_NONE).
 */
#include <linux/bottom_half.h>
#include <linux/ktime.h>
#include <linux/nsproxy.h>
#include <linux/sched.h>
#include <linux/skbuff.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <net/net_namespace.h>

#include "vpm_glue.h"

/*
 * The caller's network namespace, pinned by its nsproxy while it runs
 * (NULL for an exiting task, which has none).
 */
struct net *vpm_bench_current_net(void)
{
	return current->nsproxy ? current->nsproxy->net_ns : NULL;
}

struct sk_buff *vpm_bench_skb_new(const u8 *data, unsigned int len, u8 pf)
{
	struct sk_buff *skb = alloc_skb(LL_MAX_HEADER + len, GFP_KERNEL);

	if (!skb)
		return NULL;
	skb_reserve(skb, LL_MAX_HEADER);
	skb_put_data(skb, data, len);
	skb_reset_network_header(skb);
	skb->protocol = htons(pf == NFPROTO_IPV6 ? ETH_P_IPV6 : ETH_P_IP);
	skb->ip_summed = CHECKSUM_NONE;
	return skb;
}

void vpm_bench_skb_free(struct sk_buff *skb)
{
	consume_skb(skb);
}

u8 *vpm_bench_skb_nh(struct sk_buff *skb)
{
	return skb_network_header(skb);
}

/* Hooks run in softirq context: the benchmark's loops do too. */
void vpm_bench_bh_disable(void)
{
	local_bh_disable();
}

void vpm_bench_bh_enable(void)
{
	local_bh_enable();
}

u64 vpm_bench_ns(void)
{
	return ktime_get_ns();
}
