// SPDX-License-Identifier: GPL-2.0

//! vpm's state in one network namespace: counters, the packet path's
//! views and the control plane's table.
//!
//! One [`NetState`] lives in each namespace's `net_generic` slot (see
//! `vpm_net.rs`), from the namespace's creation (or module load) to its
//! destruction (or module unload).  The packet path reaches it through the
//! hooks' `priv` pointer and only takes shared references, so everything
//! it touches here is per-CPU or atomic: no lock is shared with the control
//! plane.
//!
//! # Locking
//!
//! [`NetState::table`] is a mutex taken only by netlink handlers (process
//! context, may sleep).  It protects the allocator, the allocations, the
//! source rules, the reserved-port record and the dump generation, and,
//! since the table owns the views' one writer (`vpm_views.rs`), every
//! change of [`NetState::views`].  The packet path never takes it: it
//! reads the views under RCU, which the writer replaces per port and
//! frees after a grace period.  The views are a function of the table:
//! each change stages the new views before it touches the table, so an
//! allocation failure changes nothing.

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{rcu, Arc, Mutex};

use crate::vpm_counters::{NetCounters, Stat};
use crate::vpm_sys::{now_secs, NetRef};
use crate::vpm_table::Table;
use crate::vpm_views::Views;

/// vpm's state in one network namespace.
pub(crate) struct NetState {
    counters: NetCounters,
    /// Number of netfilter hooks currently registered in the namespace.
    hooks: AtomicU32,
    /// The packet path's view of the table (see [`Views`]).
    pub(crate) views: Arc<Views>,
    /// The allocations and rules; control plane only.
    pub(crate) table: Pin<KBox<Mutex<Table>>>,
}

impl NetState {
    /// Creates the state of a new namespace (process context).
    pub(crate) fn create(net: NetRef) -> Result<Self> {
        let (views, writer) = Views::new()?;
        let table = Table::new(writer, net, crate::net_defaults())?;
        Ok(Self {
            counters: NetCounters::new()?,
            hooks: AtomicU32::new(0),
            views,
            table: KBox::pin_init(new_mutex!(table, "vpm_table"), GFP_KERNEL_ACCOUNT)?,
        })
    }

    /// Counts one event; callable from the packet path.
    #[inline]
    pub(crate) fn count(&self, stat: Stat) {
        self.counters.count(stat);
    }

    /// Counts one event of each; callable from the packet path.
    #[inline]
    pub(crate) fn count2(&self, a: Stat, b: Stat) {
        self.counters.count2(a, b);
    }

    /// Reads a counter, summed over all CPUs.
    pub(crate) fn read(&self, stat: Stat) -> u64 {
        self.counters.read(stat)
    }

    /// Records how many hooks the namespace has registered.
    pub(crate) fn hooks_registered(&self, n: u32) {
        self.hooks.store(n, Ordering::Release);
    }

    /// Number of hooks registered in the namespace.
    pub(crate) fn hooks(&self) -> u32 {
        self.hooks.load(Ordering::Acquire)
    }

    /// Number of live pinned flows (walks the flow table).
    pub(crate) fn flows_active(&self) -> u64 {
        let guard = rcu::read_lock();
        let now = now_secs();
        self.views.flows(&guard).map_or(0, |f| f.live(now) as u64)
    }
}
