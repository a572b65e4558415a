// SPDX-License-Identifier: GPL-2.0

//! vpm's state in one network namespace: counters and the allocation table.
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
//! source rules, the reserved-port record and the dump generation, and it
//! serialises every writer of [`NetState::views`].  The packet path never
//! takes it: it reads the views under RCU (`vpm_rcu.rs`), which writers
//! replace per port and free after a grace period.  The views are a
//! function of the table: each change stages the new views before it
//! touches the table, so an allocation failure changes nothing.

use core::cmp::Ordering as CmpOrdering;
use core::sync::atomic::{AtomicU32, Ordering};

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{rcu, Arc, Mutex};

use crate::vpm_alloc::{AllocError, PortAllocator, WORDS};
use crate::vpm_flow::{FlowTable, Slot};
use crate::vpm_sys::rcu::{PortMap, RcuCell, Staged};
use crate::vpm_rules::{self, Match, Source};
use crate::vpm_sys::{now_secs, random_u64, NetRef, PerCpuCounters};

/// Default anonymous port range: below the default ephemeral range
/// (32768-60999), so the kernel never hands these ports to `connect()`.
pub(crate) const DEFAULT_RANGE: (u16, u16) = (20000, 29999);
/// Default limit on allocations per namespace.
pub(crate) const DEFAULT_MAX_ENTRIES: u32 = 65535;
/// Slots of a namespace's flow table (`vpm_flow.rs`): 8,192 pinned flows,
/// 128 KiB, allocated with the namespace's first allocation.
pub(crate) const FLOW_SLOTS: usize = 8192;
/// Most source rules on one fixed port: bounds the packet path's scan.
pub(crate) const RULES_PER_PORT: u32 = 256;
/// Longest application id, in bytes (uapi `VPM_AID_MAX_LEN`).
pub(crate) const AID_MAX_LEN: usize = 31;

/// Both protocols.
pub(crate) const PROTO_ALL: u32 =
    crate::vpm_uapi::vpm_proto_VPM_PROTO_TCP | crate::vpm_uapi::vpm_proto_VPM_PROTO_UDP;

/// An application id: 1 to [`AID_MAX_LEN`] bytes of `[A-Za-z0-9._-]`.
///
/// # Invariants
///
/// `bytes[..len]` is a valid id and `bytes[len..]` is zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Aid {
    len: u8,
    bytes: [u8; AID_MAX_LEN],
}

