// SPDX-License-Identifier: GPL-2.0

//! The thin unsafe layer between vpm's safe logic and the kernel.
//!
//! Everything that touches a raw kernel pointer lives here: the C entry
//! points (`vpm_rs_*`, the generated netlink handlers), the per-namespace
//! state slot, the netfilter hook registration, per-CPU counters and
//! netlink replies.  Each type states its invariants; the rest of vpm only
//! sees safe references.

use core::ffi::{c_int, c_uint, c_void};
use core::fmt;
use core::ptr::{self, NonNull};

use kernel::bindings;
use kernel::error::to_result;
use kernel::ffi::c_char;
use kernel::prelude::*;
use kernel::types::Opaque;

use crate::vpm_table::NetState;

/// The C glue (`vpm_glue.c`, `gen/vpm_nl_gen.c`); prototypes mirror `vpm_glue.h`.
mod ffi {
    use super::*;

    #[expect(
        improper_ctypes,
        reason = "kernel structs are only passed by pointer, never by value"
    )]
    extern "C" {
        pub(super) fn vpm_net_generic(net: *const bindings::net, id: c_uint) -> *mut c_void;

        pub(super) static vpm_hook_count: c_uint;
        pub(super) fn vpm_hooks_register(
            net: *mut bindings::net,
            priv_: *mut c_void,
            out: *mut *mut c_void,
        ) -> c_int;
        pub(super) fn vpm_hooks_unregister(net: *mut bindings::net, ops: *mut c_void);
        pub(super) fn vpm_hooks_free(ops: *mut c_void);

        pub(super) fn vpm_skb_nh_off(skb: *const bindings::sk_buff) -> c_int;
        pub(super) fn vpm_skb_ip_summed(skb: *const bindings::sk_buff) -> u8;
        pub(super) fn vpm_skb_writable(skb: *mut bindings::sk_buff, len: c_uint) -> *mut u8;
        pub(super) fn vpm_skb_dst_local(skb: *const bindings::sk_buff) -> bool;
        pub(super) fn vpm_addr_local(
            net: *mut bindings::net,
            dev: *const bindings::net_device,
            pf: u8,
            addr: *const u8,
        ) -> bool;
        pub(super) fn vpm_skb_received(skb: *const bindings::sk_buff, pf: u8) -> bool;
        pub(super) fn vpm_skb_sender(skb: *const bindings::sk_buff) -> u32;
        pub(super) fn vpm_skb_cgroup_ancestor(skb: *const bindings::sk_buff, level: c_int) -> u64;

        pub(super) fn vpm_cgroup_id(path: *const c_char, level: *mut c_int) -> i64;
        pub(super) fn vpm_now_secs() -> u32;

        pub(super) fn vpm_port_reserve(net: *mut bindings::net, port: u16) -> bool;
        pub(super) fn vpm_port_unreserve(net: *mut bindings::net, port: u16);

        pub(super) fn vpm_pcpu_alloc(n: c_uint) -> *mut u64;
        pub(super) fn vpm_pcpu_free(ctrs: *mut u64);
        pub(super) fn vpm_pcpu_add(ctrs: *mut u64, idx: c_uint, val: u64);
        pub(super) fn vpm_pcpu_sum(ctrs: *mut u64, idx: c_uint) -> u64;
        pub(super) fn vpm_pcpu_reset(ctrs: *mut u64, idx: c_uint);

        pub(super) fn vpm_genl_net(info: *const bindings::genl_info) -> *mut bindings::net;
        pub(super) fn vpm_genl_reply_header(
            skb: *mut bindings::sk_buff,
            info: *mut bindings::genl_info,
        ) -> *mut c_void;
        pub(super) fn vpm_genl_reply_send(
            skb: *mut bindings::sk_buff,
            info: *mut bindings::genl_info,
        ) -> c_int;

        pub(super) fn vpm_genl_set_err(
            info: *mut bindings::genl_info,
            msg: *const c_char,
            copy: bool,
            missing: u16,
        );
        pub(super) fn vpm_genl_attr(info: *const bindings::genl_info, ty: u16)
            -> *const bindings::nlattr;

        pub(super) fn vpm_dump_net(cb: *const bindings::netlink_callback) -> *mut bindings::net;
        pub(super) fn vpm_dump_ctx(cb: *mut bindings::netlink_callback) -> *mut c_void;
        pub(super) static vpm_dump_ctx_size: usize;
        pub(super) fn vpm_dump_msg_start(
            skb: *mut bindings::sk_buff,
            cb: *mut bindings::netlink_callback,
            gen: u32,
        ) -> *mut c_void;
        pub(super) fn vpm_dump_msg_end(skb: *mut bindings::sk_buff, hdr: *mut c_void);
        pub(super) fn vpm_dump_msg_cancel(skb: *mut bindings::sk_buff, hdr: *mut c_void);
        pub(super) fn vpm_skb_len(skb: *const bindings::sk_buff) -> c_uint;

        pub(super) fn vpm_event_new(
            net: *mut bindings::net,
            cmd: u8,
            hdr: *mut *mut c_void,
        ) -> *mut bindings::sk_buff;
        pub(super) fn vpm_event_send(
            net: *mut bindings::net,
            skb: *mut bindings::sk_buff,
            hdr: *mut c_void,
        );

        /// Defined by the ynl-generated `gen/vpm_nl_gen.c`.
        pub(super) static mut vpm_nl_family: bindings::genl_family;
    }
}

