// SPDX-License-Identifier: GPL-2.0

//! The netfilter hook entry: how the glue's hooks reach the packet path.
//!
//! `vpm_glue.c` registers the hooks (see `pernet.rs`) and calls one Rust
//! function, `vpm_rs_hook`, for every packet.  Its owner (`vpm_nf.rs`)
//! defines it with [`nf_hook!`], naming the per-namespace state type and
//! the safe handler; the unsafe part is [`hook_entry`].

use core::ffi::{c_uint, c_void};
use core::ptr::NonNull;

use kernel::bindings;

use super::skb::Skb;

/// The type the hooks' `priv` points to.
///
/// # Safety
///
/// Implement it only through [`nf_hook!`].  That macro defines the one
/// `vpm_rs_hook` symbol the glue calls, which takes `priv` for a `Self`;
/// a symbol is defined once per module, so at most one type implements
/// this trait, and the pernet operations (`Pernet<T>`, which require
/// `T: HookState`) register the hooks with `priv` pointing to their `T`.
pub(crate) unsafe trait HookState: Sync {}

/// A safe packet-path handler: the namespace's state, the packet, its
/// family (`NFPROTO_*`) and the hook number (`NF_INET_*`), returning the
/// verdict.
pub(crate) type Handler<T> = fn(&T, Skb<'_>, u8, u32) -> u32;

/// Runs `handler` for one hook call; accepts what it cannot wrap.
///
/// # Safety
///
/// Only for the `vpm_rs_hook` entry point, with the arguments `vpm_glue.c`
/// passes: `priv_` points to the `T` of the hook's namespace (see
/// [`HookState`]), which outlives the call (hooks are unregistered and a
/// grace period passes before it is freed); `skb` is the hook's packet,
/// `net` its namespace and `indev` its input (or output) device or null,
/// all valid for the call; `pf` is the hook's family.
#[inline(always)]
pub(crate) unsafe fn hook_entry<T: HookState>(
    priv_: *mut c_void,
    skb: *mut bindings::sk_buff,
    pf: u8,
    hooknum: c_uint,
    net: *mut bindings::net,
    indev: *const bindings::net_device,
    handler: Handler<T>,
) -> c_uint {
    // SAFETY: Per the function's contract `priv_` is a live `T`; hooks
    // only take shared references.
    let state = unsafe { &*priv_.cast::<T>() };
    let (Some(skb), Some(net)) = (NonNull::new(skb), NonNull::new(net)) else {
        return bindings::NF_ACCEPT;
    };
    // SAFETY: The arguments of the hook call in progress, per the contract.
    let Some(skb) = (unsafe { Skb::from_hook(skb, net, indev, pf) }) else {
        return bindings::NF_ACCEPT;
    };
    handler(state, skb, pf, hooknum)
}

/// Defines `vpm_rs_hook`, the netfilter entry point `vpm_glue.c` calls for
/// every packet, running the safe [`Handler`] `$handler` with the
/// namespace's `$state`.  Use it once, in the packet path's file.
macro_rules! nf_hook {
    ($state:ty => $handler:path) => {
        // SAFETY: `vpm_rs_hook` below is the glue's one hook entry point,
        // and it takes `priv` for a `$state`.
        unsafe impl $crate::vpm_sys::HookState for $state {}

        /// The netfilter entry point of every vpm hook (`vpm_glue.c`).
        ///
        /// # Safety
        ///
        /// Called only by the glue's hooks, with the arguments
        /// [`hook_entry`](crate::vpm_sys::nf::hook_entry) requires.
        #[no_mangle]
        unsafe extern "C" fn vpm_rs_hook(
            priv_: *mut ::core::ffi::c_void,
            skb: *mut ::kernel::bindings::sk_buff,
            pf: u8,
            hooknum: ::core::ffi::c_uint,
            net: *mut ::kernel::bindings::net,
            indev: *const ::kernel::bindings::net_device,
        ) -> ::core::ffi::c_uint {
            // SAFETY: netfilter calls the glue's hooks with these
            // arguments, and the pernet operations registered them with
            // `priv` pointing to the namespace's `$state`.
            unsafe {
                $crate::vpm_sys::nf::hook_entry::<$state>(
                    priv_, skb, pf, hooknum, net, indev, $handler,
                )
            }
        }
    };
}
pub(crate) use nf_hook;