impl Aid {
    /// Validates `s`.
    pub(crate) fn new(s: &[u8]) -> Option<Self> {
        let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if s.is_empty() || s.len() > AID_MAX_LEN || !s.iter().all(ok) {
            return None;
        }
        let mut bytes = [0; AID_MAX_LEN];
        bytes[..s.len()].copy_from_slice(s);
        // INVARIANT: validated above; the tail stays zero.
        Some(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The smallest valid id, `-` (dump cursors start below every AID).
    pub(crate) const MIN: Aid = {
        let mut bytes = [0; AID_MAX_LEN];
        bytes[0] = b'-';
        // INVARIANT: "-" is a valid id; the tail is zero.
        Aid { len: 1, bytes }
    };

    /// The id's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl PartialEq for Aid {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Aid {}
impl PartialOrd for Aid {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Aid {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Key of an allocation; ordered by fixed port, then AID (dump order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) port: u16,
    pub(crate) aid: Aid,
}

impl Key {
    /// The first possible key of `port`.
    fn first_of(port: u16) -> Self {
        Self {
            port,
            aid: Aid::MIN,
        }
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
pub(crate) struct CounterPage(PerCpuCounters<{ PAGE_PORTS * EntryStat::COUNT }>);

/// The counters of one allocation: a slot of a shared [`CounterPage`],
/// used by the control plane (which reports them) and by the packet
/// path's views (which count into them).
#[derive(Clone)]
pub(crate) struct EntryCounters {
    page: Arc<CounterPage>,
    slot: usize,
}

impl EntryCounters {
    /// Adds `val` to counter `stat`; callable from the packet path.
    #[inline]
    pub(crate) fn add(&self, stat: EntryStat, val: u64) {
        self.page.0.add(self.slot * EntryStat::COUNT + stat as usize, val);
    }

    /// Counter `stat`, summed over all CPUs.
    pub(crate) fn sum(&self, stat: EntryStat) -> u64 {
        self.page.0.sum(self.slot * EntryStat::COUNT + stat as usize)
    }

    /// Zeroes the counters (a port handed to a new allocation).  Packets
    /// of the previous owner still in flight may count into the new one.
    fn reset(&self) {
        for stat in 0..EntryStat::COUNT {
            self.page.0.reset(self.slot * EntryStat::COUNT + stat);
        }
    }
}

/// The cgroup v2 whose sockets belong to an allocation's AID.
pub(crate) struct Cgroup {
    /// Its id (the inode number of its directory).
    pub(crate) id: u64,
    /// Its depth in the hierarchy (0 for the root).
    pub(crate) level: u16,
    /// The path the configurator gave, reported back as is.
    pub(crate) path: KVec<u8>,
}

/// One allocation.
pub(crate) struct Mapping {
    /// The anonymous port.
    pub(crate) anon: u16,
    /// Protocols covered (`PROTO_*` bits).
    pub(crate) protos: u32,
    /// Local clients in this cgroup (or below) reach this allocation.
    pub(crate) cgroup: Option<Cgroup>,
    /// Traffic counters.
    pub(crate) counters: EntryCounters,
    /// Tells this allocation from every other one of the namespace, past
    /// and future (flow pins record it): 48 bits, never reused.
    pub(crate) id: u64,
}

impl Mapping {
    fn target(&self) -> Target {
        Target {
            anon: self.anon,
            protos: self.protos,
            counters: self.counters.clone(),
            id: self.id,
        }
    }
}

/// Key of a source rule: fixed port, then what the rule matches.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RuleKey {
    pub(crate) port: u16,
    pub(crate) m: Match,
}

/// Why a table operation failed; each maps to an errno and a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// No port free in the range (`in_use`, `lo`, `hi`).
    RangeExhausted { in_use: u32, lo: u16, hi: u16 },
    /// The namespace holds `max` allocations already.
    TooManyEntries { max: u32 },
    /// Every port of the range not allocated (`in_use` are) is bound by a
    /// socket of the namespace.
    RangeBound { in_use: u32, lo: u16, hi: u16 },
    /// The requested anonymous port is outside the range.
    PortOutOfRange { lo: u16, hi: u16 },
    /// The requested anonymous port is allocated to someone else.
    PortTaken,
    /// The pair already has a different anonymous port.
    OtherAnonPort { anon: u16 },
    /// No such allocation.
    NotFound,
    /// A new range would not hold the current allocations.
    RangeInUse,
    /// A range with lo > hi.
    BadRange,
    /// A limit below the current number of allocations or rules.
    LimitBelowUse { entries: u32 },
    /// A rule names an (AID, port) without an allocation.
    RuleWithoutMapping,
    /// A rule with the same match exists (pointing to `aid`).
    RuleExists { aid: Aid },
    /// No such rule.
    RuleNotFound,
    /// The namespace holds `max` rules already.
    TooManyRules { max: u32 },
    /// The port holds [`RULES_PER_PORT`] rules already.
    PortFullOfRules,
    /// The port holds [`RULES_PER_PORT`] allocations with a cgroup already.
    PortFullOfCgroups,
    /// Out of memory.
    NoMemory,
}

impl From<kernel::error::Error> for TableError {
    fn from(_: kernel::error::Error) -> Self {
        TableError::NoMemory
    }
}

impl From<kernel::alloc::AllocError> for TableError {
    fn from(_: kernel::alloc::AllocError) -> Self {
        TableError::NoMemory
    }
}

// ---- the packet path's views ------------------------------------------------

/// An allocation as the packet path sees it.
#[derive(Clone)]
pub(crate) struct Target {
    /// The anonymous port.
    pub(crate) anon: u16,
    /// Protocols covered (`PROTO_*` bits).
    pub(crate) protos: u32,
    /// Where its traffic is counted.
    pub(crate) counters: EntryCounters,
    /// The allocation's id (see [`Mapping::id`]).
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
    /// The allocation a packet of protocol bit `proto` from `src` belongs
    /// to: the most specific source rule, else the innermost cgroup of the
    /// sending local socket that has an allocation, else the port's
    /// default.  `ancestor(level)` is the id of the sending socket's
    /// cgroup ancestor at depth `level` (0 when there is none); `None` for
    /// packets from the network.  The cgroup scan is bounded by
    /// [`RULES_PER_PORT`], like the rules.
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
    /// The allocation's id (see [`Mapping::id`]).
    pub(crate) id: u64,
}

/// A namespace's flow table.
pub(crate) type Flows = FlowTable<KVVec<Slot>>;

/// The packet path's lock-free view of a namespace's table.
///
/// # Locking
///
/// Written only by [`Table`] methods, which run under the table's mutex;
/// read under RCU by the hooks.  Lookups are two loads per port, whatever
/// the number of entries.
pub(crate) struct Views {
    /// Fixed port -> how to steer packets addressed to it.
    pub(crate) fwd: KBox<PortMap<PortView>>,
    /// Anonymous port -> the fixed port its replies carry.
    pub(crate) rev: KBox<PortMap<RevView>>,
    /// Pinned flows; published once, with the first allocation.
    pub(crate) flows: RcuCell<Flows>,
}

/// Visits `tree` from the first key not below `from` while `f` says so.
fn for_each_from<K: Ord, V, E>(
    tree: &RBTree<K, V>,
    from: &K,
    mut f: impl FnMut(&K, &V) -> Result<bool, E>,
) -> Result<(), E> {
    let mut cur = tree.cursor_lower_bound(from);
    while let Some(c) = cur {
        let (k, v) = c.current();
        if !f(k, v)? {
            break;
        }
        cur = c.peek_next().and_then(|(next, _)| tree.cursor_lower_bound(next));
    }
    Ok(())
}

// ---- the control plane's table ---------------------------------------------

/// The control plane's view of a namespace's allocations and rules.
///
/// Every change stages the packet path's new views first (the only step
/// that allocates), then changes the table and commits the views, so a
/// failed request leaves both exactly as they were.
pub(crate) struct Table {
    alloc: PortAllocator<KVec<u64>>,
    map: RBTree<Key, Mapping>,
    rules: RBTree<RuleKey, Aid>,
    entries: u32,
    rule_count: u32,
    max_entries: u32,
    /// Bumped on every change; dumps compare it to detect a concurrent change.
    generation: u32,
    views: Arc<Views>,
    net: NetRef,
    /// Ports vpm set in `ip_local_reserved_ports` (and must clear again).
    reserved: KVec<u64>,
    /// Id of the next allocation (48 bits: at a million allocations a
    /// second it would wrap after nine years).
    next_id: u64,
    /// Counter pages, by anonymous port / 256.
    counter_pages: KVec<Option<Arc<CounterPage>>>,
    /// Whether the flow table is published.
    flows: bool,
}

impl Table {
    fn new(views: Arc<Views>, net: NetRef) -> Result<Self> {
        let bits = KVec::from_elem(0u64, WORDS, GFP_KERNEL_ACCOUNT)?;
        let alloc =
            PortAllocator::new(bits, DEFAULT_RANGE.0, DEFAULT_RANGE.1).map_err(|_| EINVAL)?;
        Ok(Self {
            alloc,
            map: RBTree::new(),
            rules: RBTree::new(),
            entries: 0,
            rule_count: 0,
            max_entries: DEFAULT_MAX_ENTRIES,
            generation: 1,
            views,
            net,
            reserved: KVec::from_elem(0u64, WORDS, GFP_KERNEL_ACCOUNT)?,
            next_id: 1,
            flows: false,
            counter_pages: {
                let mut v = KVec::with_capacity(65536 / PAGE_PORTS, GFP_KERNEL_ACCOUNT)?;
                for _ in 0..65536 / PAGE_PORTS {
                    v.push(None, GFP_KERNEL_ACCOUNT)?;
                }
                v
            },
        })
    }

    /// Fresh (zeroed) counters for anonymous port `anon`.
    fn counters_for(&mut self, anon: u16) -> Result<EntryCounters, TableError> {
        let page = &mut self.counter_pages[usize::from(anon) / PAGE_PORTS];
        let page = match page {
            Some(p) => p.clone(),
            None => page
                .insert(Arc::new(CounterPage(PerCpuCounters::new()?), GFP_KERNEL_ACCOUNT)?)
                .clone(),
        };
        let counters = EntryCounters {
            page,
            slot: usize::from(anon) % PAGE_PORTS,
        };
        counters.reset();
        Ok(counters)
    }

    /// Publishes the flow table, the first time the namespace gets an
    /// allocation (namespaces that never use vpm do not pay for it).
    fn ensure_flows(&mut self) -> Result<(), TableError> {
        if self.flows {
            return Ok(());
        }
        let mut slots = KVVec::with_capacity(FLOW_SLOTS, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..FLOW_SLOTS {
            slots.push(Slot::default(), GFP_KERNEL_ACCOUNT)?;
        }
        let table = FlowTable::new(slots, [random_u64(), random_u64()]).ok_or(TableError::NoMemory)?;
        self.views.flows.stage(table)?.commit();
        self.flows = true;
        Ok(())
    }

    fn changed(&mut self) {
        // Never 0: the netlink core takes a dump sequence of 0 for "unset".
        self.generation = self.generation.wrapping_add(1).max(1);
    }

    /// Keeps the kernel from handing `port` to `connect()` or autobind.
    fn reserve(&mut self, port: u16) {
        if self.net.reserve_port(port) {
            self.reserved[usize::from(port) / 64] |= 1 << (port % 64);
        }
    }

    /// Gives an anonymous port back: to the allocator, and to the
    /// namespace's automatic binds.
    fn release_port(&mut self, port: u16) {
        self.alloc.release(port);
        self.unreserve(port);
    }

    /// Undoes [`Table::reserve`], leaving reservations vpm did not make.
    fn unreserve(&mut self, port: u16) {
        let (word, bit) = (usize::from(port) / 64, 1u64 << (port % 64));
        if self.reserved[word] & bit != 0 {
            self.reserved[word] &= !bit;
            self.net.unreserve_port(port);
        }
    }

    /// The packet path's view of `port` as the table stands, leaving out
    /// the allocation of `without` (and its rules); `None` when no
    /// allocation of the port is left.
    fn port_view(&self, port: u16, without: Option<&Aid>) -> Result<Option<PortView>, TableError> {
        let mut cgroups = KVec::new();
        let mut any = false;
        for_each_from(&self.map, &Key::first_of(port), |k, m| {
            if k.port != port {
                return Ok(false);
            }
            if Some(&k.aid) != without {
                any = true;
                if let Some(c) = &m.cgroup {
                    cgroups.push((c.id, c.level, m.target()), GFP_KERNEL_ACCOUNT)?;
                }
            }
            Ok::<_, TableError>(true)
        })?;
        if !any {
            return Ok(None);
        }
        let mut rules = KVec::new();
        let mut default = None;
        let first = RuleKey {
            port,
            m: Match::ANY,
        };
        for_each_from(&self.rules, &first, |rk, aid| {
            if rk.port != port {
                return Ok(false);
            }
            if Some(aid) == without {
                return Ok(true);
            }
            // Rules only ever point to existing allocations (`rule_add`
            // checks, `del` removes a mapping's rules with it).
            let Some(m) = self.map.get(&Key { port, aid: *aid }) else {
                return Ok(true);
            };
            if rk.m.is_default() {
                default = Some(m.target());
            } else {
                rules.push((rk.m, m.target()), GFP_KERNEL_ACCOUNT)?;
            }
            Ok::<_, TableError>(true)
        })?;
        vpm_rules::sort(&mut rules);
        cgroups.sort_unstable_by(|a, b| b.1.cmp(&a.1));
        Ok(Some(PortView {
            rules,
            cgroups,
            default,
        }))
    }

    /// Stages the views of fixed port `port` (without `without`'s entry).
    fn stage_port(&self, port: u16, without: Option<&Aid>) -> Result<Option<Staged<'_, PortView>>, TableError> {
        match self.port_view(port, without)? {
            Some(view) => Ok(Some(self.views.fwd.stage(port, view)?)),
            None => Ok(None),
        }
    }

    /// Stages the reply view of `key`'s allocation.
    fn stage_rev(&self, key: &Key) -> Result<Staged<'_, RevView>, TableError> {
        let m = self.map.get(key).ok_or(TableError::NotFound)?;
        let rev = RevView {
            fixed: key.port,
            protos: m.protos,
            counters: m.counters.clone(),
            id: m.id,
        };
        Ok(self.views.rev.stage(m.anon, rev)?)
    }

    /// Whether rules of `key.port` point to `key.aid`.
    fn has_rules(&self, key: &Key) -> bool {
        let mut found = false;
        let _ = for_each_from(&self.rules, &RuleKey { port: key.port, m: Match::ANY }, |k, aid| {
            found = k.port == key.port && *aid == key.aid;
            Ok::<_, ()>(k.port == key.port && !found)
        });
        found
    }

    /// Allocations of `key.port` other than `key`'s that have a cgroup.
    fn cgroups_on_port(&self, key: &Key) -> u32 {
        let mut n = 0;
        let _ = for_each_from(&self.map, &Key::first_of(key.port), |k, m| {
            if k.port != key.port {
                return Ok::<_, ()>(false);
            }
            if k.aid != key.aid && m.cgroup.is_some() {
                n += 1;
            }
            Ok(true)
        });
        n
    }

    /// Whether the port of `key` has another allocation than `key`'s.
    fn port_has_other(&self, key: &Key) -> bool {
        let mut other = false;
        let _ = for_each_from(&self.map, &Key::first_of(key.port), |k, _| {
            other = k.port == key.port && k.aid != key.aid;
            Ok::<_, ()>(k.port == key.port && !other)
        });
        other
    }

    /// Whether the packet path has a view of fixed port `port`.
    fn port_published(&self, port: u16) -> bool {
        let guard = rcu::read_lock();
        self.views.fwd.get(port, &guard).is_some()
    }

    /// Publishes the views of `key`'s allocation and, if `fwd`, of its
    /// fixed port; nothing changes on error.
    ///
    /// A port's view only lists allocations that rules or cgroups steer
    /// to, so an allocation without either changes it only by creating
    /// or removing the port: skipping the rebuild otherwise keeps adding
    /// the 10,000th AID of a port as cheap as adding the first.
    fn publish(&self, key: &Key, fwd: bool) -> Result<(), TableError> {
        let fwd = if fwd { self.stage_port(key.port, None)? } else { None };
        let rev = self.stage_rev(key)?;
        if let Some(fwd) = fwd {
            fwd.commit();
        }
        rev.commit();
        Ok(())
    }

    /// Allocates (or returns the existing) anonymous port of `key`.
    ///
    /// `want` asks for exactly that port; `cgroup`, if given, replaces the
    /// allocation's cgroup.  Returns whether the table changed (created,
    /// widened to more protocols, or a new cgroup).
    pub(crate) fn add(
        &mut self,
        key: Key,
        protos: u32,
        want: Option<u16>,
        cgroup: &mut Option<Cgroup>,
    ) -> Result<bool, TableError> {
        if cgroup.is_some() && self.cgroups_on_port(&key) >= RULES_PER_PORT {
            return Err(TableError::PortFullOfCgroups);
        }
        let has_rules = self.has_rules(&key);
        if let Some(m) = self.map.get_mut(&key) {
            let steered = has_rules || m.cgroup.is_some() || cgroup.is_some();
            if want.is_some_and(|w| w != m.anon) {
                return Err(TableError::OtherAnonPort { anon: m.anon });
            }
            let old_protos = m.protos;
            m.protos |= protos;
            let mut changed = m.protos != old_protos;
            let same = |c: &Cgroup| m.cgroup.as_ref().is_some_and(|o| o.id == c.id && o.path[..] == c.path[..]);
            let old_cgroup = match cgroup.take() {
                Some(c) if !same(&c) => {
                    changed = true;
                    Some(m.cgroup.replace(c))
                }
                _ => None,
            };
            if !changed {
                return Ok(false);
            }
            if let Err(e) = self.publish(&key, steered) {
                // Put things back: the views still show the old state.
                if let Some(m) = self.map.get_mut(&key) {
                    m.protos = old_protos;
                    if let Some(old) = old_cgroup {
                        m.cgroup = old;
                    }
                }
                return Err(e);
            }
            self.changed();
            return Ok(true);
        }
        if self.entries >= self.max_entries {
            return Err(TableError::TooManyEntries {
                max: self.max_entries,
            });
        }
        // Allocate everything first: nothing to undo if memory is short.
        self.ensure_flows()?;
        let slot = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        let (lo, hi) = self.alloc.range();
        let exhausted = |a: &PortAllocator<KVec<u64>>| TableError::RangeExhausted {
            in_use: a.in_use(),
            lo,
            hi,
        };
        let anon = match want {
            // Explicit: allowed even while a socket holds the port (restore
            // runs while the instances keep their sockets).
            Some(p) => {
                self.alloc.reserve(p).map_err(|e| match e {
                    AllocError::OutOfRange => TableError::PortOutOfRange { lo, hi },
                    AllocError::Taken => TableError::PortTaken,
                    _ => exhausted(&self.alloc),
                })?;
                self.reserve(p);
                p
            }
            None => match self.alloc_unbound() {
                Ok(p) => p,
                Err(AllocError::Taken) => {
                    return Err(TableError::RangeBound {
                        in_use: self.alloc.in_use(),
                        lo,
                        hi,
                    })
                }
                Err(_) => return Err(exhausted(&self.alloc)),
            },
        };
        let counters = match self.counters_for(anon) {
            Ok(c) => c,
            Err(e) => {
                self.release_port(anon);
                return Err(e);
            }
        };
        let steered = cgroup.is_some() || !self.port_published(key.port);
        let mapping = Mapping {
            anon,
            protos,
            cgroup: cgroup.take(),
            counters,
            id: self.next_id,
        };
        self.map.insert(slot.into_node(key, mapping));
        if let Err(e) = self.publish(&key, steered) {
            self.map.remove(&key);
            self.release_port(anon);
            return Err(e);
        }
        self.next_id = ((self.next_id + 1) & crate::vpm_flow::ID_MASK).max(1);
        self.entries += 1;
        self.changed();
        Ok(true)
    }

    /// Allocates the next free port of the range that no TCP or UDP socket
    /// of the namespace is bound to: an instance told to bind a port some
    /// other program holds would fail.  Ports skipped go back to the
    /// allocator; after one full turn of the range, the range counts as
    /// exhausted.  Work is bounded by the range's size.  `Taken`: every
    /// free port is bound by a socket.
    ///
    /// The port is reserved before the bind tables are asked: from then on
    /// no automatic bind (connect(), UDP autobind) can take it, so a port
    /// found unbound stays unbound by them.  Checking first would leave a
    /// window in which an autobind takes the port vpm then hands out.
    fn alloc_unbound(&mut self) -> Result<u16, AllocError> {
        let mut first_skipped = None;
        loop {
            let port = self.alloc.alloc()?;
            self.reserve(port);
            if !self.net.port_bound(port) {
                return Ok(port);
            }
            self.release_port(port);
            match first_skipped {
                Some(first) if first == port => return Err(AllocError::Taken),
                Some(_) => {}
                None => first_skipped = Some(port),
            }
        }
    }

    /// Releases the allocation of `key` and the rules that point to it.
    pub(crate) fn del(&mut self, key: &Key) -> Result<Mapping, TableError> {
        let m = self.map.get(key).ok_or(TableError::NotFound)?;
        let anon = m.anon;
        if m.cgroup.is_some() || self.has_rules(key) || !self.port_has_other(key) {
            match self.stage_port(key.port, Some(&key.aid))? {
                Some(fwd) => fwd.commit(),
                None => self.views.fwd.clear(key.port),
            }
        }
        self.views.rev.clear(anon);
        self.remove_rules_of(key);
        let m = self.map.remove(key).ok_or(TableError::NotFound)?;
        self.release_port(m.anon);
        self.entries -= 1;
        self.changed();
        Ok(m)
    }

    /// The rules of `key.port` that point to `key.aid` (which [`Table::del`]
    /// removes with the allocation), in key order.
    pub(crate) fn rules_of(&self, key: &Key) -> Result<KVec<RuleKey>, TableError> {
        let mut out = KVec::new();
        for_each_from(&self.rules, &RuleKey { port: key.port, m: Match::ANY }, |rk, aid| {
            if rk.port != key.port {
                return Ok(false);
            }
            if *aid == key.aid {
                out.push(*rk, GFP_KERNEL_ACCOUNT)?;
            }
            Ok::<_, TableError>(true)
        })?;
        Ok(out)
    }

    /// Drops the rules of `key.port` that point to `key.aid`.
    fn remove_rules_of(&mut self, key: &Key) {
        let first = RuleKey {
            port: key.port,
            m: Match::ANY,
        };
        let mut removed = 0;
        let mut cur = self.rules.cursor_lower_bound_mut(&first);
        while let Some(c) = cur {
            let (rk, aid) = c.current();
            if rk.port != key.port {
                break;
            }
            cur = if *aid == key.aid {
                removed += 1;
                c.remove_current().0
            } else {
                c.move_next()
            };
        }
        self.rule_count -= removed;
    }

    /// The allocation of `key`.
    pub(crate) fn get(&self, key: &Key) -> Option<&Mapping> {
        self.map.get(key)
    }

    /// Releases every allocation and rule; returns how many allocations
    /// there were.
    pub(crate) fn flush(&mut self) -> u32 {
        let n = self.entries;
        while let Some(c) = self.map.cursor_front_mut() {
            let (_, node) = c.remove_current();
            let (key, m) = node.to_key_value();
            self.views.fwd.clear(key.port);
            self.views.rev.clear(m.anon);
            self.release_port(m.anon);
        }
        while let Some(c) = self.rules.cursor_front_mut() {
            c.remove_current();
        }
        self.entries = 0;
        self.rule_count = 0;
        self.changed();
        n
    }

    /// Adds a source rule steering `rk.m` on `rk.port` to `aid`.
    pub(crate) fn rule_add(&mut self, rk: RuleKey, aid: Aid) -> Result<(), TableError> {
        if self.map.get(&Key { port: rk.port, aid }).is_none() {
            return Err(TableError::RuleWithoutMapping);
        }
        if let Some(other) = self.rules.get(&rk) {
            return Err(TableError::RuleExists { aid: *other });
        }
        if self.rule_count >= self.max_entries {
            return Err(TableError::TooManyRules {
                max: self.max_entries,
            });
        }
        let mut on_port = 0;
        for_each_from(&self.rules, &RuleKey { port: rk.port, m: Match::ANY }, |k, _| {
            if k.port != rk.port {
                return Ok(false);
            }
            on_port += 1;
            Ok::<_, TableError>(on_port < RULES_PER_PORT)
        })?;
        if on_port >= RULES_PER_PORT {
            return Err(TableError::PortFullOfRules);
        }
        let slot = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        self.rules.insert(slot.into_node(rk, aid));
        match self.stage_port(rk.port, None) {
            Ok(Some(fwd)) => fwd.commit(),
            // The rule's allocation exists, so the port has a view.
            Ok(None) => {}
            Err(e) => {
                self.rules.remove(&rk);
                return Err(e);
            }
        }
        self.rule_count += 1;
        self.changed();
        Ok(())
    }

    /// Removes the rule `rk`; returns the AID it pointed to.
    pub(crate) fn rule_del(&mut self, rk: &RuleKey) -> Result<Aid, TableError> {
        // Reserve first, so that a failed publish can put the rule back.
        let slot = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT)?;
        let aid = self.rules.remove(rk).ok_or(TableError::RuleNotFound)?;
        match self.stage_port(rk.port, None) {
            Ok(Some(fwd)) => fwd.commit(),
            Ok(None) => self.views.fwd.clear(rk.port),
            Err(e) => {
                self.rules.insert(slot.into_node(*rk, aid));
                return Err(e);
            }
        }
        self.rule_count -= 1;
        self.changed();
        Ok(aid)
    }

    /// Visits allocations in key order, starting after `after` (or at the
    /// first), until `f` returns false.
    pub(crate) fn visit_from(&self, after: Option<&Key>, mut f: impl FnMut(&Key, &Mapping) -> bool) {
        let from = after.copied().unwrap_or(Key::first_of(0));
        let _ = for_each_from(&self.map, &from, |k, m| {
            Ok::<_, ()>(after == Some(k) || f(k, m))
        });
    }

    /// Visits rules in key order, starting after `after` (or at the
    /// first), until `f` returns false.
    pub(crate) fn visit_rules_from(&self, after: Option<&RuleKey>, mut f: impl FnMut(&RuleKey, &Aid) -> bool) {
        let from = after.copied().unwrap_or(RuleKey { port: 0, m: Match::ANY });
        let _ = for_each_from(&self.rules, &from, |k, aid| {
            Ok::<_, ()>(after == Some(k) || f(k, aid))
        });
    }

    /// The range, limit, number of allocations and number of rules.
    pub(crate) fn config(&self) -> (u16, u16, u32, u32, u32) {
        let (lo, hi) = self.alloc.range();
        (lo, hi, self.max_entries, self.entries, self.rule_count)
    }

    /// Changes the range and/or limit; nothing changes on error.
    pub(crate) fn set_config(
        &mut self,
        range: Option<(u16, u16)>,
        max_entries: Option<u32>,
    ) -> Result<(), TableError> {
        if let Some(max) = max_entries {
            let used = self.entries.max(self.rule_count);
            if max < used {
                return Err(TableError::LimitBelowUse { entries: used });
            }
        }
        if let Some((lo, hi)) = range {
            self.alloc.set_range(lo, hi).map_err(|e| match e {
                AllocError::InUseOutside => TableError::RangeInUse,
                _ => TableError::BadRange,
            })?;
        }
        if let Some(max) = max_entries {
            self.max_entries = max;
        }
        self.changed();
        Ok(())
    }

    /// The dump generation (see `NLM_F_DUMP_INTR`).
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // Give the namespace back the ports vpm reserved in it.
        for (word, bits) in self.reserved.iter().enumerate() {
            let mut bits = *bits;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                self.net.unreserve_port((word * 64) as u16 + bit as u16);
            }
        }
    }
}

/// Per-namespace counters, indexed into [`NetState::counters`].
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
}

impl Stat {
    /// Number of counters.
    pub(crate) const COUNT: usize = 13;
}

/// vpm's state in one network namespace.
pub(crate) struct NetState {
    counters: PerCpuCounters<{ Stat::COUNT }>,
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
        let views = Arc::new(
            Views {
                fwd: PortMap::new()?,
                rev: PortMap::new()?,
                flows: RcuCell::new(),
            },
            GFP_KERNEL_ACCOUNT,
        )?;
        let table = Table::new(views.clone(), net)?;
        Ok(Self {
            counters: PerCpuCounters::new()?,
            hooks: AtomicU32::new(0),
            views,
            table: KBox::pin_init(new_mutex!(table, "vpm_table"), GFP_KERNEL_ACCOUNT)?,
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
        self.views.flows.get(&guard).map_or(0, |f| f.live(now) as u64)
    }
}
