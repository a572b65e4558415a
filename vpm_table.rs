// SPDX-License-Identifier: GPL-2.0

//! vpm's state in one network namespace.
//!
//! One [`NetState`] lives in each namespace's `net_generic` slot (see
//! `vpm_sys.rs`), from the namespace's creation (or module load) to its
//! destruction (or module unload).  The packet path reaches it through the
//! hooks' `priv` pointer and only takes shared references, so everything
//! it touches here is per-CPU or atomic: no lock is shared with the control
//! plane.

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::prelude::*;

use crate::vpm_sys::PerCpuCounters;

/// Per-namespace counters, indexed into [`NetState::counters`].
#[derive(Clone, Copy)]
pub(crate) enum Stat {
    /// Packets that entered one of the namespace's vpm hooks.
    PktsSeen,
}

impl Stat {
    /// Number of counters.
    pub(crate) const COUNT: usize = 1;
}

/// vpm's state in one network namespace.
pub(crate) struct NetState {
    counters: PerCpuCounters<{ Stat::COUNT }>,
    /// Number of netfilter hooks currently registered in the namespace.
    hooks: AtomicU32,
}

impl NetState {
    /// Creates the state of a new namespace (process context).
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            counters: PerCpuCounters::new()?,
            hooks: AtomicU32::new(0),
        })
    }

    /// Counts one event; callable from the packet path.
    #[inline]
    pub(crate) fn count(&self, stat: Stat) {
        self.counters.add(stat as usize, 1);
    }

    /// Reads a counter, summed over all CPUs.
    pub(crate) fn read(&self, stat: Stat) -> u64 {
        self.counters.sum(stat as usize)
    }

    /// Records how many hooks the namespace has registered.
    pub(crate) fn set_hooks(&self, n: u32) {
        self.hooks.store(n, Ordering::Release);
    }

    /// Number of hooks registered in the namespace.
    pub(crate) fn hooks(&self) -> u32 {
        self.hooks.load(Ordering::Acquire)
    }
}
