// SPDX-License-Identifier: GPL-2.0

//! Handlers of the `vpm` generic netlink family (`uapi/vpm.yaml`).
//!
//! The C entry points generated from the spec land in `vpm_sys.rs`, which
//! hands each handler a safe [`GenlInfo`]; handlers run in process context
//! and may sleep.

use kernel::prelude::*;

use crate::vpm_sys::{GenlInfo, Reply};
use crate::vpm_table::Stat;
use crate::vpm_uapi as uapi;

/// `get-status`: module version, hooks and counters of the caller's namespace.
pub(crate) fn get_status(info: &GenlInfo<'_>) -> Result {
    let state = info.net_state();
    let mut reply = Reply::new(info)?;
    reply.put_str(uapi::VPM_A_STATUS_VERSION, crate::VERSION)?;
    reply.put_u32(uapi::VPM_A_STATUS_HOOKS, state.hooks())?;
    reply.put_uint(uapi::VPM_A_STATUS_PKTS_SEEN, state.read(Stat::PktsSeen))?;
    reply.send()
}
