/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/* Do not edit directly, auto-generated from: */
/*	uapi/vpm.yaml */
/* YNL-GEN uapi header */
/* To regenerate run: tools/net/ynl/ynl-regen.sh */

#ifndef _UAPI_LINUX_VPM_H
#define _UAPI_LINUX_VPM_H

#define VPM_FAMILY_NAME		"vpm"
#define VPM_FAMILY_VERSION	1

enum {
	VPM_A_STATUS_VERSION = 1,
	VPM_A_STATUS_HOOKS,
	VPM_A_STATUS_PKTS_SEEN,

	__VPM_A_STATUS_MAX,
	VPM_A_STATUS_MAX = (__VPM_A_STATUS_MAX - 1)
};

enum {
	VPM_CMD_GET_STATUS = 1,

	__VPM_CMD_MAX,
	VPM_CMD_MAX = (__VPM_CMD_MAX - 1)
};

#endif /* _UAPI_LINUX_VPM_H */
