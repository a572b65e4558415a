// SPDX-License-Identifier: GPL-2.0

//! The control plane's table of one network namespace: allocations,
//! source rules, the port allocator and the reserved-port record.
//!
//! The table lives behind the namespace's mutex (`vpm_state.rs`) and owns
//! the one writer of the packet path's views (`vpm_views.rs`).  Every
//! change builds the new views first (the only step that allocates), then
//! changes the table and publishes the views, so a failed request leaves
//! both exactly as they were.

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::rcu;

use crate::vpm_alloc::{AllocError, PortAllocator, WORDS};
use crate::vpm_counters::{CounterPages, EntryCounters};
use crate::vpm_error::TableError;
use crate::vpm_flow::{FlowTable, Slot};
use crate::vpm_keys::{Aid, Key, RuleKey};
use crate::vpm_rules::{Match, Peer, PEERS_PER_MAPPING};
use crate::vpm_sys::{random_u64, NetRef};
use crate::vpm_views::{PortView, RevView, Target, ViewWriter};

/// The range and limit a new namespace starts with: the module
/// parameters (`vpm_mod.rs`), whose defaults are 20000-29999, below the
/// default ephemeral range (32768-60999) so that the kernel never hands
/// these ports to `connect()`, and 65535.
#[derive(Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) range: (u16, u16),
    pub(crate) max_entries: u32,
}

impl Defaults {
    /// Whether `set-config` would accept these (the range 1-65535 with
    /// its first port not after its last, a limit of at least 1).
    pub(crate) fn valid(&self) -> bool {
        self.range.0 != 0 && self.range.0 <= self.range.1 && self.max_entries >= 1
    }
}

/// Slots of a namespace's flow table (`vpm_flow.rs`): 8,192 pinned flows,
/// 128 KiB, allocated with the namespace's first allocation.
pub(crate) const FLOW_SLOTS: usize = 8192;
/// Most source rules on one fixed port: bounds the packet path's scan.
pub(crate) const RULES_PER_PORT: u32 = 256;

/// Both protocols.
pub(crate) const PROTO_ALL: u32 =
    crate::vpm_uapi::vpm_proto_VPM_PROTO_TCP | crate::vpm_uapi::vpm_proto_VPM_PROTO_UDP;

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
    /// Cooperative peers: replies to them keep the anonymous port, which
    /// their agent negotiated (at most `PEERS_PER_MAPPING`).
    pub(crate) peers: KVec<Peer>,
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
        cur = c
            .peek_next()
            .and_then(|(next, _)| tree.cursor_lower_bound(next));
    }
    Ok(())
}

/// Allocates a tree node, for an insertion that then cannot fail.
fn new_node<K, V>() -> Result<RBTreeNodeReservation<K, V>, TableError> {
    // Its only error is a failed allocation.
    RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT).map_err(|_| TableError::NoMemory)
}

/// The control plane's view of a namespace's allocations and rules.
///
/// Every change builds the packet path's new views first (the only step
/// that allocates), then changes the table and publishes the views, so a
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
    /// The one writer of the packet path's views.
    views: ViewWriter,
    net: NetRef,
    /// Ports vpm set in `ip_local_reserved_ports` (and must clear again).
    reserved: KVec<u64>,
    /// Id of the next allocation (48 bits: at a million allocations a
    /// second it would wrap after nine years).
    next_id: u64,
    /// Counter pages, by anonymous port / 256.
    counter_pages: CounterPages,
    /// Whether the flow table is published.
    flows: bool,
}

impl Table {
    /// An empty table with the given range and limit.
    pub(crate) fn new(views: ViewWriter, net: NetRef, defaults: Defaults) -> Result<Self> {
        let bits = KVec::from_elem(0u64, WORDS, GFP_KERNEL_ACCOUNT)?;
        let (lo, hi) = defaults.range;
        let alloc = PortAllocator::new(bits, lo, hi).map_err(|_| EINVAL)?;
        Ok(Self {
            alloc,
            map: RBTree::new(),
            rules: RBTree::new(),
            entries: 0,
            rule_count: 0,
            max_entries: defaults.max_entries,
            generation: 1,
            views,
            net,
            reserved: KVec::from_elem(0u64, WORDS, GFP_KERNEL_ACCOUNT)?,
            next_id: 1,
            flows: false,
            counter_pages: CounterPages::new()?,
        })
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
        let table =
            FlowTable::new(slots, [random_u64(), random_u64()]).ok_or(TableError::NoMemory)?;
        self.views.publish_flows(table)?;
        self.flows = true;
        Ok(())
    }

