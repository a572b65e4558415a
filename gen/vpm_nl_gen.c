// SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause)
/* Do not edit directly, auto-generated from: */
/*	uapi/vpm.yaml */
/* YNL-GEN kernel source */
/* To regenerate run: tools/net/ynl/ynl-regen.sh */

#include <net/netlink.h>
#include <net/genetlink.h>

#include "vpm_nl_gen.h"

#include <uapi/linux/vpm.h>

/* VPM_CMD_ADD_MAPPING - do */
static const struct nla_policy vpm_add_mapping_nl_policy[VPM_A_MAPPING_CGROUP + 1] = {
	[VPM_A_MAPPING_AID] = { .type = NLA_NUL_STRING, .len = 31, },
	[VPM_A_MAPPING_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_MAPPING_PROTO] = NLA_POLICY_MASK(NLA_U32, 0x3),
	[VPM_A_MAPPING_ANON_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_MAPPING_WAIT_MS] = { .type = NLA_U32, },
	[VPM_A_MAPPING_CGROUP] = { .type = NLA_NUL_STRING, .len = 4095, },
};

/* VPM_CMD_DEL_MAPPING - do */
static const struct nla_policy vpm_del_mapping_nl_policy[VPM_A_MAPPING_PORT + 1] = {
	[VPM_A_MAPPING_AID] = { .type = NLA_NUL_STRING, .len = 31, },
	[VPM_A_MAPPING_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
};

/* VPM_CMD_GET_MAPPING - do */
static const struct nla_policy vpm_get_mapping_nl_policy[VPM_A_MAPPING_PORT + 1] = {
	[VPM_A_MAPPING_AID] = { .type = NLA_NUL_STRING, .len = 31, },
	[VPM_A_MAPPING_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
};

/* VPM_CMD_SET_CONFIG - do */
static const struct nla_policy vpm_set_config_nl_policy[VPM_A_CONFIG_MAX_ENTRIES + 1] = {
	[VPM_A_CONFIG_RANGE_LO] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_CONFIG_RANGE_HI] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_CONFIG_MAX_ENTRIES] = NLA_POLICY_MIN(NLA_U32, 1),
};