// ---- per-network-namespace state ------------------------------------------

/// What vpm keeps in each namespace's `net_generic` slot.
///
/// The packet path only ever gets `&NetState` (the hooks' `priv`); `hooks`
/// is touched by the namespace callbacks alone, which the namespace core
/// serialises, so it needs no lock.
struct PerNet {
    state: NetState,
    hooks: *mut c_void,
}

// The namespace core allocates the slot with kzalloc, which aligns to at
// least 8 bytes.
const _: () = assert!(core::mem::align_of::<PerNet>() <= 8);

/// The id of vpm's `net_generic` slot, assigned by the namespace core.
struct NetId(Opaque<c_uint>);

// SAFETY: Written once by `register_pernet_subsys` before any reader can
// exist (callbacks and the netlink family come after), read-only afterwards.
unsafe impl Sync for NetId {}

static NET_ID: NetId = NetId(Opaque::new(0));

/// vpm's `pernet_operations`.
struct PernetOps(Opaque<bindings::pernet_operations>);

// SAFETY: Only the namespace core touches the structure, under its own lock,
// between `register_pernet_subsys` and `unregister_pernet_subsys`.
unsafe impl Sync for PernetOps {}

/// The namespace core allocates `size` zeroed bytes per namespace and calls
/// `init`; on teardown it calls `pre_exit`, waits for an RCU grace period,
/// then calls `exit`.  vpm unregisters its hooks in `pre_exit` so that no
/// packet can still be inside a hook when `exit` frees what the hook uses.
static PERNET_OPS: PernetOps = PernetOps(Opaque::new(bindings::pernet_operations {
    init: Some(vpm_rs_net_init),
    pre_exit: Some(vpm_rs_net_pre_exit),
    exit: Some(vpm_rs_net_exit),
    id: NET_ID.0.get(),
    size: core::mem::size_of::<PerNet>(),
    ..pin_init::zeroed()
}));

/// Registration of vpm's per-namespace state and hooks.
///
/// While it exists every network namespace, present and future, has an
/// initialised [`PerNet`] in its slot and vpm's hooks registered.
pub(crate) struct Pernet(());

impl Pernet {
    /// Registers the per-namespace operations, initialising all existing namespaces.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: Called once from module init; the operations are static
        // and their callbacks are sound for any namespace the core hands them.
        to_result(unsafe { bindings::register_pernet_subsys(PERNET_OPS.0.get()) })?;
        Ok(Self(()))
    }
}

impl Drop for Pernet {
    fn drop(&mut self) {
        // SAFETY: `register` succeeded, so the operations are registered.
        // Unregistering runs pre_exit, an RCU grace period and exit for every
        // namespace, so no hook can run afterwards.
        unsafe { bindings::unregister_pernet_subsys(PERNET_OPS.0.get()) };
        // Views replaced by the control plane are freed by RCU callbacks
        // that live in this module's text: wait for all of them.
        kernel::sync::rcu::rcu_barrier();
    }
}

