// SPDX-License-Identifier: GPL-2.0

//! Generic netlink: the family's registration, a request being handled
//! ([`GenlInfo`]), its reply ([`Reply`]), events for the "events"
//! multicast group ([`Event`]), attribute writing ([`PutAttrs`]) and the
//! `do` entry points ([`genl_doit!`]).

use core::ffi::{c_int, c_void};
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use kernel::bindings;
use kernel::error::to_result;
use kernel::ffi::c_char;
use kernel::prelude::*;

use super::ffi;
use super::pernet::{Net, PernetState};

// ---- generic netlink -------------------------------------------------------

/// Registration of the `vpm` generic netlink family.
pub(crate) struct GenlFamily(());

impl GenlFamily {
    /// Registers the family; its operations become callable at once.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: The generated family is a static that outlives the
        // registration, which `drop` undoes.
        to_result(unsafe {
            bindings::genl_register_family(ptr::addr_of_mut!(ffi::vpm_nl_family))
        })?;
        Ok(Self(()))
    }
}

impl Drop for GenlFamily {
    fn drop(&mut self) {
        // SAFETY: Registered by `register`.  Unregistering waits for running
        // handlers to finish.
        unsafe { bindings::genl_unregister_family(ptr::addr_of_mut!(ffi::vpm_nl_family)) };
    }
}

/// A generic netlink request being handled.
///
/// # Invariants
///
/// `raw` is valid for `'a`, the duration of the handler call.
pub(crate) struct GenlInfo<'a> {
    raw: NonNull<bindings::genl_info>,
    _life: PhantomData<&'a bindings::genl_info>,
}

impl<'a> GenlInfo<'a> {
    /// The requester's network namespace, alive for the request.
    fn net(&self) -> Option<Net<'a>> {
        // SAFETY: `raw` is valid (type invariant).
        let net = NonNull::new(unsafe { ffi::vpm_genl_net(self.raw.as_ptr()) })?;
        // SAFETY: A request comes from a socket that holds a reference on
        // its namespace for `'a`; the family is registered only while the
        // pernet operations are (see `Net`).
        Some(unsafe { Net::from_raw(net) })
    }

    /// The per-namespace state `T` of the requester's namespace.
    pub(crate) fn state<T: PernetState>(&self) -> Result<&'a T> {
        self.net()
            .and_then(|net| T::pernet().state(net))
            .ok_or(ENODEV)
    }

    /// Registers (`on`) or unregisters vpm's hooks in the requester's
    /// namespace, whose state is a `T` ([`Pernet::set_hooks`](super::Pernet::set_hooks)).
    pub(crate) fn set_hooks<T: PernetState>(&self, on: bool) -> Result {
        let net = self.net().ok_or(ENODEV)?;
        T::pernet().set_hooks(net, on)
    }

    /// The payload of request attribute `ty`, if present.
    ///
    /// The netlink core has validated it against the operation's policy.
    pub(crate) fn attr(&self, ty: u32) -> Option<&'a [u8]> {
        let ty = u16::try_from(ty).ok()?;
        // SAFETY: `raw` is valid for `'a` (type invariant).
        let nla = unsafe { ffi::vpm_genl_attr(self.raw.as_ptr(), ty) };
        if nla.is_null() {
            return None;
        }
        let hdr = core::mem::size_of::<bindings::nlattr>();
        // SAFETY: A non-null attribute from the parsed request lies inside
        // the request message, which lives for `'a`, and its `nla_len`
        // (checked by the parser) covers header and payload.
        unsafe {
            let len = usize::from((*nla).nla_len).checked_sub(hdr)?;
            Some(core::slice::from_raw_parts(nla.cast::<u8>().add(hdr), len))
        }
    }

    /// Sets the extended-ack message.
    pub(crate) fn set_err(&self, msg: &'static CStr) {
        // SAFETY: `raw` is valid; `msg` is static, as the ack references it.
        unsafe { ffi::vpm_genl_set_err(self.raw.as_ptr(), msg.as_char_ptr(), false, 0) };
    }

    /// Sets the extended-ack message and names the missing attribute `ty`.
    pub(crate) fn set_err_missing(&self, msg: &'static CStr, ty: u32) {
        let ty = u16::try_from(ty).unwrap_or(0);
        // SAFETY: As in `set_err`.
        unsafe { ffi::vpm_genl_set_err(self.raw.as_ptr(), msg.as_char_ptr(), false, ty) };
    }

    /// Sets a formatted extended-ack message (truncated to the ack's buffer).
    pub(crate) fn set_err_fmt(&self, args: fmt::Arguments<'_>) {
        let mut buf = MsgBuf::new();
        let _ = fmt::Write::write_fmt(&mut buf, args);
        // SAFETY: `raw` is valid; `buf` is NUL-terminated and copied by the
        // glue into the ack's own buffer before this returns.
        unsafe { ffi::vpm_genl_set_err(self.raw.as_ptr(), buf.as_ptr(), true, 0) };
    }
}

