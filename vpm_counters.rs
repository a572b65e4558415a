// SPDX-License-Identifier: GPL-2.0

//! vpm's traffic counters: per namespace ([`Stat`]) and per allocation
//! ([`EntryStat`]), all per-CPU, so the packet path counts without
//! contention and the control plane sums them when asked.

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::alloc::AllocError;
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::vpm_sys::PerCpuCounters;

/// Per-namespace counters, indexed into [`NetCounters`].
#[derive(Clone, Copy)]
pub(crate) enum Stat {
    /// Packets that entered one of the namespace's vpm hooks.
    PktsSeen,
    /// Packets translated fixed port -> anonymous port.
    XlatIn,
    /// Packets translated anonymous port -> fixed port.
    XlatOut,
    /// Packets for a multiplexed fixed port that no rule, cgroup or
    /// default steered to an allocation: passed untouched.
    NoAid,
    /// Packets vpm could not parse safely (truncated, bad lengths, UDP/IPv6
    /// without checksum): passed untouched.
    Malformed,
    /// Non-first fragments: no ports to look at, passed untouched.
    Fragments,
    /// ICMP/ICMPv6 errors whose quoted packet was translated.
    IcmpXlat,
    /// Flows pinned to their allocation (first packet translated).
    FlowsNew,
    /// Flows whose slot was taken over after their timeout.
    FlowsExpired,
    /// Live flows pushed out of a full bucket by a new one.
    FlowsEvicted,
    /// Packets translated without a pin: a TCP segment of a connection
    /// vpm never saw open (or whose pin was lost), or a new flow that lost
    /// a race for its slot.
    FlowsUnpinned,
    /// Packets that had to be translated but could not be made writable
    /// (out of memory): dropped, since delivering them untranslated would
    /// reach the wrong application.
    Dropped,
    /// Packets with a multiplexed fixed port or an allocated anonymous
    /// port that this host neither receives nor sent from its own socket
    /// (forwarded, bridged, addressed elsewhere, or from another socket
    /// or a source NAT): passed untouched.
    Foreign,
    /// Packets between an anonymous port and one of its allocation's
    /// cooperative peers on a direct flow (the peer addressed the
    /// anonymous port itself): the peer's packets, the instance's
    /// replies, ICMP errors about them; passed untouched.
    Peer,
}

impl Stat {
    /// Number of counters.
    pub(crate) const COUNT: usize = 14;
}

/// A namespace's counters, one of each [`Stat`].
pub(crate) struct NetCounters(PerCpuCounters<{ Stat::COUNT }>);

impl NetCounters {
    /// Zeroed counters, charged to the caller's memory cgroup.
    pub(crate) fn new() -> Result<Self, AllocError> {
        Ok(Self(PerCpuCounters::new()?))
    }

    /// Counts one event; callable from the packet path.
    #[inline]
    pub(crate) fn count(&self, stat: Stat) {
        self.0.add(stat as usize, 1);
    }

    /// Counts one event of each; callable from the packet path.
    #[inline]
    pub(crate) fn count2(&self, a: Stat, b: Stat) {
        self.0.add2(a as usize, 1, b as usize, 1);
    }

    /// Reads a counter, summed over all CPUs.
    pub(crate) fn read(&self, stat: Stat) -> u64 {
        self.0.sum(stat as usize)
    }
}

/// Per-allocation counters, indexed into [`EntryCounters`].
#[derive(Clone, Copy)]
pub(crate) enum EntryStat {
    /// Packets translated fixed port -> anonymous port.
    PktsIn,
    /// Their bytes (IP header included).
    BytesIn,
    /// Packets translated anonymous port -> fixed port.
    PktsOut,
    /// Their bytes (IP header included).
    BytesOut,
}

impl EntryStat {
    /// Number of counters.
    pub(crate) const COUNT: usize = 4;
}

/// Anonymous ports per [`CounterPage`].
const PAGE_PORTS: usize = 256;

/// The per-CPU counters of 256 consecutive anonymous ports (8 KiB per
/// CPU).  Pages are allocated when the first port in them is, and kept
/// until the namespace goes: allocating per-CPU memory per allocation
/// made adding allocations several times slower.
struct CounterPage(PerCpuCounters<{ PAGE_PORTS * EntryStat::COUNT }>);

/// The counters of one allocation: a slot of a shared [`CounterPage`],
/// used by the control plane (which reports them) and by the packet
/// path's views (which count into them).
#[derive(Clone)]
pub(crate) struct EntryCounters {
    page: Arc<CounterPage>,
    slot: usize,
}

impl EntryCounters {
    /// Counts a packet of `bytes` bytes: `pkts` + 1, `bytes_stat` +
    /// `bytes`, in one call; callable from the packet path.
    #[inline]
    pub(crate) fn add_packet(&self, pkts: EntryStat, bytes_stat: EntryStat, bytes: u64) {
        let base = self.slot * EntryStat::COUNT;
        self.page
            .0
            .add2(base + pkts as usize, 1, base + bytes_stat as usize, bytes);
    }

    /// Counter `stat`, summed over all CPUs.
    pub(crate) fn sum(&self, stat: EntryStat) -> u64 {
        self.page
            .0
            .sum(self.slot * EntryStat::COUNT + stat as usize)
    }

    /// Zeroes the counters (a port handed to a new allocation).  Packets
    /// of the previous owner still in flight may count into the new one.
    fn reset(&self) {
        for stat in 0..EntryStat::COUNT {
            self.page.0.reset(self.slot * EntryStat::COUNT + stat);
        }
    }
}

/// The counter pages of a namespace, by anonymous port / 256: the
/// control plane hands out [`EntryCounters`] from them.
pub(crate) struct CounterPages(KVec<Option<Arc<CounterPage>>>);

impl CounterPages {
    /// No pages yet (room for the index of all 256).
    pub(crate) fn new() -> Result<Self, AllocError> {
        let mut v = KVec::with_capacity(65536 / PAGE_PORTS, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..65536 / PAGE_PORTS {
            v.push(None, GFP_KERNEL_ACCOUNT)?;
        }
        Ok(Self(v))
    }

    /// Fresh (zeroed) counters for anonymous port `anon`, allocating its
    /// page on first use.
    pub(crate) fn for_port(&mut self, anon: u16) -> Result<EntryCounters, AllocError> {
        let page = &mut self.0[usize::from(anon) / PAGE_PORTS];
        let page = match page {
            Some(p) => p.clone(),
            None => page
                .insert(Arc::new(
                    CounterPage(PerCpuCounters::new()?),
                    GFP_KERNEL_ACCOUNT,
                )?)
                .clone(),
        };
        let counters = EntryCounters {
            page,
            slot: usize::from(anon) % PAGE_PORTS,
        };
        counters.reset();
        Ok(counters)
    }
}