/// Returns the slot of `net`.
///
/// # Safety
///
/// `net` must be a live namespace and vpm's pernet operations registered.
unsafe fn slot(net: *const bindings::net) -> *mut PerNet {
    // SAFETY: The id was assigned at registration, which the caller
    // guarantees, and is not written again; `net` is live.
    unsafe { ffi::vpm_net_generic(net, *NET_ID.0.get()) }.cast::<PerNet>()
}

/// Initialises vpm in a new namespace.
///
/// # Safety
///
/// Called only by the namespace core, once per namespace, with a zeroed slot.
#[no_mangle]
unsafe extern "C" fn vpm_rs_net_init(net: *mut bindings::net) -> c_int {
    // SAFETY: The namespace core calls init with a live `net` after our
    // operations are registered.
    let slot = unsafe { slot(net) };
    // INVARIANT: the state (and the `NetRef` in it) is freed in exit,
    // while `net` is still live.
    let netref = NetRef {
        // SAFETY: The namespace core passes a valid, non-null namespace.
        net: unsafe { NonNull::new_unchecked(net) },
    };
    let state = match NetState::new(netref) {
        Ok(s) => s,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: The slot is valid, suitably aligned (checked above) and not
    // yet initialised; nothing else can see it before init returns.
    unsafe {
        slot.write(PerNet {
            state,
            hooks: ptr::null_mut(),
        })
    };
    let mut ops = ptr::null_mut();
    // SAFETY: `net` is live.  The hooks' `priv` is the state in the slot,
    // which stays in place until `vpm_rs_net_exit`, and exit runs only
    // after pre_exit unregistered the hooks and a grace period passed.
    let err = unsafe {
        ffi::vpm_hooks_register(net, ptr::addr_of_mut!((*slot).state).cast(), &mut ops)
    };
    if err != 0 {
        // SAFETY: The slot was initialised above and no hook references it.
        unsafe { ptr::drop_in_place(slot) };
        return err;
    }
    // SAFETY: Only the namespace callbacks touch `hooks`, and they are
    // serialised; packet-path readers only ever reference `state`.
    unsafe { ptr::addr_of_mut!((*slot).hooks).write(ops) };
    // SAFETY: As above; `state` is initialised.
    unsafe { (*slot).state.set_hooks(ffi::vpm_hook_count) };
    0
}

/// Unregisters vpm's hooks in a dying namespace.
///
/// # Safety
///
/// Called only by the namespace core, after a successful init.
#[no_mangle]
unsafe extern "C" fn vpm_rs_net_pre_exit(net: *mut bindings::net) {
    // SAFETY: init succeeded for this namespace, so the slot is initialised.
    let slot = unsafe { slot(net) };
    // SAFETY: `hooks` was set by init and is only read here.
    let ops = unsafe { (*slot).hooks };
    // SAFETY: The hooks were registered in `net` by init.
    unsafe { ffi::vpm_hooks_unregister(net, ops) };
    // SAFETY: The slot is initialised.
    unsafe { (*slot).state.set_hooks(0) };
}

/// Frees vpm's state of a dead namespace.
///
/// # Safety
///
/// Called only by the namespace core, after pre_exit and an RCU grace period.
#[no_mangle]
unsafe extern "C" fn vpm_rs_net_exit(net: *mut bindings::net) {
    // SAFETY: init succeeded, so the slot is initialised.
    let slot = unsafe { slot(net) };
    // SAFETY: pre_exit unregistered the hooks and a grace period has
    // passed, so no packet references the state or the ops any more.
    unsafe {
        ffi::vpm_hooks_free((*slot).hooks);
        ptr::drop_in_place(slot);
    }
}

/// A network namespace, for the control plane's side effects on it.
///
/// # Invariants
///
/// `net` is a live namespace for as long as the `NetRef` exists: vpm keeps
/// it only inside the namespace's own state, which is freed in the
/// namespace's exit (or module unload) while the namespace is still live.
pub(crate) struct NetRef {
    net: NonNull<bindings::net>,
}

// SAFETY: A namespace is not tied to a thread; the operations below are
// atomic bit operations, safe from any CPU.
unsafe impl Send for NetRef {}
// SAFETY: As above.
unsafe impl Sync for NetRef {}

impl NetRef {
    /// Reserves `port` in `net.ipv4.ip_local_reserved_ports`; true if it was
    /// not reserved before (so vpm must clear it again).
    pub(crate) fn reserve_port(&self, port: u16) -> bool {
        // SAFETY: `net` is live (type invariant).
        unsafe { ffi::vpm_port_reserve(self.net.as_ptr(), port) }
    }

    /// Clears a reservation made by [`NetRef::reserve_port`].
    pub(crate) fn unreserve_port(&self, port: u16) {
        // SAFETY: `net` is live (type invariant).
        unsafe { ffi::vpm_port_unreserve(self.net.as_ptr(), port) }
    }
}

// ---- netfilter -------------------------------------------------------------

/// A packet as handed to a netfilter hook, seen from its network header.
///
/// # Invariants
///
/// `skb` is valid and exclusively ours for the lifetime `'a` (the duration
/// of the hook call); `nh` is the offset of its network header from
/// `skb->data`; `net` is the hook's namespace and `dev` its input device
/// (its output device where it has no input device, or null), both valid
/// for `'a`; `pf` is the hook's
/// family (`NFPROTO_IPV4` or `NFPROTO_IPV6`).
pub(crate) struct Skb<'a> {
    skb: NonNull<bindings::sk_buff>,
    nh: usize,
    net: NonNull<bindings::net>,
    dev: *const bindings::net_device,
    pf: u8,
    _life: core::marker::PhantomData<&'a mut bindings::sk_buff>,
}

