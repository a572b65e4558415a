// SPDX-License-Identifier: GPL-2.0

//! Per-namespace state: a slot of some type `T` in every network namespace,
//! and vpm's netfilter hooks pointing at it while the owner wants them.
//!
//! The namespace core allocates the slot (`net_generic`) and calls the
//! callbacks below; the owner of `T` (`vpm_net.rs`) only implements the
//! safe [`PernetState`] and declares one static [`Pernet`].
//!
//! Hooks cost every packet of a namespace, and loading vpm (which any
//! user can trigger, through the netlink family's alias) must not tax the
//! namespaces it has nothing for: a namespace starts without them, and
//! the owner registers and unregisters them ([`Pernet::set_hooks`]).

use core::ffi::{c_int, c_uint};
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};

use kernel::alloc::flags::GFP_KERNEL_ACCOUNT;
use kernel::bindings;
use kernel::error::to_result;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;
use kernel::types::Opaque;

use super::ffi;
use super::nf::HookState;

/// What a [`Pernet`] keeps in each network namespace.
pub(crate) trait PernetState: HookState + Sized + Send + Sync + 'static {
    /// The one registration whose slots hold this type.
    fn pernet() -> &'static Pernet<Self>;

    /// Creates the state of a new namespace (process context).
    fn new(net: NetRef) -> Result<Self>;

    /// Records that `n` hooks are now registered in the namespace (at
    /// every [`Pernet::set_hooks`] that changes it, and 0 when the
    /// namespace starts to go; a new state starts with none).
    fn hooks_changed(&self, n: u32);
}

/// What vpm keeps in each namespace's `net_generic` slot.
///
/// The packet path only ever gets `&T` (the hooks' `priv`); `hooks` is
/// taken by the owner's requests and the namespace callbacks.
struct Slot<T> {
    state: T,
    hooks: Pin<KBox<Mutex<Hooks>>>,
}

/// A namespace's copy of vpm's hooks, and whether it is registered.
///
/// # Invariants
///
/// `ops` is null or the namespace's copy of the hooks (`vpm_hooks_alloc`),
/// with `priv` pointing to the slot's state, freed only in the namespace's
/// exit.  `on` means `ops` is non-null and registered in the namespace;
/// only [`Pernet::set_hooks`] and pre_exit register or unregister it,
/// under the mutex.  `gone` (set by pre_exit) means the namespace is
/// going: `on` is false and stays so.
struct Hooks {
    ops: *mut ffi::nf_hook_ops,
    on: bool,
    gone: bool,
}

// SAFETY: `ops` is only used under the mutex that holds the `Hooks`, from
// process context on any CPU; nothing in it is tied to a thread.
unsafe impl Send for Hooks {}

/// vpm's `pernet_operations` and the slot id they were assigned.
///
/// The namespace core allocates `size` zeroed bytes per namespace and calls
/// `init`; on teardown it calls `pre_exit`, waits for an RCU grace period,
/// then calls `exit`.  The hooks are unregistered in `pre_exit`, so no
/// packet can still be inside a hook when `exit` frees what the hook uses.
///
/// # Invariants
///
/// While `registered` is true, `ops` is registered with the namespace
/// core, `id` holds the slot id it assigned, and every live namespace has
/// an initialised `Slot<T>` in that slot (from its init to its exit).
pub(crate) struct Pernet<T> {
    ops: Opaque<bindings::pernet_operations>,
    id: Opaque<c_uint>,
    registered: AtomicBool,
    _state: PhantomData<fn() -> T>,
}

// SAFETY: Only the namespace core touches `ops` and `id`, under its own
// lock, between registration and unregistration; `register` writes `ops`
// before that, once, guarded by `registered`.
unsafe impl<T> Sync for Pernet<T> {}

impl<T: PernetState> Pernet<T> {
    /// Operations for slots of type `T`, not registered yet.
    pub(crate) const fn new() -> Self {
        // The namespace core allocates the slot with kzalloc, which aligns
        // to at least 8 bytes.
        const { assert!(core::mem::align_of::<Slot<T>>() <= 8) };
        // INVARIANT: not registered.
        Self {
            ops: Opaque::new(bindings::pernet_operations {
                init: Some(net_init::<T>),
                pre_exit: Some(net_pre_exit::<T>),
                exit: Some(net_exit::<T>),
                size: core::mem::size_of::<Slot<T>>(),
                ..pin_init::zeroed()
            }),
            id: Opaque::new(0),
            registered: AtomicBool::new(false),
            _state: PhantomData,
        }
    }

