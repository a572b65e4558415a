// SPDX-License-Identifier: GPL-2.0

//! The packet path's views of a namespace's table: what it reads, under
//! RCU and without a lock, to translate a packet.
//!
//! [`Views`] offers only reads.  Every write goes through the namespace's
//! one [`ViewWriter`], which its `Table` owns, so only a holder of
//! `&mut Table` (that is, of the table's mutex) can change what the packet
//! path sees: the single-writer rule is a fact the compiler checks.

use core::sync::atomic::{AtomicBool, Ordering};

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::alloc::AllocError;
use kernel::prelude::*;
use kernel::sync::{rcu, Arc};

use crate::vpm_counters::EntryCounters;
use crate::vpm_flow::{FlowTable, Slot};
use crate::vpm_rules::{self, Match, Peer, Source};
use crate::vpm_sys::rcu::{PortMap, RcuCell};

/// An allocation as the packet path sees it.
#[derive(Clone)]
pub(crate) struct Target {
    /// The anonymous port.
    pub(crate) anon: u16,
    /// Protocols covered (`PROTO_*` bits).
    pub(crate) protos: u32,
    /// Where its traffic is counted.
    pub(crate) counters: EntryCounters,
    /// The allocation's id (see `Mapping::id`).
    pub(crate) id: u64,
}

/// Everything the packet path needs to steer packets for one fixed port.
///
/// Built by the control plane from the table, published whole through
/// RCU, never modified afterwards.
pub(crate) struct PortView {
    /// Source rules except the default, most specific first.
    rules: KVec<(Match, Target)>,
    /// Allocations with a cgroup: (cgroup id, its depth), deepest first.
    cgroups: KVec<(u64, u16, Target)>,
    /// The port's default AID.
    default: Option<Target>,
}

impl PortView {
    /// The view of a port with these rules (the default excluded) and
    /// cgroups, in any order, and this default.
    pub(crate) fn new(
        mut rules: KVec<(Match, Target)>,
        mut cgroups: KVec<(u64, u16, Target)>,
        default: Option<Target>,
    ) -> Self {
        vpm_rules::sort(&mut rules);
        cgroups.sort_unstable_by_key(|c| core::cmp::Reverse(c.1));
        Self {
            rules,
            cgroups,
            default,
        }
    }

    /// The allocation a packet of protocol bit `proto` from `src` belongs
    /// to: the most specific source rule, else the innermost cgroup of the
    /// sending local socket that has an allocation, else the port's
    /// default.  `ancestor(level)` is the id of the sending socket's
    /// cgroup ancestor at depth `level` (0 when there is none); `None` for
    /// packets from the network.  The cgroup scan is bounded by
    /// `RULES_PER_PORT`, like the rules.
    pub(crate) fn select(
        &self,
        src: &Source,
        ancestor: Option<&dyn Fn(u16) -> u64>,
        proto: u32,
    ) -> Option<&Target> {
        let usable = |t: &Target| t.protos & proto != 0;
        if let Some(t) = vpm_rules::select(&self.rules, src, usable) {
            return Some(t);
        }
        if let Some(ancestor) = ancestor {
            // Deepest first, so the innermost matching cgroup wins; one
            // ancestor lookup per level.
            let mut memo: Option<(u16, u64)> = None;
            let hit = self.cgroups.iter().find(|(id, level, t)| {
                if !usable(t) {
                    return false;
                }
                let at = match memo {
                    Some((l, at)) if l == *level => at,
                    _ => {
                        let at = ancestor(*level);
                        memo = Some((*level, at));
                        at
                    }
                };
                at == *id
            });
            if let Some((_, _, t)) = hit {
                return Some(t);
            }
        }
        self.default.as_ref().filter(|t| usable(t))
    }
}

/// What the packet path needs for replies from one anonymous port.
pub(crate) struct RevView {
    /// The fixed port replies must carry.
    pub(crate) fixed: u16,
    /// Protocols covered (`PROTO_*` bits).
    pub(crate) protos: u32,
    /// Where its traffic is counted.
    pub(crate) counters: EntryCounters,
    /// The allocation's id (see `Mapping::id`).
    pub(crate) id: u64,
    /// Cooperative peers: replies to them keep the anonymous port.
    pub(crate) peers: KVec<Peer>,
}

