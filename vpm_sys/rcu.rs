// SPDX-License-Identifier: GPL-2.0

//! RCU-published values: how the control plane hands the packet path an
//! immutable view it can read without a lock.
//!
//! Part of vpm's unsafe floor (`vpm_sys/`).  Kernel 7.3's Rust
//! has RCU read-side guards but no RCU pointer type, so this file provides
//! the two vpm needs:
//!
//! - [`RcuCell`]: one replaceable pointer.  Readers load it under an
//!   [`rcu::Guard`] and get a reference that lives as long as the guard;
//!   a writer first stages the new value (the only step that allocates,
//!   so it can fail before anything changed), then commits it: the swap
//!   hands the old value to `call_rcu`, which frees it after every reader
//!   that could have seen it is done.
//!   Writers never wait for a grace period, so a batch of ten thousand
//!   updates costs ten thousand `call_rcu`s, not ten thousand grace periods.
//! - [`PortMap`]: 65,536 such cells indexed by port, in pages of 256
//!   allocated on first use.  A lookup is two dependent loads whatever the
//!   number of entries.
//!
//! Values are freed from RCU callbacks, which run in softirq context:
//! a `T` must be safe to drop there (vpm's views hold `KVec`s and `Arc`s of
//! per-CPU counters; `kfree` and `free_percpu` are both atomic-safe).
//! Module unload waits for pending callbacks with `rcu_barrier()` (see
//! `Registration` in `pernet.rs`).

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::alloc::AllocError;
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::rcu;

/// A value and the RCU head that frees it.
///
/// `head` is the first field of a `repr(C)` struct, so a pointer to the
/// head is a pointer to the node.
#[repr(C)]
struct RcuNode<T> {
    head: bindings::callback_head,
    val: T,
}

/// `call_rcu` callback: frees a node retired by `RcuCell::swap`.
///
/// # Safety
///
/// `head` is the head of an `RcuNode<T>` that came from `KBox::into_raw`,
/// no longer reachable by new readers, and passed to `call_rcu` once.
unsafe extern "C" fn free_node<T>(head: *mut bindings::callback_head) {
    // SAFETY: Per the function's contract, `head` is the first field of a
    // boxed `RcuNode<T>` that nobody can reach any more: the grace period
    // that `call_rcu` waited for ended every reader that loaded it.
    drop(unsafe { KBox::from_raw(head.cast::<RcuNode<T>>()) });
}

/// A pointer to a `T` that readers load under RCU and writers replace.
///
/// # Invariants
///
/// `ptr` is null or comes from `KBox::<RcuNode<T>>::into_raw`.  A node
/// stays allocated for as long as `ptr` points to it, plus one RCU grace
/// period after it was swapped out.
pub(crate) struct RcuCell<T> {
    ptr: AtomicPtr<RcuNode<T>>,
}

// SAFETY: The cell owns its `T`s: sending the cell sends them.
unsafe impl<T: Send> Send for RcuCell<T> {}
// SAFETY: Readers share `&T` across CPUs (needs `T: Sync`); writers on any
// CPU may drop a `T` another CPU created (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for RcuCell<T> {}

impl<T: Send + Sync> RcuCell<T> {
    /// An empty cell.
    pub(crate) const fn new() -> Self {
        // INVARIANT: null.
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The current value, valid for as long as the read-side lock is held.
    #[inline]
    pub(crate) fn get<'a>(&'a self, _guard: &'a rcu::Guard) -> Option<&'a T> {
        // Acquire pairs with the Release in `swap`: the value's
        // contents are visible before its address is (rcu_dereference).
        let node = self.ptr.load(Ordering::Acquire);
        // SAFETY: A non-null pointer is a live node (type invariant); it
        // stays allocated until a grace period after it is swapped out, and
        // `_guard` holds off the end of that grace period for `'a`.
        unsafe { node.as_ref() }.map(|n| &n.val)
    }

    /// Prepares `val` for publication: the allocation happens here, so
    /// that [`Staged::commit`] cannot fail.  Process context.
    pub(crate) fn stage(&self, val: T) -> Result<Staged<'_, T>, AllocError> {
        let node = KBox::new(
            RcuNode {
                head: bindings::callback_head::default(),
                val,
            },
            GFP_KERNEL_ACCOUNT,
        )?;
        Ok(Staged { cell: self, node })
    }

    /// Empties the cell; the previous value is freed after a grace period.
    pub(crate) fn clear(&self) {
        self.swap(ptr::null_mut());
    }

    /// Installs `new` (null or a boxed node) and retires the old node.
    fn swap(&self, new: *mut RcuNode<T>) {
        // INVARIANT: `new` is null or a boxed node.  AcqRel: Release
        // publishes the node's contents (rcu_assign_pointer); Acquire
        // orders our use of the old node after its publication.
        let old = self.ptr.swap(new, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: `old` was the cell's boxed node and is now unreachable
            // for new readers; the swap gave it to us alone, so it is queued
            // exactly once.  Its head is its first field.
            unsafe { bindings::call_rcu(ptr::addr_of_mut!((*old).head), Some(free_node::<T>)) };
        }
    }
}

