// SPDX-License-Identifier: GPL-2.0

//! vpm's state in one network namespace: counters and the allocation table.
//!
//! One [`NetState`] lives in each namespace's `net_generic` slot (see
//! `vpm_sys.rs`), from the namespace's creation (or module load) to its
//! destruction (or module unload).  The packet path reaches it through the
//! hooks' `priv` pointer and only takes shared references, so everything
//! it touches here is per-CPU or atomic: no lock is shared with the control
//! plane.
//!
//! # Locking
//!
//! [`NetState::table`] is a mutex taken only by netlink handlers (process
//! context, may sleep).  It protects the allocator, the map of allocations
//! and the dump generation; the packet path never takes it.

use core::cmp::Ordering as CmpOrdering;
use core::sync::atomic::{AtomicU32, Ordering};

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::{new_condvar, new_mutex};
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{CondVar, Mutex};

use crate::vpm_alloc::{AllocError, PortAllocator, WORDS};
use crate::vpm_sys::PerCpuCounters;

/// Default anonymous port range: below the default ephemeral range
/// (32768-60999), so the kernel never hands these ports to `connect()`.
pub(crate) const DEFAULT_RANGE: (u16, u16) = (20000, 29999);
/// Default limit on allocations per namespace.
pub(crate) const DEFAULT_MAX_ENTRIES: u32 = 65535;
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
#[derive(Clone, Copy)]
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

/// One allocation.
#[derive(Clone, Copy)]
pub(crate) struct Mapping {
    /// The anonymous port.
    pub(crate) anon: u16,
    /// Protocols covered (`PROTO_*` bits).
    pub(crate) protos: u32,
}

/// Why a table operation failed; each maps to an errno and a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// No port free in the range (`in_use`, `lo`, `hi`).
    RangeExhausted { in_use: u32, lo: u16, hi: u16 },
    /// The namespace holds `max` allocations already.
    TooManyEntries { max: u32 },
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
    /// A limit below the current number of entries.
    LimitBelowUse { entries: u32 },
    /// Out of memory.
    NoMemory,
}

/// The control plane's view of a namespace's allocations.
pub(crate) struct Table {
    alloc: PortAllocator<KVec<u64>>,
    map: RBTree<Key, Mapping>,
    entries: u32,
    max_entries: u32,
    /// Bumped on every change; dumps compare it to detect a concurrent change.
    generation: u32,
}

impl Table {
    fn new() -> Result<Self> {
        let bits = KVec::from_elem(0u64, WORDS, GFP_KERNEL_ACCOUNT)?;
        let alloc =
            PortAllocator::new(bits, DEFAULT_RANGE.0, DEFAULT_RANGE.1).map_err(|_| EINVAL)?;
        Ok(Self {
            alloc,
            map: RBTree::new(),
            entries: 0,
            max_entries: DEFAULT_MAX_ENTRIES,
            generation: 1,
        })
    }

    /// Allocates (or returns the existing) anonymous port of `key`.
    ///
    /// `want` asks for exactly that port.  Returns the mapping and whether
    /// the table changed (created, or widened to more protocols).
    pub(crate) fn add(
        &mut self,
        key: Key,
        protos: u32,
        want: Option<u16>,
    ) -> Result<(Mapping, bool), TableError> {
        if let Some(m) = self.map.get_mut(&key) {
            if want.is_some_and(|w| w != m.anon) {
                return Err(TableError::OtherAnonPort { anon: m.anon });
            }
            let widened = m.protos | protos != m.protos;
            if widened {
                m.protos |= protos;
                self.generation = self.generation.wrapping_add(1);
            }
            return Ok((*m, widened));
        }
        if self.entries >= self.max_entries {
            return Err(TableError::TooManyEntries {
                max: self.max_entries,
            });
        }
        // Allocate the node first: nothing to undo if memory is short.
        let slot = RBTreeNodeReservation::new(GFP_KERNEL_ACCOUNT).map_err(|_| TableError::NoMemory)?;
        let (lo, hi) = self.alloc.range();
        let anon = match want {
            Some(p) => self.alloc.reserve(p).map(|()| p),
            None => self.alloc.alloc(),
        }
        .map_err(|e| match e {
            AllocError::OutOfRange => TableError::PortOutOfRange { lo, hi },
            AllocError::Taken => TableError::PortTaken,
            _ => TableError::RangeExhausted {
                in_use: self.alloc.in_use(),
                lo,
                hi,
            },
        })?;
        let mapping = Mapping { anon, protos };
        self.map.insert(slot.into_node(key, mapping));
        self.entries += 1;
        self.generation = self.generation.wrapping_add(1);
        Ok((mapping, true))
    }

    /// Releases the allocation of `key`.
    pub(crate) fn del(&mut self, key: &Key) -> Result<Mapping, TableError> {
        let m = self.map.remove(key).ok_or(TableError::NotFound)?;
        self.alloc.release(m.anon);
        self.entries -= 1;
        self.generation = self.generation.wrapping_add(1);
        Ok(m)
    }

    /// The allocation of `key`.
    pub(crate) fn get(&self, key: &Key) -> Option<Mapping> {
        self.map.get(key).copied()
    }

    /// Releases every allocation; returns how many there were.
    pub(crate) fn flush(&mut self) -> u32 {
        let n = self.entries;
        while let Some(c) = self.map.cursor_front_mut() {
            let (_, node) = c.remove_current();
            self.alloc.release(node.to_key_value().1.anon);
        }
        self.entries = 0;
        self.generation = self.generation.wrapping_add(1);
        n
    }

    /// Visits allocations in key order, starting after `after` (or at the
    /// first), until `f` returns false.
    pub(crate) fn visit_from(&mut self, after: Option<&Key>, mut f: impl FnMut(&Key, &Mapping) -> bool) {
        let mut cur = match after {
            Some(k) => self.map.cursor_lower_bound_mut(k),
            None => self.map.cursor_front_mut(),
        };
        while let Some(c) = cur {
            let (k, m) = c.current();
            if after != Some(k) && !f(k, m) {
                return;
            }
            cur = c.move_next();
        }
    }

    /// The range, limit and number of allocations.
    pub(crate) fn config(&self) -> (u16, u16, u32, u32) {
        let (lo, hi) = self.alloc.range();
        (lo, hi, self.max_entries, self.entries)
    }

    /// Changes the range and/or limit; nothing changes on error.
    pub(crate) fn set_config(
        &mut self,
        range: Option<(u16, u16)>,
        max_entries: Option<u32>,
    ) -> Result<(), TableError> {
        if let Some(max) = max_entries {
            if max < self.entries {
                return Err(TableError::LimitBelowUse {
                    entries: self.entries,
                });
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
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// The dump generation (see `NLM_F_DUMP_INTR`).
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }
}

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
    /// The allocations; control plane only.
    pub(crate) table: Pin<KBox<Mutex<Table>>>,
    /// Signalled whenever allocations are released or limits raised, for
    /// `add-mapping` requests waiting for room.
    pub(crate) freed: Pin<KBox<CondVar>>,
}

impl NetState {
    /// Creates the state of a new namespace (process context).
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            counters: PerCpuCounters::new()?,
            hooks: AtomicU32::new(0),
            table: KBox::pin_init(new_mutex!(Table::new()?, "vpm_table"), GFP_KERNEL_ACCOUNT)?,
            freed: KBox::pin_init(new_condvar!("vpm_freed"), GFP_KERNEL_ACCOUNT)?,
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