    fn changed(&mut self) {
        // Never 0: the netlink core takes a dump sequence of 0 for "unset".
        self.generation = self.generation.wrapping_add(1).max(1);
        self.views.set_active(self.entries > 0);
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
        Ok(Some(PortView::new(rules, cgroups, default)))
    }

    /// Publishes the view of fixed port `port` as the table stands,
    /// leaving out `without`'s allocation; removes it when no allocation
    /// of the port is left.  Nothing changes on error.
    fn publish_port(&mut self, port: u16, without: Option<&Aid>) -> Result<(), TableError> {
        let view = self.port_view(port, without)?;
        Ok(self.views.publish(Some((port, view)), None)?)
    }

    /// The reply view of `key`'s allocation.
    fn rev_view(&self, key: &Key) -> Result<(u16, RevView), TableError> {
        let m = self.map.get(key).ok_or(TableError::NotFound)?;
        let mut peers = KVec::with_capacity(m.peers.len(), GFP_KERNEL_ACCOUNT)?;
        peers.extend_from_slice(&m.peers, GFP_KERNEL_ACCOUNT)?;
        let rev = RevView {
            fixed: key.port,
            protos: m.protos,
            counters: m.counters.clone(),
            id: m.id,
            peers,
        };
        Ok((m.anon, rev))
    }

    /// Whether rules of `key.port` point to `key.aid`.
    fn has_rules(&self, key: &Key) -> bool {
        let mut found = false;
        let _ = for_each_from(
            &self.rules,
            &RuleKey {
                port: key.port,
                m: Match::ANY,
            },
            |k, aid| {
                found = k.port == key.port && *aid == key.aid;
                Ok::<_, ()>(k.port == key.port && !found)
            },
        );
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
        self.views.views().fwd(port, &guard).is_some()
    }

    /// Publishes the views of `key`'s allocation and, if `fwd`, of its
    /// fixed port; nothing changes on error.
    ///
    /// A port's view only lists allocations that rules or cgroups steer
    /// to, so an allocation without either changes it only by creating
    /// or removing the port: skipping the rebuild otherwise keeps adding
    /// the 10,000th AID of a port as cheap as adding the first.
    fn publish(&mut self, key: &Key, fwd: bool) -> Result<(), TableError> {
        let fwd = match fwd {
            true => self
                .port_view(key.port, None)?
                .map(|view| (key.port, Some(view))),
            false => None,
        };
        let rev = self.rev_view(key)?;
        Ok(self.views.publish(fwd, Some(rev))?)
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
        if self.map.get(&key).is_some() {
            return self.update(&key, protos, want, cgroup);
        }
        self.create(key, protos, want, cgroup)?;
        Ok(true)
    }

    /// [`Table::add`] for an existing allocation: widens its protocols
    /// and replaces its cgroup; returns whether anything changed.
    fn update(
        &mut self,
        key: &Key,
        protos: u32,
        want: Option<u16>,
        cgroup: &mut Option<Cgroup>,
    ) -> Result<bool, TableError> {
        let has_rules = self.has_rules(key);
        let m = self.map.get_mut(key).ok_or(TableError::NotFound)?;
        let steered = has_rules || m.cgroup.is_some() || cgroup.is_some();
        if want.is_some_and(|w| w != m.anon) {
            return Err(TableError::OtherAnonPort { anon: m.anon });
        }
        let old_protos = m.protos;
        m.protos |= protos;
        let mut changed = m.protos != old_protos;
        let same = |c: &Cgroup| {
            m.cgroup
                .as_ref()
                .is_some_and(|o| o.id == c.id && o.path[..] == c.path[..])
        };
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
        if let Err(e) = self.publish(key, steered) {
            // Put things back: the views still show the old state.
            if let Some(m) = self.map.get_mut(key) {
                m.protos = old_protos;
                if let Some(old) = old_cgroup {
                    m.cgroup = old;
                }
            }
            return Err(e);
        }
        self.changed();
        Ok(true)
    }