    /// Registers the operations, initialising all existing namespaces.
    ///
    /// `self` must be [`PernetState::pernet`], registered once at a time.
    pub(crate) fn register(&'static self) -> Result<Registration<T>> {
        if !ptr::eq(self, T::pernet()) {
            return Err(EINVAL);
        }
        if self.registered.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        // SAFETY: `registered` was false and we set it, so the namespace
        // core does not know `ops` and nobody else writes it.
        unsafe { (*self.ops.get()).id = self.id.get() };
        // SAFETY: `self` is static and its callbacks are sound for any
        // namespace the core hands them (they find the slot through
        // `T::pernet()`, which is `self`).
        let ret = to_result(unsafe { bindings::register_pernet_subsys(self.ops.get()) });
        if ret.is_err() {
            self.registered.store(false, Ordering::Release);
        }
        ret?;
        // INVARIANT: registered, with every namespace initialised.
        Ok(Registration(self))
    }

    /// The state of namespace `net`; `None` if the operations are not
    /// registered.
    pub(crate) fn state<'a>(&self, net: Net<'a>) -> Option<&'a T> {
        if !self.registered.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: Registered, and by `Net`'s invariant it stays so for
        // `'a` with `net` live, so the slot holds an initialised `Slot<T>`
        // that is only freed in the namespace's exit.
        Some(unsafe { &(*self.slot(net.net.as_ptr())).state })
    }

    /// Registers (`on`) or unregisters vpm's hooks in `net`; nothing
    /// happens if they already are (or are not).  Process context: it
    /// sleeps on the namespace's hook mutex and in netfilter.
    ///
    /// Errors, when registering: `ENOMEM`; `E2BIG` from netfilter (1024
    /// hooks at one hook point already); `ENODEV` if the namespace is
    /// going or the operations are not registered.  Unregistering
    /// cannot fail.
    ///
    /// Unregistering has netfilter drop the packets the namespace has
    /// queued to user space (NFQUEUE), as at a namespace's exit.
    pub(crate) fn set_hooks(&self, net: Net<'_>, on: bool) -> Result {
        if !self.registered.load(Ordering::Acquire) {
            return Err(ENODEV);
        }
        // SAFETY: Registered, and by `Net`'s invariant it stays so during
        // the call, with `net` live.
        let slot = unsafe { self.slot(net.net.as_ptr()) };
        // SAFETY: The slot is initialised (same reasons) and its fields are
        // only dropped in the namespace's exit.
        let (state, hooks) = unsafe { (&(*slot).state, &(*slot).hooks) };
        let mut h = hooks.lock();
        if h.on == on {
            return Ok(());
        }
        if !on {
            // SAFETY: `on`: `ops` is registered in `net` (type invariant).
            unsafe { ffi::vpm_hooks_unregister(net.net.as_ptr(), h.ops) };
            h.on = false;
            state.hooks_changed(0);
            return Ok(());
        }
        if h.gone {
            return Err(ENODEV);
        }
        if h.ops.is_null() {
            // SAFETY: The glue only copies the hook template and stores
            // `priv` in the copy; `state` is the slot's state.
            let ops = unsafe { ffi::vpm_hooks_alloc(ptr::from_ref(state).cast_mut().cast()) };
            if ops.is_null() {
                return Err(ENOMEM);
            }
            // INVARIANT: the copy for this namespace, `priv` the state.
            h.ops = ops;
        }
        // The hooks' `priv` and `ops` itself (which netfilter keeps
        // pointers to, read under RCU by nfnetlink_hook's dumps) stay
        // valid for as long as anything can reach them: both are freed in
        // the namespace's exit, which comes after pre_exit unregistered
        // the hooks (under this mutex, setting `gone`, so they are never
        // registered again) and a grace period.
        // SAFETY: `net` is live; `ops` is its copy, not registered (`!on`),
        // valid until exit (above); the entry point takes `priv` for a `T`.
        let err = unsafe { ffi::vpm_hooks_register(net.net.as_ptr(), h.ops) };
        to_result(err)?;
        // INVARIANT: registered, and not `gone` (checked above).
        h.on = true;
        // SAFETY: A constant of the glue.
        state.hooks_changed(unsafe { ffi::vpm_hook_count });
        Ok(())
    }

    /// Returns the slot of `net`.
    ///
    /// # Safety
    ///
    /// `net` must be a live namespace and `self` registered.
    unsafe fn slot(&self, net: *const bindings::net) -> *mut Slot<T> {
        // SAFETY: The id was assigned at registration, which the caller
        // guarantees, and is not written again; `net` is live.
        unsafe { ffi::vpm_net_generic(net, *self.id.get()) }.cast::<Slot<T>>()
    }
}

/// A registered [`Pernet`]; unregisters it on drop.
///
/// While it exists every network namespace, present and future, has an
/// initialised `T` in its slot (and vpm's hooks where the owner set them).
pub(crate) struct Registration<T: PernetState>(&'static Pernet<T>);

impl<T: PernetState> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: Registered by `register` (type invariant of `Pernet`).
        // Unregistering runs pre_exit (which unregisters the hooks), an
        // RCU grace period and exit for every namespace, so no hook can
        // run afterwards.
        unsafe { bindings::unregister_pernet_subsys(self.0.ops.get()) };
        self.0.registered.store(false, Ordering::Release);
        // Values replaced by the control plane are freed by RCU callbacks
        // that live in this module's text: wait for all of them.
        kernel::sync::rcu::rcu_barrier();
    }
}