/// Who sent a packet leaving this host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// No socket: forwarded, or built by the kernel for nobody (a
    /// netfilter reject, an IPv6 reset for no socket).
    None,
    /// One of the kernel's control sockets (an IPv4 reset or ACK sent on
    /// behalf of no socket).
    Control,
    /// A socket bound to `port`: a full, request or time-wait socket;
    /// `connected` for a full socket that is not listening.
    Socket { port: u16, connected: bool },
}

/// How the transport checksum of a packet is handled (`skb->ip_summed`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CsumState {
    /// The checksum field is final (NONE, UNNECESSARY, COMPLETE): a
    /// rewrite must update it.
    Final,
    /// CHECKSUM_PARTIAL: the field holds the pseudo-header seed and the
    /// device (or the stack) sums the ports later: leave it alone.
    Partial,
}

impl Skb<'_> {
    fn raw(&self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }

    /// The checksum state.
    pub(crate) fn csum(&self) -> CsumState {
        // SAFETY: The skb is valid (type invariant).
        match u32::from(unsafe { ffi::vpm_skb_ip_summed(self.raw()) }) {
            bindings::CHECKSUM_PARTIAL => CsumState::Partial,
            _ => CsumState::Final,
        }
    }

    /// Makes the first `len` bytes from the network header writable and
    /// returns them; `None` if the packet is shorter or memory is short.
    pub(crate) fn writable(&mut self, len: usize) -> Option<&mut [u8]> {
        let end = c_uint::try_from(self.nh.checked_add(len)?).ok()?;
        // SAFETY: The skb is ours (type invariant); the call may reallocate
        // the head, which is why the pointer is taken from its result.
        let data = unsafe { ffi::vpm_skb_writable(self.raw(), end) };
        let data = NonNull::new(data)?;
        // SAFETY: `skb_ensure_writable` succeeded, so `data[..end]` is linear,
        // private to this skb and writable; `&mut self` keeps anything else
        // (including another `writable`) from touching it meanwhile.
        Some(unsafe { core::slice::from_raw_parts_mut(data.as_ptr().add(self.nh), len) })
    }

    /// Whether a locally generated packet is routed to this host.
    pub(crate) fn dst_is_local(&self) -> bool {
        // SAFETY: The skb is valid (type invariant).
        unsafe { ffi::vpm_skb_dst_local(self.raw()) }
    }

    /// Whether `addr` (4 or 16 bytes, the packet's family) is a local
    /// unicast address of the hook's namespace.
    pub(crate) fn addr_is_local(&self, addr: &[u8; 16]) -> bool {
        // SAFETY: `net` and `dev` are valid for the hook call (type
        // invariant; `dev` may be null, which the glue accepts); `addr`
        // has room for an address of either family.
        unsafe { ffi::vpm_addr_local(self.net.as_ptr(), self.dev, self.pf, addr.as_ptr()) }
    }

    /// Whether the packet came into this host (forwarded or bridged)
    /// rather than being sent by it.
    pub(crate) fn received(&self) -> bool {
        // SAFETY: The skb is valid (type invariant).
        unsafe { ffi::vpm_skb_received(self.raw(), self.pf) }
    }

    /// Who sent the packet (which socket, if any).
    pub(crate) fn sender(&self) -> Sender {
        // SAFETY: The skb is valid (type invariant).
        let info = unsafe { ffi::vpm_skb_sender(self.raw()) };
        // Mirrors the VPM_SENDER_* bits of vpm_glue.h.
        const SOCKET: u32 = 1 << 31;
        const CONTROL: u32 = 1 << 30;
        const CONNECTED: u32 = 1 << 29;
        if info & SOCKET == 0 {
            Sender::None
        } else if info & CONTROL != 0 {
            Sender::Control
        } else {
            Sender::Socket {
                port: info as u16,
                connected: info & CONNECTED != 0,
            }
        }
    }

    /// The id of the sending socket's cgroup v2 ancestor (or own cgroup)
    /// at depth `level`, or 0 when there is none.
    pub(crate) fn cgroup_ancestor(&self, level: u16) -> u64 {
        // SAFETY: The skb is valid; hooks run under RCU, which the C side
        // requires.
        unsafe { ffi::vpm_skb_cgroup_ancestor(self.raw(), c_int::from(level)) }
    }
}

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

