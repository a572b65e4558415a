/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/* Do not edit directly, auto-generated from: */
/*	uapi/vpm.yaml */
/* YNL-GEN uapi header */
/* To regenerate run: tools/net/ynl/ynl-regen.sh */

#ifndef _UAPI_LINUX_VPM_H
#define _UAPI_LINUX_VPM_H

#define VPM_FAMILY_NAME		"vpm"
#define VPM_FAMILY_VERSION	1

#define VPM_AID_MAX_LEN	31

/*
 * Transport protocols an allocation covers.
 */
enum vpm_proto {
	VPM_PROTO_TCP = 1,
	VPM_PROTO_UDP = 2,
};

enum {
	VPM_A_STATUS_VERSION = 1,
	VPM_A_STATUS_HOOKS,
	VPM_A_STATUS_PKTS_SEEN,

	__VPM_A_STATUS_MAX,
	VPM_A_STATUS_MAX = (__VPM_A_STATUS_MAX - 1)
};

enum {
	VPM_A_MAPPING_AID = 1,
	VPM_A_MAPPING_PORT,
	VPM_A_MAPPING_PROTO,
	VPM_A_MAPPING_ANON_PORT,
	VPM_A_MAPPING_WAIT_MS,

	__VPM_A_MAPPING_MAX,
	VPM_A_MAPPING_MAX = (__VPM_A_MAPPING_MAX - 1)
};

enum {
	VPM_A_CONFIG_RANGE_LO = 1,
	VPM_A_CONFIG_RANGE_HI,
	VPM_A_CONFIG_MAX_ENTRIES,
	VPM_A_CONFIG_ENTRIES,

	__VPM_A_CONFIG_MAX,
	VPM_A_CONFIG_MAX = (__VPM_A_CONFIG_MAX - 1)
};

enum {
	VPM_CMD_GET_STATUS = 1,
	VPM_CMD_ADD_MAPPING,
	VPM_CMD_DEL_MAPPING,
	VPM_CMD_GET_MAPPING,
	VPM_CMD_FLUSH,
	VPM_CMD_GET_CONFIG,
	VPM_CMD_SET_CONFIG,
	VPM_CMD_MAPPING_NEW_NTF,
	VPM_CMD_MAPPING_DEL_NTF,
	VPM_CMD_FLUSH_NTF,
	VPM_CMD_CONFIG_NTF,

	__VPM_CMD_MAX,
	VPM_CMD_MAX = (__VPM_CMD_MAX - 1)
};

#define VPM_MCGRP_EVENTS	"events"

#endif /* _UAPI_LINUX_VPM_H */