/// A NUL-terminated message of at most `NETLINK_MAX_FMTMSG_LEN` bytes.
struct MsgBuf {
    buf: [u8; 80],
    len: usize,
}

impl MsgBuf {
    fn new() -> Self {
        Self {
            buf: [0; 80],
            len: 0,
        }
    }

    fn as_ptr(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }
}

impl fmt::Write for MsgBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep the last byte for the NUL; truncate silently.
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writing attributes into a netlink message under construction.
pub(crate) trait PutAttrs {
    /// The message's skb.
    fn skb(&self) -> *mut bindings::sk_buff;

    /// Appends attribute `attr` with payload `data`.
    fn put_raw(&mut self, attr: u32, data: &[u8]) -> Result {
        let attr = c_int::try_from(attr).map_err(|_| EINVAL)?;
        let len = c_int::try_from(data.len()).map_err(|_| EMSGSIZE)?;
        // SAFETY: Implementors guarantee `skb` is a message they may append
        // to; `data` is readable for `len` bytes and nla_put copies it.
        to_result(unsafe { bindings::nla_put(self.skb(), attr, len, data.as_ptr().cast()) })
    }

    /// Adds a `u16` attribute.
    fn put_u16(&mut self, attr: u32, val: u16) -> Result {
        self.put_raw(attr, &val.to_ne_bytes())
    }

    /// Adds a `u32` attribute.
    fn put_u32(&mut self, attr: u32, val: u32) -> Result {
        self.put_raw(attr, &val.to_ne_bytes())
    }

    /// Adds a `uint` attribute: 4 bytes when the value fits, else 8
    /// (the kernel's `nla_put_uint`).
    fn put_uint(&mut self, attr: u32, val: u64) -> Result {
        match u32::try_from(val) {
            Ok(small) => self.put_u32(attr, small),
            Err(_) => self.put_raw(attr, &val.to_ne_bytes()),
        }
    }

    /// Adds a NUL-terminated string attribute.
    fn put_str(&mut self, attr: u32, val: &CStr) -> Result {
        self.put_raw(attr, val.to_bytes_with_nul())
    }

    /// Adds a string attribute from bytes, appending the NUL.
    fn put_bytes_str(&mut self, attr: u32, val: &[u8]) -> Result {
        let attr = c_int::try_from(attr).map_err(|_| EINVAL)?;
        let len = c_int::try_from(val.len() + 1).map_err(|_| EMSGSIZE)?;
        // SAFETY: Implementors guarantee `skb` is a message they may append to.
        let nla = unsafe { bindings::nla_reserve(self.skb(), attr, len) };
        if nla.is_null() {
            return Err(EMSGSIZE);
        }
        // SAFETY: `nla_reserve` returned an attribute with `len` payload
        // bytes right after its (aligned) header; nothing else refers to them.
        unsafe {
            let data = nla.add(1).cast::<u8>();
            ptr::copy_nonoverlapping(val.as_ptr(), data, val.len());
            data.add(val.len()).write(0);
        }
        Ok(())
    }
}

/// A unicast reply to a [`GenlInfo`] under construction.
///
/// # Invariants
///
/// `skb` is an owned netlink message with a generic netlink header at
/// `hdr`; it is either sent (which consumes it) or freed on drop.
pub(crate) struct Reply<'a> {
    skb: NonNull<bindings::sk_buff>,
    hdr: NonNull<c_void>,
    info: &'a GenlInfo<'a>,
}

impl PutAttrs for Reply<'_> {
    fn skb(&self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }
}

impl<'a> Reply<'a> {
    /// Starts a reply with the request's command, sequence number and port.
    ///
    /// `payload` is the attributes' total size (netlink headers and
    /// padding included).  vpm sizes replies to fit: a default-size (8 KiB)
    /// message would cost a multi-page allocation per request, which is
    /// what made batches of thousands of requests slow.
    pub(crate) fn new(info: &'a GenlInfo<'a>, payload: usize) -> Result<Self> {
        // SAFETY: Allocation has no preconditions; GFP_KERNEL is fine in a
        // netlink handler (process context).
        let skb = unsafe { bindings::genlmsg_new(payload, bindings::GFP_KERNEL) };
        let skb = NonNull::new(skb).ok_or(ENOMEM)?;
        // SAFETY: `skb` is a fresh netlink message and `info` valid.
        let hdr = unsafe { ffi::vpm_genl_reply_header(skb.as_ptr(), info.raw.as_ptr()) };
        let Some(hdr) = NonNull::new(hdr) else {
            // SAFETY: We own `skb`.
            unsafe { bindings::nlmsg_free(skb.as_ptr()) };
            return Err(EMSGSIZE);
        };
        // INVARIANT: `skb` is owned and carries a header at `hdr`.
        Ok(Self { skb, hdr, info })
    }