    /// [`Table::add`] for a new allocation.
    fn create(
        &mut self,
        key: Key,
        protos: u32,
        want: Option<u16>,
        cgroup: &mut Option<Cgroup>,
    ) -> Result<(), TableError> {
        if self.entries >= self.max_entries {
            return Err(TableError::TooManyEntries {
                max: self.max_entries,
            });
        }
        // Allocate everything first: nothing to undo if memory is short.
        self.ensure_flows()?;
        let slot = new_node()?;
        let anon = self.take_port(want)?;
        let counters = match self.counter_pages.for_port(anon) {
            Ok(c) => c,
            Err(e) => {
                self.release_port(anon);
                return Err(e.into());
            }
        };
        let steered = cgroup.is_some() || !self.port_published(key.port);
        let mapping = Mapping {
            anon,
            protos,
            cgroup: cgroup.take(),
            counters,
            peers: KVec::new(),
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
        Ok(())
    }

    /// Takes an anonymous port for a new allocation and reserves it in
    /// the namespace: `want`, or else the next free one no socket holds.
    fn take_port(&mut self, want: Option<u16>) -> Result<u16, TableError> {
        let (lo, hi) = self.alloc.range();
        let exhausted = |a: &PortAllocator<KVec<u64>>| TableError::RangeExhausted {
            in_use: a.in_use(),
            lo,
            hi,
        };
        match want {
            // Explicit: allowed even while a socket holds the port (restore
            // runs while the instances keep their sockets).
            Some(p) => {
                self.alloc.reserve(p).map_err(|e| match e {
                    AllocError::OutOfRange => TableError::PortOutOfRange { lo, hi },
                    AllocError::Taken => TableError::PortTaken,
                    _ => exhausted(&self.alloc),
                })?;
                self.reserve(p);
                Ok(p)
            }
            None => match self.alloc_unbound() {
                Ok(p) => Ok(p),
                Err(AllocError::Taken) => Err(TableError::RangeBound {
                    in_use: self.alloc.in_use(),
                    lo,
                    hi,
                }),
                Err(_) => Err(exhausted(&self.alloc)),
            },
        }
    }

    /// Allocates the next free port of the range that no TCP or UDP socket
    /// of the namespace is bound to: an instance told to bind a port some
    /// other program holds would fail.  Ports skipped go back to the
    /// allocator; after one full turn of the range, the range counts as
    /// exhausted.  Work is bounded by the range's size.  `Taken`: every
    /// free port is bound by a socket.
    ///
    /// The port is reserved before the bind tables are asked, so a port
    /// found unbound stays clear of later automatic binds.  That closes
    /// the window for UDP, whose autobind reads the reserved bit under the
    /// hash-slot lock this check takes; TCP's connect() and bind(0) read
    /// it before taking the bucket lock, which leaves a sub-microsecond
    /// window when the range overlaps the ephemeral one (README).
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
            self.publish_port(key.port, Some(&key.aid))?;
        }
        self.views.clear_rev(anon);
        self.remove_rules_of(key);
        let m = self.map.remove(key).ok_or(TableError::NotFound)?;
        self.release_port(m.anon);
        self.entries -= 1;
        self.changed();
        Ok(m)
    }

    /// Adds cooperative peer `peer` to `key`'s allocation; returns whether
    /// it was new.
    pub(crate) fn peer_add(&mut self, key: &Key, peer: Peer) -> Result<bool, TableError> {
        let m = self.map.get(key).ok_or(TableError::NotFound)?;
        if m.peers.contains(&peer) {
            return Ok(false);
        }
        if m.peers.len() >= PEERS_PER_MAPPING {
            return Err(TableError::TooManyPeers {
                max: PEERS_PER_MAPPING as u32,
            });
        }
        let mut peers = KVec::with_capacity(m.peers.len() + 1, GFP_KERNEL_ACCOUNT)?;
        peers.extend_from_slice(&m.peers, GFP_KERNEL_ACCOUNT)?;
        peers.push(peer, GFP_KERNEL_ACCOUNT)?;
        self.set_peers(key, peers)?;
        Ok(true)
    }

    /// Removes cooperative peer `peer` from `key`'s allocation.
    pub(crate) fn peer_del(&mut self, key: &Key, peer: Peer) -> Result<(), TableError> {
        let m = self.map.get(key).ok_or(TableError::NotFound)?;
        if !m.peers.contains(&peer) {
            return Err(TableError::PeerNotFound);
        }
        let mut peers = KVec::with_capacity(m.peers.len(), GFP_KERNEL_ACCOUNT)?;
        for p in m.peers.iter().filter(|p| **p != peer) {
            peers.push(*p, GFP_KERNEL_ACCOUNT)?;
        }
        self.set_peers(key, peers)
    }

    /// Gives `key`'s allocation the peers `peers`: its reply view first
    /// (the step that can fail), then the table.
    fn set_peers(&mut self, key: &Key, peers: KVec<Peer>) -> Result<(), TableError> {
        let m = self.map.get(key).ok_or(TableError::NotFound)?;
        let mut copy = KVec::with_capacity(peers.len(), GFP_KERNEL_ACCOUNT)?;
        copy.extend_from_slice(&peers, GFP_KERNEL_ACCOUNT)?;
        let rev = RevView {
            fixed: key.port,
            protos: m.protos,
            counters: m.counters.clone(),
            id: m.id,
            peers: copy,
        };
        self.views.publish(None, Some((m.anon, rev)))?;
        if let Some(m) = self.map.get_mut(key) {
            m.peers = peers;
        }
        self.changed();
        Ok(())
    }

    /// The rules of `key.port` that point to `key.aid` (which [`Table::del`]
    /// removes with the allocation), in key order.
    pub(crate) fn rules_of(&self, key: &Key) -> Result<KVec<RuleKey>, TableError> {
        let mut out = KVec::new();
        for_each_from(
            &self.rules,
            &RuleKey {
                port: key.port,
                m: Match::ANY,
            },
            |rk, aid| {
                if rk.port != key.port {
                    return Ok(false);
                }
                if *aid == key.aid {
                    out.push(*rk, GFP_KERNEL_ACCOUNT)?;
                }
                Ok::<_, TableError>(true)
            },
        )?;
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
            self.views.clear_fwd(key.port);
            self.views.clear_rev(m.anon);
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
        for_each_from(
            &self.rules,
            &RuleKey {
                port: rk.port,
                m: Match::ANY,
            },
            |k, _| {
                if k.port != rk.port {
                    return Ok(false);
                }
                on_port += 1;
                Ok::<_, TableError>(on_port < RULES_PER_PORT)
            },
        )?;
        if on_port >= RULES_PER_PORT {
            return Err(TableError::PortFullOfRules);
        }
        let slot = new_node()?;
        self.rules.insert(slot.into_node(rk, aid));
        // The rule's allocation exists, so the port keeps a view.
        if let Err(e) = self.publish_port(rk.port, None) {
            self.rules.remove(&rk);
            return Err(e);
        }
        self.rule_count += 1;
        self.changed();
        Ok(())
    }

    /// Removes the rule `rk`; returns the AID it pointed to.
    pub(crate) fn rule_del(&mut self, rk: &RuleKey) -> Result<Aid, TableError> {
        // Reserve first, so that a failed publish can put the rule back.
        let slot = new_node()?;
        let aid = self.rules.remove(rk).ok_or(TableError::RuleNotFound)?;
        if let Err(e) = self.publish_port(rk.port, None) {
            self.rules.insert(slot.into_node(*rk, aid));
            return Err(e);
        }
        self.rule_count -= 1;
        self.changed();
        Ok(aid)
    }

    /// Visits allocations in key order, starting after `after` (or at the
    /// first), until `f` returns false.
    pub(crate) fn visit_from(
        &self,
        after: Option<&Key>,
        mut f: impl FnMut(&Key, &Mapping) -> bool,
    ) {
        let from = after.copied().unwrap_or(Key::first_of(0));
        let _ = for_each_from(&self.map, &from, |k, m| {
            Ok::<_, ()>(after == Some(k) || f(k, m))
        });
    }

    /// Visits rules in key order, starting after `after` (or at the
    /// first), until `f` returns false.
    pub(crate) fn visit_rules_from(
        &self,
        after: Option<&RuleKey>,
        mut f: impl FnMut(&RuleKey, &Aid) -> bool,
    ) {
        let from = after.copied().unwrap_or(RuleKey {
            port: 0,
            m: Match::ANY,
        });
        let _ = for_each_from(&self.rules, &from, |k, aid| {
            Ok::<_, ()>(after == Some(k) || f(k, aid))
        });
    }

    /// Whether the namespace has no allocation (and so no rule either): a
    /// table the packet path has nothing to do for.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0 && self.rule_count == 0
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
