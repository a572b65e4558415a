// SPDX-License-Identifier: GPL-2.0

//! The packet path: what vpm's netfilter hooks do with each packet.
//!
//! Called in softirq or process context with RCU held by netfilter.  The
//! rules of this file: no allocation, no sleeping, no lock the control
//! plane can hold, no printing; every packet is accepted unless a stated
//! policy says otherwise, and every outcome is counted.

use kernel::bindings;

use crate::vpm_sys::Skb;
use crate::vpm_table::{NetState, Stat};

/// Handles one packet in namespace `state` at hook `hooknum` of family `pf`.
///
/// For now vpm only observes: it counts the packet and lets it pass
/// unchanged.  Port translation is added on top of this entry point.
pub(crate) fn hook(state: &NetState, _skb: Skb<'_>, _pf: u8, _hooknum: u32) -> u32 {
    state.count(Stat::PktsSeen);
    bindings::NF_ACCEPT
}