impl crate::vpm_parse::Packet for Skb<'_> {
    fn len(&self) -> usize {
        // SAFETY: The skb is valid (type invariant).
        (unsafe { ffi::vpm_skb_len(self.raw()) } as usize).saturating_sub(self.nh)
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        let (Some(at), Ok(len)) = (self.nh.checked_add(off), c_int::try_from(buf.len())) else {
            return false;
        };
        let Ok(at) = c_int::try_from(at) else {
            return false;
        };
        // SAFETY: The skb is valid; `skb_copy_bits` checks the range against
        // the packet (linear and paged parts) and writes at most `len`
        // bytes into `buf`, which has exactly that room.
        unsafe { bindings::skb_copy_bits(self.raw(), at, buf.as_mut_ptr().cast(), len) == 0 }
    }
}

/// The netfilter entry point of every vpm hook.
///
/// # Safety
///
/// Called only by netfilter, with `priv_` the `NetState` of the hook's
/// namespace (see [`vpm_rs_net_init`]), a valid `skb`, the hook's
/// namespace `net` and its input device `indev` (or null).
#[no_mangle]
unsafe extern "C" fn vpm_rs_hook(
    priv_: *mut c_void,
    skb: *mut bindings::sk_buff,
    pf: u8,
    hooknum: c_uint,
    net: *mut bindings::net,
    indev: *const bindings::net_device,
) -> c_uint {
    // SAFETY: `priv_` is the namespace's initialised state, which outlives
    // every hook invocation (hooks are unregistered and a grace period
    // passes before it is freed); hooks only take shared references.
    let state = unsafe { &*priv_.cast::<NetState>() };
    let (Some(skb), Some(net)) = (NonNull::new(skb), NonNull::new(net)) else {
        return bindings::NF_ACCEPT;
    };
    // SAFETY: netfilter hands a valid skb.
    let Ok(nh) = usize::try_from(unsafe { ffi::vpm_skb_nh_off(skb.as_ptr()) }) else {
        return bindings::NF_ACCEPT;
    };
    // INVARIANT: netfilter gives the hook the skb, its namespace and
    // input device for the duration of the call; `nh` is the skb's
    // network header offset; `pf` is the hook's family.
    let skb = Skb {
        skb,
        nh,
        net,
        dev: indev,
        pf,
        _life: core::marker::PhantomData,
    };
    crate::vpm_nf::hook(state, skb, pf, hooknum)
}