/// Initialises a new namespace.
///
/// # Safety
///
/// Called only by the namespace core, once per namespace, with a zeroed
/// slot, while `T::pernet()` is registered.
unsafe extern "C" fn net_init<T: PernetState>(net: *mut bindings::net) -> c_int {
    // SAFETY: The namespace core calls init with a live `net` after our
    // operations are registered.
    let slot = unsafe { T::pernet().slot(net) };
    // INVARIANT: the state (and the `NetRef` in it) is freed in exit,
    // while `net` is still live.
    let netref = NetRef {
        // SAFETY: The namespace core passes a valid, non-null namespace.
        net: unsafe { NonNull::new_unchecked(net) },
    };
    // INVARIANT: no copy of the hooks yet, none registered.
    let hooks = Hooks {
        ops: ptr::null_mut(),
        on: false,
        gone: false,
    };
    // The small allocation first: its failure then costs no state.
    let hooks = match KBox::pin_init(new_mutex!(hooks, "vpm_hooks"), GFP_KERNEL_ACCOUNT) {
        Ok(h) => h,
        Err(e) => return e.to_errno(),
    };
    let state = match T::new(netref) {
        Ok(s) => s,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: The slot is valid, suitably aligned (checked in `new`) and
    // not yet initialised; nothing else can see it before init returns.
    unsafe { slot.write(Slot { state, hooks }) };
    0
}

/// Unregisters vpm's hooks in a dying namespace.
///
/// # Safety
///
/// Called only by the namespace core, after a successful init.
unsafe extern "C" fn net_pre_exit<T: PernetState>(net: *mut bindings::net) {
    // SAFETY: init succeeded for this namespace, so the slot is initialised.
    let slot = unsafe { T::pernet().slot(net) };
    // SAFETY: As above; the fields are dropped only in exit.
    let (state, hooks) = unsafe { (&(*slot).state, &(*slot).hooks) };
    let mut h = hooks.lock();
    if h.on {
        // SAFETY: `on`: registered in `net` (type invariant of `Hooks`).
        unsafe { ffi::vpm_hooks_unregister(net, h.ops) };
        h.on = false;
    }
    // INVARIANT: off, and `set_hooks` never registers them again.
    h.gone = true;
    state.hooks_changed(0);
}

/// Frees the state of a dead namespace.
///
/// # Safety
///
/// Called only by the namespace core, after pre_exit and an RCU grace period.
unsafe extern "C" fn net_exit<T: PernetState>(net: *mut bindings::net) {
    // SAFETY: init succeeded, so the slot is initialised.
    let slot = unsafe { T::pernet().slot(net) };
    // SAFETY: The slot is initialised; its fields are dropped below.
    let ops = unsafe { (*slot).hooks.lock().ops };
    // SAFETY: pre_exit unregistered the hooks for good and a grace period
    // has passed, so no packet references the state or the ops any more
    // (`ops` may be null: never registered; the glue's kfree takes it).
    unsafe {
        ffi::vpm_hooks_free(ops);
        ptr::drop_in_place(slot);
    }
}

/// A network namespace that stays alive for `'a`.
///
/// # Invariants
///
/// `net` is live for `'a`, and every [`Pernet`] registered when the `Net`
/// was made stays registered for `'a` (the netlink family, which hands
/// them out, is registered after and unregistered before the pernet
/// operations: see `vpm_mod.rs`).
#[derive(Clone, Copy)]
pub(crate) struct Net<'a> {
    net: NonNull<bindings::net>,
    _life: PhantomData<&'a bindings::net>,
}

impl Net<'_> {
    /// Wraps `net`.
    ///
    /// # Safety
    ///
    /// `net` must satisfy the type invariant for the chosen lifetime.
    pub(super) unsafe fn from_raw(net: NonNull<bindings::net>) -> Self {
        // INVARIANT: Per the caller.
        Self {
            net,
            _life: PhantomData,
        }
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
// atomic bit operations or take the bind tables' own locks, from any CPU.
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

    /// Whether a TCP or UDP socket (IPv4 or IPv6) of the namespace is bound
    /// to `port` right now.  Process context (takes the bind tables' locks).
    pub(crate) fn port_bound(&self, port: u16) -> bool {
        // SAFETY: `net` is live (type invariant); the glue only takes the
        // tables' spinlocks, which the handlers' process context allows.
        unsafe { ffi::vpm_port_bound(self.net.as_ptr(), port) }
    }
}