/// A value allocated for an [`RcuCell`] but not yet visible to readers.
///
/// Dropping it instead of committing discards the value.
pub(crate) struct Staged<'a, T: Send + Sync> {
    cell: &'a RcuCell<T>,
    node: KBox<RcuNode<T>>,
}

impl<T: Send + Sync> Staged<'_, T> {
    /// Makes the value visible to readers; the cell's previous value is
    /// freed after a grace period.  Cannot fail.
    pub(crate) fn commit(self) {
        self.cell.swap(KBox::into_raw(self.node));
    }
}

impl<T> Drop for RcuCell<T> {
    fn drop(&mut self) {
        let node = *self.ptr.get_mut();
        if !node.is_null() {
            // SAFETY: The cell is being dropped, so it is unreachable;
            // its owners (see `PortMap`) drop it only once no reader can be
            // inside an RCU section that loaded it.  `node` came from
            // `KBox::into_raw` (type invariant).
            drop(unsafe { KBox::from_raw(node) });
        }
    }
}

/// Cells per page of a [`PortMap`].
const PAGE: usize = 256;

/// One page of a [`PortMap`].
struct Page<T> {
    cells: [RcuCell<T>; PAGE],
}

/// A `T` per port, read under RCU, published by the control plane.
///
/// Dropping the map frees everything at once: its owner must make sure
/// no reader is left (vpm drops it in the namespace's exit, after the hooks
/// were unregistered and a grace period passed).
///
/// # Invariants
///
/// Each `pages` entry is null or comes from `KBox::<Page<T>>::into_raw`;
/// once set it is never changed or freed before the map is dropped.
pub(crate) struct PortMap<T> {
    pages: [AtomicPtr<Page<T>>; 65536 / PAGE],
}

// SAFETY: As for `RcuCell`: the map owns its pages and values.
unsafe impl<T: Send> Send for PortMap<T> {}
// SAFETY: As for `RcuCell`.
unsafe impl<T: Send + Sync> Sync for PortMap<T> {}

impl<T: Send + Sync> PortMap<T> {
    /// An empty map (2 KiB; pages come later).
    pub(crate) fn new() -> Result<KBox<Self>, AllocError> {
        // INVARIANT: all pages null.
        KBox::new(
            Self {
                pages: [const { AtomicPtr::new(ptr::null_mut()) }; 65536 / PAGE],
            },
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// The value of `port`, valid while the read-side lock is held.
    #[inline]
    pub(crate) fn get<'a>(&'a self, port: u16, guard: &'a rcu::Guard) -> Option<&'a T> {
        let page = self.pages[usize::from(port) / PAGE].load(Ordering::Acquire);
        // SAFETY: A non-null page is live until the map is dropped (type
        // invariant), which `&'a self` rules out for `'a`.
        let page = unsafe { page.as_ref() }?;
        page.cells[usize::from(port) % PAGE].get(guard)
    }

    /// Prepares `val` as the value of `port` (see [`RcuCell::stage`]).
    pub(crate) fn stage(&self, port: u16, val: T) -> Result<Staged<'_, T>, AllocError> {
        let slot = &self.pages[usize::from(port) / PAGE];
        let mut page = slot.load(Ordering::Acquire);
        if page.is_null() {
            let fresh = KBox::into_raw(KBox::new(
                Page {
                    cells: [const { RcuCell::new() }; PAGE],
                },
                GFP_KERNEL_ACCOUNT,
            )?);
            // INVARIANT: a page is only ever installed over null.
            page = match slot.compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => fresh,
                Err(winner) => {
                    // SAFETY: `fresh` was never published.
                    drop(unsafe { KBox::from_raw(fresh) });
                    winner
                }
            };
        }
        // SAFETY: `page` is non-null and live until the map is dropped,
        // which the borrow of `self` in the result rules out.
        unsafe { &*page }.cells[usize::from(port) % PAGE].stage(val)
    }

    /// Removes the value of `port`, if any.  Cannot fail.
    pub(crate) fn clear(&self, port: u16) {
        let page = self.pages[usize::from(port) / PAGE].load(Ordering::Acquire);
        // SAFETY: A non-null page is live until the map is dropped.
        if let Some(page) = unsafe { page.as_ref() } {
            page.cells[usize::from(port) % PAGE].clear();
        }
    }
}

impl<T> Drop for PortMap<T> {
    fn drop(&mut self) {
        for slot in &mut self.pages {
            let page = *slot.get_mut();
            if !page.is_null() {
                // SAFETY: Installed from `KBox::into_raw` and never freed
                // before now (type invariant); no reader is left (see the
                // type's documentation).
                drop(unsafe { KBox::from_raw(page) });
            }
        }
    }
}