/// A namespace's flow table.
pub(crate) type Flows = FlowTable<KVVec<Slot>>;

/// The packet path's lock-free view of a namespace's table.
///
/// Lookups are two loads per port, whatever the number of entries.
pub(crate) struct Views {
    /// Fixed port -> how to steer packets addressed to it.
    fwd: KBox<PortMap<PortView>>,
    /// Anonymous port -> the fixed port its replies carry.
    rev: KBox<PortMap<RevView>>,
    /// Pinned flows; published once, with the first allocation.
    flows: RcuCell<Flows>,
    /// Whether the table has any allocation: a namespace without one
    /// (vpm loaded but unused) passes every packet before parsing it.
    active: AtomicBool,
}

impl Views {
    /// Empty views and their one writer.
    pub(crate) fn new() -> Result<(Arc<Views>, ViewWriter), AllocError> {
        let views = Arc::new(
            Views {
                fwd: PortMap::new()?,
                rev: PortMap::new()?,
                flows: RcuCell::new(),
                active: AtomicBool::new(false),
            },
            GFP_KERNEL_ACCOUNT,
        )?;
        // INVARIANT: The only writer of these views.
        Ok((views.clone(), ViewWriter(views)))
    }

    /// Whether the table has any allocation (else no packet is vpm's).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// How to steer packets addressed to fixed port `port`.
    #[inline]
    pub(crate) fn fwd<'g>(&'g self, port: u16, guard: &'g rcu::Guard) -> Option<&'g PortView> {
        self.fwd.get(port, guard)
    }

    /// What replies from anonymous port `anon` carry.
    #[inline]
    pub(crate) fn rev<'g>(&'g self, anon: u16, guard: &'g rcu::Guard) -> Option<&'g RevView> {
        self.rev.get(anon, guard)
    }

    /// The flow table, once published.
    #[inline]
    pub(crate) fn flows<'g>(&'g self, guard: &'g rcu::Guard) -> Option<&'g Flows> {
        self.flows.get(guard)
    }
}

/// The one writer of a namespace's [`Views`], kept in its table.
///
/// # Invariants
///
/// It is the only `ViewWriter` of its views (made with them by
/// [`Views::new`], not `Clone`), so writes need `&mut` of its owner.
pub(crate) struct ViewWriter(Arc<Views>);

impl ViewWriter {
    /// The views, for reading.
    pub(crate) fn views(&self) -> &Views {
        &self.0
    }

    /// Sets the view of a fixed port (`None`: removes it) and that of an
    /// anonymous port, all or nothing: the only step that can fail,
    /// allocation, comes before any change.  Replaced views are freed
    /// after a grace period.
    pub(crate) fn publish(
        &mut self,
        fwd: Option<(u16, Option<PortView>)>,
        rev: Option<(u16, RevView)>,
    ) -> Result<(), AllocError> {
        let views = &*self.0;
        let fwd = match fwd {
            Some((port, Some(view))) => Some((port, Some(views.fwd.stage(port, view)?))),
            Some((port, None)) => Some((port, None)),
            None => None,
        };
        let rev = match rev {
            Some((anon, view)) => Some(views.rev.stage(anon, view)?),
            None => None,
        };
        match fwd {
            Some((_, Some(staged))) => staged.commit(),
            Some((port, None)) => views.fwd.clear(port),
            None => {}
        }
        if let Some(staged) = rev {
            staged.commit();
        }
        Ok(())
    }

    /// Removes the view of anonymous port `anon`.  Cannot fail.
    pub(crate) fn clear_rev(&mut self, anon: u16) {
        self.0.rev.clear(anon);
    }

    /// Removes the view of fixed port `port`.  Cannot fail.
    pub(crate) fn clear_fwd(&mut self, port: u16) {
        self.0.fwd.clear(port);
    }

    /// Records whether the table has any allocation.  A packet racing
    /// with the first allocation's publication passes untranslated, as
    /// one arriving just before it would.
    pub(crate) fn set_active(&mut self, active: bool) {
        self.0.active.store(active, Ordering::Relaxed);
    }

    /// Publishes the flow table.
    pub(crate) fn publish_flows(&mut self, flows: Flows) -> Result<(), AllocError> {
        self.0.flows.stage(flows)?.commit();
        Ok(())
    }
}