// ---- per-CPU counters ------------------------------------------------------

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
    pub(crate) fn new() -> Result<Self> {
        let n = c_uint::try_from(N).map_err(|_| EINVAL)?;
        // SAFETY: Any count is a valid request.
        let ptr = NonNull::new(unsafe { ffi::vpm_pcpu_alloc(n) }).ok_or(ENOMEM)?;
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

// ---- generic netlink -------------------------------------------------------

/// Registration of the `vpm` generic netlink family.
pub(crate) struct GenlFamily(());

impl GenlFamily {
    /// Registers the family; its operations become callable at once.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: The generated family is a static that outlives the
        // registration, which `drop` undoes.
        to_result(unsafe { bindings::genl_register_family(ptr::addr_of_mut!(ffi::vpm_nl_family)) })?;
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
    _life: core::marker::PhantomData<&'a bindings::genl_info>,
}

impl<'a> GenlInfo<'a> {
    /// vpm's state in the requester's network namespace.
    pub(crate) fn net_state(&self) -> &'a NetState {
        // SAFETY: `raw` is valid (type invariant); a request comes from a
        // socket that holds a reference on its namespace, whose slot is
        // initialised while our family is registered.
        unsafe {
            let net = ffi::vpm_genl_net(self.raw.as_ptr());
            &(*slot(net)).state
        }
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
            to_result(ffi::vpm_genl_reply_send(me.skb.as_ptr(), me.info.raw.as_ptr()))
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
    _life: core::marker::PhantomData<&'a GenlInfo<'a>>,
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
            _life: core::marker::PhantomData,
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

/// One call of a dump in progress.
///
/// # Invariants
///
/// `skb` and `cb` are the valid arguments of the current `dumpit` call.
pub(crate) struct Dump<'a> {
    skb: NonNull<bindings::sk_buff>,
    cb: NonNull<bindings::netlink_callback>,
    _life: core::marker::PhantomData<&'a mut bindings::netlink_callback>,
}

impl<'a> Dump<'a> {
    /// vpm's state in the dumping socket's namespace.
    pub(crate) fn net_state(&self) -> &'a NetState {
        // SAFETY: `cb` is valid; the dumping socket holds a reference on its
        // namespace, whose slot is initialised while the family exists.
        unsafe { &(*slot(ffi::vpm_dump_net(self.cb.as_ptr()))).state }
    }

    /// Reads the dump's resume state, zeroed at the first call.
    pub(crate) fn cursor<T: DumpCursor>(&mut self) -> T {
        // SAFETY: `cb` is valid; the scratch area is at least
        // `size_of::<T>()` bytes (checked) and any bytes are a valid `T`.
        unsafe {
            assert!(core::mem::size_of::<T>() <= ffi::vpm_dump_ctx_size);
            ffi::vpm_dump_ctx(self.cb.as_ptr()).cast::<T>().read_unaligned()
        }
    }

    /// Saves the resume state for the next call.
    pub(crate) fn set_cursor<T: DumpCursor>(&mut self, val: T) {
        // SAFETY: As in `cursor`.
        unsafe {
            assert!(core::mem::size_of::<T>() <= ffi::vpm_dump_ctx_size);
            ffi::vpm_dump_ctx(self.cb.as_ptr()).cast::<T>().write_unaligned(val)
        }
    }

    /// Starts a message; `None` when the skb is full.  `generation` is the
    /// state the dump reflects: a change since the dump began sets
    /// `NLM_F_DUMP_INTR`.
    pub(crate) fn msg(&mut self, generation: u32) -> Option<DumpMsg<'_, 'a>> {
        // SAFETY: `skb` and `cb` are valid for this call.
        let hdr = unsafe { ffi::vpm_dump_msg_start(self.skb.as_ptr(), self.cb.as_ptr(), generation) };
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

/// Runs a netlink handler with a safe view of its request.
///
/// # Safety
///
/// `info` must be the valid `genl_info` of the handler call in progress.
unsafe fn genl_dispatch(
    info: *mut bindings::genl_info,
    handler: impl FnOnce(&GenlInfo<'_>) -> Result,
) -> c_int {
    let Some(raw) = NonNull::new(info) else {
        return EINVAL.to_errno();
    };
    // INVARIANT: Valid for the duration of this call, per the caller.
    let info = GenlInfo {
        raw,
        _life: core::marker::PhantomData,
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
            _skb: *mut bindings::sk_buff,
            info: *mut bindings::genl_info,
        ) -> c_int {
            // SAFETY: The netlink core passes the valid info of this call.
            unsafe { genl_dispatch(info, $handler) }
        }
    };
}

genl_doit!(vpm_nl_get_status_doit => crate::vpm_genl::get_status);
genl_doit!(vpm_nl_add_mapping_doit => crate::vpm_genl::add_mapping);
genl_doit!(vpm_nl_del_mapping_doit => crate::vpm_genl::del_mapping);
genl_doit!(vpm_nl_get_mapping_doit => crate::vpm_genl::get_mapping);
genl_doit!(vpm_nl_flush_doit => crate::vpm_genl::flush);
genl_doit!(vpm_nl_get_config_doit => crate::vpm_genl::get_config);
genl_doit!(vpm_nl_set_config_doit => crate::vpm_genl::set_config);
genl_doit!(vpm_nl_add_rule_doit => crate::vpm_genl::add_rule);
genl_doit!(vpm_nl_del_rule_doit => crate::vpm_genl::del_rule);

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
            skb: *mut bindings::sk_buff,
            cb: *mut bindings::netlink_callback,
        ) -> c_int {
            let (Some(skb), Some(cb)) = (NonNull::new(skb), NonNull::new(cb)) else {
                return EINVAL.to_errno();
            };
            // INVARIANT: Valid for the duration of this call, per the caller.
            let mut dump = Dump {
                skb,
                cb,
                _life: core::marker::PhantomData,
            };
            match $handler(&mut dump) {
                Ok(len) => c_int::try_from(len).unwrap_or(c_int::MAX),
                Err(e) => e.to_errno(),
            }
        }
    };
}