    /// Finishes and sends the reply.
    pub(crate) fn send(self) -> Result {
        let me = core::mem::ManuallyDrop::new(self);
        // SAFETY: `skb` is owned with its header at `hdr`; genlmsg_reply
        // consumes the skb whatever it returns, so it is not freed again.
        unsafe {
            bindings::genlmsg_end(me.skb.as_ptr(), me.hdr.as_ptr());
            to_result(ffi::vpm_genl_reply_send(
                me.skb.as_ptr(),
                me.info.raw.as_ptr(),
            ))
        }
    }
}

impl Drop for Reply<'_> {
    fn drop(&mut self) {
        // SAFETY: An unsent reply still owns its skb.
        unsafe { bindings::nlmsg_free(self.skb.as_ptr()) };
    }
}

/// An event for the namespace's "events" multicast group, being built.
///
/// # Invariants
///
/// `skb` is an owned netlink message with a generic netlink header at
/// `hdr`, for namespace `net`, which outlives `'a`; it is either sent
/// (which consumes it) or freed on drop.
pub(crate) struct Event<'a> {
    net: NonNull<bindings::net>,
    skb: NonNull<bindings::sk_buff>,
    hdr: NonNull<c_void>,
    _life: PhantomData<&'a GenlInfo<'a>>,
}

impl PutAttrs for Event<'_> {
    fn skb(&self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }
}

impl<'a> Event<'a> {
    /// Starts event `cmd` in the requester's namespace; `None` when nobody
    /// listens (or memory is short: events are best effort).
    pub(crate) fn new(info: &'a GenlInfo<'a>, cmd: u32) -> Option<Self> {
        let cmd = u8::try_from(cmd).ok()?;
        // SAFETY: `info` is valid; its namespace is alive for the request.
        let net = NonNull::new(unsafe { ffi::vpm_genl_net(info.raw.as_ptr()) })?;
        let mut hdr = ptr::null_mut();
        // SAFETY: `net` is alive; `hdr` is a valid out-pointer.
        let skb = NonNull::new(unsafe { ffi::vpm_event_new(net.as_ptr(), cmd, &mut hdr) })?;
        // INVARIANT: `vpm_event_new` returned an owned skb with its header.
        Some(Self {
            net,
            skb,
            hdr: NonNull::new(hdr)?,
            _life: PhantomData,
        })
    }

    /// Sends the event to the group's listeners.
    pub(crate) fn send(self) {
        let me = core::mem::ManuallyDrop::new(self);
        // SAFETY: The skb is owned with its header at `hdr`; sending
        // consumes it, so it is not freed again.
        unsafe { ffi::vpm_event_send(me.net.as_ptr(), me.skb.as_ptr(), me.hdr.as_ptr()) };
    }
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        // SAFETY: An unsent event still owns its skb.
        unsafe { bindings::nlmsg_free(self.skb.as_ptr()) };
    }
}

/// Runs a netlink `do` handler with a safe view of its request.
///
/// # Safety
///
/// `info` must be the valid `genl_info` of the handler call in progress.
pub(crate) unsafe fn doit_entry(
    info: *mut bindings::genl_info,
    handler: fn(&GenlInfo<'_>) -> Result,
) -> c_int {
    let Some(raw) = NonNull::new(info) else {
        return EINVAL.to_errno();
    };
    // INVARIANT: Valid for the duration of this call, per the caller.
    let info = GenlInfo {
        raw,
        _life: PhantomData,
    };
    match handler(&info) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Defines the C entry point `$name` of a `do` operation declared by
/// `gen/vpm_nl_gen.h`, running the safe handler `$handler`.
macro_rules! genl_doit {
    ($name:ident => $handler:path) => {
        /// Generic netlink `do` entry point (see `uapi/vpm.yaml`).
        ///
        /// # Safety
        ///
        /// Called only by the generic netlink core with valid arguments.
        #[no_mangle]
        unsafe extern "C" fn $name(
            _skb: *mut ::kernel::bindings::sk_buff,
            info: *mut ::kernel::bindings::genl_info,
        ) -> ::core::ffi::c_int {
            // SAFETY: The netlink core passes the valid info of this call.
            unsafe { $crate::vpm_sys::genl::doit_entry(info, $handler) }
        }
    };
}
pub(crate) use genl_doit;
