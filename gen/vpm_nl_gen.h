/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/* Do not edit directly, auto-generated from: */
/*	uapi/vpm.yaml */
/* YNL-GEN kernel header */
/* To regenerate run: tools/net/ynl/ynl-regen.sh */

#ifndef _LINUX_VPM_GEN_H
#define _LINUX_VPM_GEN_H

#include <net/netlink.h>
#include <net/genetlink.h>

#include <uapi/linux/vpm.h>

int vpm_nl_get_status_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_add_mapping_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_del_mapping_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_get_mapping_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_get_mapping_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vpm_nl_flush_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_get_config_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_set_config_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_add_rule_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_del_rule_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_get_rule_dumpit(struct sk_buff *skb, struct netlink_callback *cb);
int vpm_nl_add_peer_doit(struct sk_buff *skb, struct genl_info *info);
int vpm_nl_del_peer_doit(struct sk_buff *skb, struct genl_info *info);

enum {
	VPM_NLGRP_EVENTS,
};

extern struct genl_family vpm_nl_family;

#endif /* _LINUX_VPM_GEN_H */
