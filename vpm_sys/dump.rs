// SPDX-License-Identifier: GPL-2.0

//! Generic netlink dumps: one call of a dump in progress ([`Dump`]), its
//! resume state ([`DumpCursor`]), its messages ([`DumpMsg`]) and the
//! `dump` entry points ([`genl_dumpit!`]).

use core::ffi::{c_int, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::bindings;
use kernel::prelude::*;

use super::ffi;
use super::genl::PutAttrs;
use super::pernet::{Net, PernetState};

/// One call of a dump in progress.
///
/// # Invariants
///
/// `skb` and `cb` are the valid arguments of the current `dumpit` call.
pub(crate) struct Dump<'a> {
    skb: NonNull<bindings::sk_buff>,
    cb: NonNull<bindings::netlink_callback>,
    _life: PhantomData<&'a mut bindings::netlink_callback>,
}

impl<'a> Dump<'a> {
    /// The per-namespace state `T` of the dumping socket's namespace.
    pub(crate) fn state<T: PernetState>(&self) -> Result<&'a T> {
        // SAFETY: `cb` is valid (type invariant).
        let net = NonNull::new(unsafe { ffi::vpm_dump_net(self.cb.as_ptr()) }).ok_or(ENODEV)?;
        // SAFETY: The dumping socket holds a reference on its namespace
        // for the call; the family is registered only while the pernet
        // operations are (see `Net`).
        let net = unsafe { Net::from_raw(net) };
        T::pernet().state(net).ok_or(ENODEV)
    }

    /// Reads the dump's resume state, zeroed at the first call.
    pub(crate) fn cursor<T: DumpCursor>(&mut self) -> T {
        // SAFETY: `cb` is valid; the scratch area is at least
        // `size_of::<T>()` bytes (checked) and any bytes are a valid `T`.
        unsafe {
            assert!(core::mem::size_of::<T>() <= ffi::vpm_dump_ctx_size);
            ffi::vpm_dump_ctx(self.cb.as_ptr())
                .cast::<T>()
                .read_unaligned()
        }
    }

    /// Saves the resume state for the next call.
    pub(crate) fn set_cursor<T: DumpCursor>(&mut self, val: T) {
        // SAFETY: As in `cursor`.
        unsafe {
            assert!(core::mem::size_of::<T>() <= ffi::vpm_dump_ctx_size);
            ffi::vpm_dump_ctx(self.cb.as_ptr())
                .cast::<T>()
                .write_unaligned(val)
        }
    }

    /// Starts a message; `None` when the skb is full.  `generation` is the
    /// state the dump reflects: a change since the dump began sets
    /// `NLM_F_DUMP_INTR`.
    pub(crate) fn msg(&mut self, generation: u32) -> Option<DumpMsg<'_, 'a>> {
        // SAFETY: `skb` and `cb` are valid for this call.
        let hdr =
            unsafe { ffi::vpm_dump_msg_start(self.skb.as_ptr(), self.cb.as_ptr(), generation) };
        // INVARIANT: The header was just added to this call's skb.
        Some(DumpMsg {
            dump: self,
            hdr: NonNull::new(hdr)?,
        })
    }

    /// Bytes in the skb so far (the `dumpit` return value).
    pub(crate) fn len(&self) -> usize {
        // SAFETY: `skb` is valid.
        unsafe { ffi::vpm_skb_len(self.skb.as_ptr()) as usize }
    }
}

/// Plain data kept in a dump's scratch area between calls.
///
/// # Safety
///
/// Every bit pattern, all-zero included, must be a valid value.
pub(crate) unsafe trait DumpCursor: Copy {}

/// One message of a dump; cancelled unless [`DumpMsg::end`] is called.
///
/// # Invariants
///
/// `hdr` is the header of the last, unfinished message in the dump's skb.
pub(crate) struct DumpMsg<'d, 'a> {
    dump: &'d mut Dump<'a>,
    hdr: NonNull<c_void>,
}

impl PutAttrs for DumpMsg<'_, '_> {
    fn skb(&self) -> *mut bindings::sk_buff {
        self.dump.skb.as_ptr()
    }
}

impl DumpMsg<'_, '_> {
    /// Completes the message.
    pub(crate) fn end(self) {
        let me = core::mem::ManuallyDrop::new(self);
        // SAFETY: `hdr` heads the unfinished last message (type invariant).
        unsafe { ffi::vpm_dump_msg_end(me.dump.skb.as_ptr(), me.hdr.as_ptr()) };
    }
}

impl Drop for DumpMsg<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: `hdr` heads the unfinished last message; cancelling trims
        // the skb back to before it.
        unsafe { ffi::vpm_dump_msg_cancel(self.dump.skb.as_ptr(), self.hdr.as_ptr()) };
    }
}

impl Dump<'_> {
    /// Records the table generation this call reflects, so that a change
    /// since the previous call sets `NLM_F_DUMP_INTR` on the next message,
    /// `NLMSG_DONE` included.  Call it on every call.
    pub(crate) fn set_generation(&mut self, generation: u32) {
        // SAFETY: `cb` is valid for this call (type invariant).
        unsafe { ffi::vpm_dump_set_seq(self.cb.as_ptr(), generation) };
    }
}

/// Runs a netlink `dump` handler for one call of the dump.
///
/// # Safety
///
/// `skb` and `cb` must be the valid arguments of the `dumpit` call in
/// progress.
pub(crate) unsafe fn dumpit_entry(
    skb: *mut bindings::sk_buff,
    cb: *mut bindings::netlink_callback,
    handler: fn(&mut Dump<'_>) -> Result<usize>,
) -> c_int {
    let (Some(skb), Some(cb)) = (NonNull::new(skb), NonNull::new(cb)) else {
        return EINVAL.to_errno();
    };
    // INVARIANT: Valid for the duration of this call, per the caller.
    let mut dump = Dump {
        skb,
        cb,
        _life: PhantomData,
    };
    match handler(&mut dump) {
        Ok(len) => c_int::try_from(len).unwrap_or(c_int::MAX),
        Err(e) => e.to_errno(),
    }
}

/// Defines the C entry point `$name` of a `dump` operation declared by
/// `gen/vpm_nl_gen.h`, running the safe handler `$handler`, which returns
/// the length of the dump skb (0 ends the dump) or an error.
macro_rules! genl_dumpit {
    ($name:ident => $handler:path) => {
        /// Generic netlink `dump` entry point (see `uapi/vpm.yaml`).
        ///
        /// # Safety
        ///
        /// Called only by the generic netlink core with valid arguments.
        #[no_mangle]
        unsafe extern "C" fn $name(
            skb: *mut ::kernel::bindings::sk_buff,
            cb: *mut ::kernel::bindings::netlink_callback,
        ) -> ::core::ffi::c_int {
            // SAFETY: The netlink core passes the valid arguments of this call.
            unsafe { $crate::vpm_sys::dump::dumpit_entry(skb, cb, $handler) }
        }
    };
}
pub(crate) use genl_dumpit;