/* VPM_CMD_ADD_RULE - do */
static const struct nla_policy vpm_add_rule_nl_policy[VPM_A_RULE_SRC_PORT + 1] = {
	[VPM_A_RULE_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_RULE_AID] = { .type = NLA_NUL_STRING, .len = 31, },
	[VPM_A_RULE_ADDR] = NLA_POLICY_MAX_LEN(16),
	[VPM_A_RULE_PREFIX_LEN] = NLA_POLICY_MAX(NLA_U8, 128),
	[VPM_A_RULE_SRC_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
};

/* VPM_CMD_DEL_RULE - do */
static const struct nla_policy vpm_del_rule_nl_policy[VPM_A_RULE_SRC_PORT + 1] = {
	[VPM_A_RULE_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_RULE_ADDR] = NLA_POLICY_MAX_LEN(16),
	[VPM_A_RULE_PREFIX_LEN] = NLA_POLICY_MAX(NLA_U8, 128),
	[VPM_A_RULE_SRC_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
};

/* VPM_CMD_ADD_PEER - do */
static const struct nla_policy vpm_add_peer_nl_policy[VPM_A_MAPPING_PEER + 1] = {
	[VPM_A_MAPPING_AID] = { .type = NLA_NUL_STRING, .len = 31, },
	[VPM_A_MAPPING_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_MAPPING_PEER] = NLA_POLICY_MAX_LEN(16),
};

/* VPM_CMD_DEL_PEER - do */
static const struct nla_policy vpm_del_peer_nl_policy[VPM_A_MAPPING_PEER + 1] = {
	[VPM_A_MAPPING_AID] = { .type = NLA_NUL_STRING, .len = 31, },
	[VPM_A_MAPPING_PORT] = NLA_POLICY_MIN(NLA_U16, 1),
	[VPM_A_MAPPING_PEER] = NLA_POLICY_MAX_LEN(16),
};

/* Ops table for vpm */
static const struct genl_split_ops vpm_nl_ops[] = {
	{
		.cmd	= VPM_CMD_GET_STATUS,
		.doit	= vpm_nl_get_status_doit,
		.flags	= GENL_CMD_CAP_DO,
	},
	{
		.cmd		= VPM_CMD_ADD_MAPPING,
		.doit		= vpm_nl_add_mapping_doit,
		.policy		= vpm_add_mapping_nl_policy,
		.maxattr	= VPM_A_MAPPING_CGROUP,
		.flags		= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
	{
		.cmd		= VPM_CMD_DEL_MAPPING,
		.doit		= vpm_nl_del_mapping_doit,
		.policy		= vpm_del_mapping_nl_policy,
		.maxattr	= VPM_A_MAPPING_PORT,
		.flags		= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
	{
		.cmd		= VPM_CMD_GET_MAPPING,
		.doit		= vpm_nl_get_mapping_doit,
		.policy		= vpm_get_mapping_nl_policy,
		.maxattr	= VPM_A_MAPPING_PORT,
		.flags		= GENL_CMD_CAP_DO,
	},
	{
		.cmd	= VPM_CMD_GET_MAPPING,
		.dumpit	= vpm_nl_get_mapping_dumpit,
		.flags	= GENL_CMD_CAP_DUMP,
	},
	{
		.cmd	= VPM_CMD_FLUSH,
		.doit	= vpm_nl_flush_doit,
		.flags	= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
	{
		.cmd	= VPM_CMD_GET_CONFIG,
		.doit	= vpm_nl_get_config_doit,
		.flags	= GENL_CMD_CAP_DO,
	},
	{
		.cmd		= VPM_CMD_SET_CONFIG,
		.doit		= vpm_nl_set_config_doit,
		.policy		= vpm_set_config_nl_policy,
		.maxattr	= VPM_A_CONFIG_MAX_ENTRIES,
		.flags		= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
	{
		.cmd		= VPM_CMD_ADD_RULE,
		.doit		= vpm_nl_add_rule_doit,
		.policy		= vpm_add_rule_nl_policy,
		.maxattr	= VPM_A_RULE_SRC_PORT,
		.flags		= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
	{
		.cmd		= VPM_CMD_DEL_RULE,
		.doit		= vpm_nl_del_rule_doit,
		.policy		= vpm_del_rule_nl_policy,
		.maxattr	= VPM_A_RULE_SRC_PORT,
		.flags		= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
	{
		.cmd	= VPM_CMD_GET_RULE,
		.dumpit	= vpm_nl_get_rule_dumpit,
		.flags	= GENL_CMD_CAP_DUMP,
	},
	{
		.cmd		= VPM_CMD_ADD_PEER,
		.doit		= vpm_nl_add_peer_doit,
		.policy		= vpm_add_peer_nl_policy,
		.maxattr	= VPM_A_MAPPING_PEER,
		.flags		= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
	{
		.cmd		= VPM_CMD_DEL_PEER,
		.doit		= vpm_nl_del_peer_doit,
		.policy		= vpm_del_peer_nl_policy,
		.maxattr	= VPM_A_MAPPING_PEER,
		.flags		= GENL_ADMIN_PERM | GENL_CMD_CAP_DO,
	},
};

static const struct genl_multicast_group vpm_nl_mcgrps[] = {
	[VPM_NLGRP_EVENTS] = { "events", },
};

struct genl_family vpm_nl_family __ro_after_init = {
	.name		= VPM_FAMILY_NAME,
	.version	= VPM_FAMILY_VERSION,
	.netnsok	= true,
	.parallel_ops	= true,
	.module		= THIS_MODULE,
	.split_ops	= vpm_nl_ops,
	.n_split_ops	= ARRAY_SIZE(vpm_nl_ops),
	.mcgrps		= vpm_nl_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(vpm_nl_mcgrps),
};