genl_dumpit!(vpm_nl_get_mapping_dumpit => crate::vpm_genl::dump_mappings);
genl_dumpit!(vpm_nl_get_rule_dumpit => crate::vpm_genl::dump_rules);

// ---- control-plane additions: dump consistency, bound ports -----------------

/// C glue of this section (`vpm_glue.c`); prototypes mirror `vpm_glue.h`.
mod ffi_ctl {
    use super::*;

    #[expect(
        improper_ctypes,
        reason = "kernel structs are only passed by pointer, never by value"
    )]
    extern "C" {
        pub(super) fn vpm_dump_set_seq(cb: *mut bindings::netlink_callback, gen: u32);
        pub(super) fn vpm_port_bound(net: *mut bindings::net, port: u16) -> bool;
    }
}

impl Dump<'_> {
    /// Records the table generation this call reflects, so that a change
    /// since the previous call sets `NLM_F_DUMP_INTR` on the next message,
    /// `NLMSG_DONE` included.  Call it on every call.
    pub(crate) fn set_generation(&mut self, generation: u32) {
        // SAFETY: `cb` is valid for this call (type invariant).
        unsafe { ffi_ctl::vpm_dump_set_seq(self.cb.as_ptr(), generation) };
    }
}

impl NetRef {
    /// Whether a TCP or UDP socket (IPv4 or IPv6) of the namespace is bound
    /// to `port` right now.  Process context (takes the bind tables' locks).
    pub(crate) fn port_bound(&self, port: u16) -> bool {
        // SAFETY: `net` is live (type invariant); the glue only takes the
        // tables' spinlocks, which the handlers' process context allows.
        unsafe { ffi_ctl::vpm_port_bound(self.net.as_ptr(), port) }
    }
}
