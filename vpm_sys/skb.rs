// SPDX-License-Identifier: GPL-2.0

//! A packet as a netfilter hook sees it: header bytes to read and to make
//! writable, the checksum state, and what routing and sockets say about
//! where it comes from and goes to.

use core::ffi::{c_int, c_uint};
use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::bindings;

use super::ffi;

/// A packet as handed to a netfilter hook, seen from its network header.
///
/// # Invariants
///
/// `skb` is valid and exclusively ours for the lifetime `'a` (the duration
/// of the hook call); `nh` is the offset of its network header from
/// `skb->data`; `data` is `skb->data` and its first `linear` bytes lie in the
/// skb's linear part, which nothing but [`Skb::writable`] (through
/// `&mut self`, which refreshes `data` and `linear`) changes or moves
/// meanwhile; `len` is `skb->len` and `seed` whether its checksum field
/// holds a seed (see [`CsumState`]); `net` is
/// the hook's namespace and `dev` its input device (its output device
/// where it has no input device, or null), both valid for `'a`; `pf` is
/// the hook's family (`NFPROTO_IPV4` or `NFPROTO_IPV6`).
pub(crate) struct Skb<'a> {
    skb: NonNull<bindings::sk_buff>,
    nh: usize,
    data: NonNull<u8>,
    linear: usize,
    len: usize,
    seed: bool,
    net: NonNull<bindings::net>,
    dev: *const bindings::net_device,
    pf: u8,
    _life: PhantomData<&'a mut bindings::sk_buff>,
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

/// What the transport checksum field of a packet holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CsumState {
    /// The checksum itself (NONE, UNNECESSARY, COMPLETE): a rewrite must
    /// update it.
    Final,
    /// The pseudo-header seed, which the device or the stack completes
    /// over the ports later: leave it alone.  CHECKSUM_PARTIAL, and a UDP
    /// GSO packet (not fraglist) whichever its `ip_summed` (`vpm_skb_head`
    /// in the glue).
    Partial,
}

impl Skb<'_> {
    /// Wraps the packet of a hook call.
    ///
    /// # Safety
    ///
    /// For as long as the result lives: `skb` must be a valid skb that
    /// nobody else reads or changes (as a hook's packet is for the hook
    /// call), `net` a live namespace (the hook's), `dev` a valid device or
    /// null, and `pf` the packet's family.  The arguments of the netfilter
    /// hook call in progress satisfy this.
    pub(super) unsafe fn from_hook(
        skb: NonNull<bindings::sk_buff>,
        net: NonNull<bindings::net>,
        dev: *const bindings::net_device,
        pf: u8,
    ) -> Option<Self> {
        let mut h = ffi::vpm_skb_head {
            nh: 0,
            linear: 0,
            len: 0,
            csum_seed: 0,
        };
        // SAFETY: netfilter hands a valid skb (the caller's guarantee); `h`
        // is ours to fill.
        let data = unsafe { ffi::vpm_skb_head(skb.as_ptr(), &mut h) };
        let data = NonNull::new(data.cast_mut())?;
        let nh = usize::try_from(h.nh).ok()?;
        // INVARIANT: netfilter gives the hook the skb, its namespace and
        // input device for the duration of the call, and nobody else
        // touches the skb meanwhile; the rest was just read from it.
        Some(Self {
            skb,
            nh,
            data,
            linear: h.linear as usize,
            len: h.len as usize,
            seed: h.csum_seed != 0,
            net,
            dev,
            pf,
            _life: PhantomData,
        })
    }

    fn raw(&self) -> *mut bindings::sk_buff {
        self.skb.as_ptr()
    }

    /// What the transport checksum field holds.
    pub(crate) fn csum(&self) -> CsumState {
        if self.seed {
            CsumState::Partial
        } else {
            CsumState::Final
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
        // INVARIANT: `skb_ensure_writable` may have moved the head, and it
        // left at least `end` linear bytes.
        self.data = data;
        self.linear = end as usize;
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

    /// Whether `addr`, the packet's source, is one no other host can send
    /// from (a loopback address, or this host's own on another device
    /// than the loopback): a spoofed packet the stack drops, after the
    /// PRE_ROUTING hook for IPv4.
    pub(crate) fn src_is_martian(&self, addr: &[u8; 16]) -> bool {
        // SAFETY: `net` and `dev` are valid for the hook call (type
        // invariant; `dev` may be null, which the glue accepts); `addr`
        // has room for an address of either family.
        unsafe { ffi::vpm_src_martian(self.net.as_ptr(), self.dev, self.pf, addr.as_ptr()) }
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
        use ffi::{
            VPM_SENDER_CONNECTED as CONNECTED, VPM_SENDER_CONTROL as CONTROL,
            VPM_SENDER_SOCKET as SOCKET,
        };
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

impl crate::vpm_parse::Packet for Skb<'_> {
    fn len(&self) -> usize {
        self.len.saturating_sub(self.nh)
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        let Some(at) = self.nh.checked_add(off) else {
            return false;
        };
        if at
            .checked_add(buf.len())
            .is_some_and(|end| end <= self.linear)
        {
            // SAFETY: `data[..linear]` is in the skb's linear part, unchanged
            // while `&self` is borrowed (type invariant); `at + buf.len() <=
            // linear`, and `buf` is another object.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.data.as_ptr().add(at),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            return true;
        }
        let Ok(len) = c_int::try_from(buf.len()) else {
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

    fn in_place(&self) -> &[u8] {
        let Some(n) = self.linear.checked_sub(self.nh) else {
            return &[];
        };
        // SAFETY: `data[..linear]` is in the skb's linear part and stays
        // unchanged while `&self` is borrowed (type invariant), which the
        // returned slice's lifetime is tied to; `nh + n == linear`.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr().add(self.nh), n) }
    }
}
