// SPDX-License-Identifier: GPL-2.0

//! Small kernel services: the clock, the random number generator and
//! cgroup v2 lookups.

use core::ffi::c_int;

use kernel::bindings;
use kernel::prelude::*;

use super::ffi;

/// The id and depth (0 for the root) of the cgroup v2 at `path`,
/// relative to the caller's cgroup namespace root.  Process context.
pub(crate) fn cgroup_id(path: &CStr) -> Result<(u64, u16)> {
    let mut level: c_int = 0;
    // SAFETY: `path` is NUL-terminated and outlives the call; `level` is
    // a valid out-pointer.
    let id = unsafe { ffi::vpm_cgroup_id(path.as_char_ptr(), &mut level) };
    if id < 0 {
        return Err(Error::from_errno(id as c_int));
    }
    Ok((id as u64, u16::try_from(level).map_err(|_| EINVAL)?))
}

/// Seconds since boot (wrapping), the flow table's clock.  Any context.
#[inline]
pub(crate) fn now_secs() -> u32 {
    // SAFETY: Reads the jiffies counter; no requirements.
    unsafe { ffi::vpm_now_secs() }
}

/// A random 64-bit value from the kernel's CSPRNG.  Any context.
pub(crate) fn random_u64() -> u64 {
    // SAFETY: No requirements.
    unsafe { bindings::get_random_u64() }
}
