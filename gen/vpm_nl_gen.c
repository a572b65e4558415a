// SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause)
/* Do not edit directly, auto-generated from: */
/*	uapi/vpm.yaml */
/* YNL-GEN kernel source */
/* To regenerate run: tools/net/ynl/ynl-regen.sh */

#include <net/netlink.h>
#include <net/genetlink.h>

#include "vpm_nl_gen.h"

#include <uapi/linux/vpm.h>

/* Ops table for vpm */
static const struct genl_split_ops vpm_nl_ops[] = {
	{
		.cmd	= VPM_CMD_GET_STATUS,
		.doit	= vpm_nl_get_status_doit,
		.flags	= GENL_CMD_CAP_DO,
	},
};

struct genl_family vpm_nl_family __ro_after_init = {
	.name		= VPM_FAMILY_NAME,
	.version	= VPM_FAMILY_VERSION,
	.netnsok	= true,
	.parallel_ops	= true,
	.module		= THIS_MODULE,
	.split_ops	= vpm_nl_ops,
	.n_split_ops	= ARRAY_SIZE(vpm_nl_ops),
};
