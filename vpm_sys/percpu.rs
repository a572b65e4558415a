// SPDX-License-Identifier: GPL-2.0

//! Per-CPU counters: `N` u64 counters per CPU, incremented from the packet
//! path without contention and summed by the control plane.

use core::ffi::c_uint;
use core::ptr::NonNull;

use kernel::alloc::AllocError;

use super::ffi;

/// `N` u64 counters, one set per CPU, incremented without contention.
///
/// # Invariants
///
/// `ptr` is a live per-CPU allocation of `N` u64 from `vpm_pcpu_alloc`,
/// freed only by `drop`.
pub(crate) struct PerCpuCounters<const N: usize> {
    ptr: NonNull<u64>,
}

// SAFETY: Per-CPU additions and the summing reads are safe from any context
// on any CPU; the allocation is not tied to a thread.
unsafe impl<const N: usize> Send for PerCpuCounters<N> {}
// SAFETY: As above: `&self` methods are all safe concurrently.
unsafe impl<const N: usize> Sync for PerCpuCounters<N> {}

impl<const N: usize> PerCpuCounters<N> {
    /// Allocates zeroed counters, charged to the caller's memory cgroup.
    pub(crate) fn new() -> Result<Self, AllocError> {
        const { assert!(N <= c_uint::MAX as usize) };
        // SAFETY: Any count is a valid request.
        let ptr = NonNull::new(unsafe { ffi::vpm_pcpu_alloc(N as c_uint) }).ok_or(AllocError)?;
        // INVARIANT: Freshly allocated with room for `N` counters.
        Ok(Self { ptr })
    }

    /// Adds `val` to counter `idx` on the current CPU; out-of-range is ignored.
    #[inline]
    pub(crate) fn add(&self, idx: usize, val: u64) {
        if idx < N {
            // SAFETY: `ptr` is live with `N` counters and `idx < N`.
            unsafe { ffi::vpm_pcpu_add(self.ptr.as_ptr(), idx as c_uint, val) };
        }
    }

    /// Adds `v` to counter `i` and `w` to counter `j` on the current CPU,
    /// in one call; out-of-range is ignored.
    #[inline]
    pub(crate) fn add2(&self, i: usize, v: u64, j: usize, w: u64) {
        if i < N && j < N {
            // SAFETY: `ptr` is live with `N` counters and `i, j < N`.
            unsafe { ffi::vpm_pcpu_add2(self.ptr.as_ptr(), i as c_uint, v, j as c_uint, w) };
        }
    }

    /// Sums counter `idx` over all CPUs; out-of-range reads 0.
    pub(crate) fn sum(&self, idx: usize) -> u64 {
        if idx >= N {
            return 0;
        }
        // SAFETY: `ptr` is live with `N` counters and `idx < N`.
        unsafe { ffi::vpm_pcpu_sum(self.ptr.as_ptr(), idx as c_uint) }
    }

    /// Zeroes counter `idx` on every CPU (control plane); out-of-range is
    /// ignored.  Concurrent additions may survive or be lost.
    pub(crate) fn reset(&self, idx: usize) {
        if idx < N {
            // SAFETY: `ptr` is live with `N` counters and `idx < N`.
            unsafe { ffi::vpm_pcpu_reset(self.ptr.as_ptr(), idx as c_uint) }
        }
    }
}

impl<const N: usize> Drop for PerCpuCounters<N> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the allocation is live and this is
        // its only owner.
        unsafe { ffi::vpm_pcpu_free(self.ptr.as_ptr()) };
    }
}
