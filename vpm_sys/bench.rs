// SPDX-License-Identifier: GPL-2.0

//! The micro-benchmark's floor (`VPM_BENCH=1` builds only, see
//! `vpm_bench.rs`): the calling task's namespace, packet-like skbs the
//! hook can run on, a softirq-like section and a clock.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use kernel::bindings;
use kernel::prelude::*;

use super::ffi;
use super::pernet::Net;
use super::{PernetState, Skb};

/// The network namespace of the task running a debugfs write.
///
/// # Invariants
///
/// `net` is the calling task's namespace and lives for `'a`, the duration
/// of [`with_current_net`]'s callback: the task's nsproxy holds it, and
/// only the task itself (which is busy running the callback) could
/// switch namespaces.  vpm's pernet operations stay registered meanwhile:
/// the debugfs file whose write runs this is removed, waiting for running
/// writes, before they are unregistered (`vpm_mod.rs` drops it first).
pub(crate) struct CurrentNet<'a> {
    net: NonNull<bindings::net>,
    _life: PhantomData<&'a bindings::net>,
}

/// Runs `f` with the calling task's namespace.
///
/// Only for the debugfs write handler of the micro-benchmark, whose file
/// is removed before the pernet operations are unregistered.
pub(crate) fn with_current_net<R>(f: impl for<'a> FnOnce(&CurrentNet<'a>) -> R) -> Option<R> {
    // SAFETY: No requirements; a task in a syscall always has an nsproxy.
    let net = NonNull::new(unsafe { ffi::vpm_bench_current_net() })?;
    // INVARIANT: The calling task's namespace, for the callback's duration
    // (see the type's invariant for why it and the registration last).
    Some(f(&CurrentNet {
        net,
        _life: PhantomData,
    }))
}

impl<'a> CurrentNet<'a> {
    /// vpm's state `T` in the namespace.
    pub(crate) fn state<T: PernetState>(&self) -> Option<&'a T> {
        // SAFETY: `net` is live and the pernet operations registered for
        // `'a` (type invariant), which is `Net`'s invariant.
        T::pernet().state(unsafe { Net::from_raw(self.net) })
    }
}

/// A packet-like skb of the namespace the hook is run on, owned by the
/// benchmark: linear, not cloned, its network header at `data`.
///
/// # Invariants
///
/// `skb` is a live skb from `vpm_bench_skb_new` that only this value
/// owns (freed on drop), with at least `len` linear bytes from its network
/// header; `net` is live for `'a`; `pf` is `NFPROTO_IPV4` or `NFPROTO_IPV6`,
/// matching the bytes' family.
pub(crate) struct BenchSkb<'a> {
    skb: NonNull<bindings::sk_buff>,
    net: NonNull<bindings::net>,
    len: usize,
    pf: u8,
    _life: PhantomData<&'a bindings::net>,
}

impl<'a> BenchSkb<'a> {
    /// An skb of namespace `net` holding `bytes` (an IPv4 packet for
    /// `v6 == false`, IPv6 otherwise) from its network header on.
    pub(crate) fn new(net: &CurrentNet<'a>, bytes: &[u8], v6: bool) -> Result<Self> {
        let len = u32::try_from(bytes.len()).map_err(|_| EINVAL)?;
        let pf = if v6 {
            bindings::NFPROTO_IPV6
        } else {
            bindings::NFPROTO_IPV4
        } as u8;
        // SAFETY: `bytes` is valid for reading `len` bytes.
        let skb = unsafe { ffi::vpm_bench_skb_new(bytes.as_ptr(), len, pf) };
        let skb = NonNull::new(skb).ok_or(ENOMEM)?;
        // INVARIANT: A fresh skb holding the `len` bytes linearly from its
        // network header, owned here; `net` lives for `'a`.
        Ok(Self {
            skb,
            net: net.net,
            len: bytes.len(),
            pf,
            _life: PhantomData,
        })
    }

    /// The packet as a hook of its family sees it, with no device
    /// (`None` never happens: the network header is at data).
    pub(crate) fn hook_view(&mut self) -> Option<Skb<'_>> {
        // What `from_hook` needs holds: the skb is valid and, for the `&mut`
        // borrow the view keeps, only the view's (type invariant); the
        // namespace is live for the borrow; `pf` matches the packet.
        // SAFETY: As above; a null device is accepted by the view.
        unsafe { Skb::from_hook(self.skb, self.net, ptr::null(), self.pf) }
    }

    /// Writes `bytes` over the start of the packet (the hook rewrites
    /// ports and checksums in place: this undoes it).  Longer `bytes` than
    /// the packet are cut.
    pub(crate) fn restore(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.len);
        // SAFETY: The skb is live and ours (type invariant); its network
        // header is taken anew, since the hook's `skb_ensure_writable`
        // could have moved it.
        let nh = unsafe { ffi::vpm_bench_skb_nh(self.skb.as_ptr()) };
        // SAFETY: The skb is private (never cloned or shared) with `len`
        // linear bytes from `nh`, `n <= len`, and `bytes` is another
        // object, so the ranges are valid and disjoint.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), nh, n) };
    }
}

impl Drop for BenchSkb<'_> {
    fn drop(&mut self) {
        // SAFETY: The skb is live and only this value owns it (type
        // invariant); nothing borrows it once `drop` runs.
        unsafe { ffi::vpm_bench_skb_free(self.skb.as_ptr()) };
    }
}

/// Runs `f` with bottom halves disabled, as netfilter runs hooks on
/// received packets.  `f` must not sleep.
pub(crate) fn in_softirq_context<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: Paired with the enable below, in the same task.
    unsafe { ffi::vpm_bench_bh_disable() };
    let r = f();
    // SAFETY: Paired with the disable above.
    unsafe { ffi::vpm_bench_bh_enable() };
    r
}

/// The monotonic clock, in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: No requirements.
    unsafe { ffi::vpm_bench_ns() }
}
