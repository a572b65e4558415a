// SPDX-License-Identifier: GPL-2.0

//! Flow pinning: the translation chosen for a flow's first packet is
//! recorded, so that a later rule change does not move an established
//! TCP connection or an active UDP flow to another instance (the patent
//! records the translation per connection).
//!
//! Pure `core` (atomics included), like `vpm_csum.rs`: the module and the
//! host tests compile this same file, and the host tests also build it
//! with `--cfg loom`, which swaps in `loom`'s atomics so that a model
//! checker explores every interleaving of the packet path's operations.
//!
//! The table is a fixed array of slots, allocated once per namespace by
//! the control plane; the packet path never allocates and never takes a
//! lock.  Slots are grouped in buckets of [`WAYS`]; a flow's keyed hash
//! picks the bucket and a 32-bit tag identifies it within.
//!
//! # A pin's life
//!
//! - A flow's first packet from the client (a TCP SYN, any UDP datagram)
//!   creates an *unconfirmed* pin that lives [`TCP_UNCONFIRMED_TIMEOUT`]
//!   or [`UDP_TIMEOUT`] seconds after the client's last packet.  Anybody
//!   can send a SYN from any address, so an unconfirmed pin proves
//!   nothing and is the first to be evicted.
//! - The instance *confirms* it.  For TCP that takes a segment without
//!   SYN from an established socket (not a listener, request, time-wait or
//!   control socket), which exists only once the handshake completed: a
//!   spoofed source never gets one (the packet path tells the flow table
//!   who sent the segment, [`Seen::Instance`]).  For UDP any reply
//!   confirms, which a service that answers every datagram also does for
//!   spoofed ones: confirmed UDP pins stay evictable.
//! - A confirmed TCP pin lives [`TCP_TIMEOUT`] seconds after the
//!   instance's last segment (a client's packets, which anyone can spoof,
//!   do not extend it), a confirmed UDP pin [`UDP_TIMEOUT`] seconds after
//!   the flow's last packet.  A full bucket evicts, in this order: the
//!   flow's own dead pin, a free or expired slot, the unconfirmed (or
//!   closing) pin closest to expiry, then a confirmed pin idle for at
//!   least [`CONFIRMED_IDLE_EVICT`] seconds (which every confirmed UDP
//!   pin counts as).  A confirmed TCP pin whose instance sent something in
//!   the last minute is never evicted: a new flow that finds its bucket
//!   full of them stays unpinned ([`Inserted::Full`]).
//! - Only the instance's side, which is this host's own socket and cannot
//!   be spoofed from the network, ends a confirmed pin: its FIN makes the
//!   pin *closing* ([`TCP_FIN_TIMEOUT`] seconds, renewed by its further
//!   segments, so a half-closed connection stays while data flows), its
//!   RST ends it.  A client's FIN or RST does not touch a confirmed pin (a
//!   spoofed one would otherwise end any connection whose addresses it
//!   guessed; the client's real FIN is answered by the instance's FIN
//!   anyway).  A client RST ends an unconfirmed pin, so a port scan's SYN,
//!   SYN-ACK, RST frees its slot at once.
//!
//! # Slots and the concurrency argument
//!
//! A slot is two atomic words:
//!
//! - `life`: tag (32 bits) | state (2) | generation (6) | deadline (24
//!   bits of seconds).  0 is a never-used slot.  State `CLAIMED` marks a
//!   slot changing hands; every claim bumps the generation.
//! - `pin`: anonymous port (16) | allocation id (48).
//!
//! Every change of `life` is a compare-and-swap from the value the writer
//! read, and a writer only proceeds while `life` carries its own flow's
//! tag (or, for an insert, the exact value it chose to replace).  Hence:
//!
//! - a touch (refresh, confirm, FIN, RST) can only ever change the pin of
//!   its own flow: if the slot changed hands in between, the CAS fails;
//! - an insert takes a slot by first claiming `life` (CAS from the value
//!   it saw to "claimed by my tag"), then writes `pin`, then publishes
//!   `life` with release ordering.  While a slot is claimed, nobody else
//!   writes it (inserts skip claimed slots, touches need an unclaimed
//!   `life` of their tag), so no interleaving lets a losing insert or a
//!   stale store end or shorten a pin that someone else just created;
//! - a reader loads `life` (acquire), then `pin`, then `life` again and
//!   requires the two loads to be equal: a pin published after a new
//!   claim would show in the second load as a changed generation, so a
//!   reader never pairs one flow's tag with another flow's pin (unless 64
//!   claims of that one slot pass between its two loads).
//!
//! An insert running in preemptible process context (LOCAL_OUT) may hold
//! a claim across a preemption: meanwhile the slot's old and new flows
//! both miss and are translated by the rules, which is what the new flow
//! was being pinned to anyway.
//!
//! The only way a live pin ends early is the stated policy: eviction of
//! an unconfirmed (or closing) pin by a new flow, and the instance's own
//! RST.  The allocation id is 48 bits wide and never reused, so a pin
//! that outlives its allocation can never attach to a later one on the
//! same anonymous port; the packet path checks that the allocation
//! still exists before using a pin.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

use crate::vpm_rules::Family;

/// Slots per bucket.
pub(crate) const WAYS: usize = 4;
/// Idle timeout of a confirmed UDP flow, in seconds.
pub(crate) const UDP_TIMEOUT: u32 = 60;
/// Idle timeout of a confirmed TCP connection, in seconds.
pub(crate) const TCP_TIMEOUT: u32 = 7200;
/// How long a TCP connection stays pinned after the instance's FIN.
pub(crate) const TCP_FIN_TIMEOUT: u32 = 10;
/// How long an unconfirmed TCP pin lives after the client's last packet
/// (long enough for a client that connects and waits before it sends).
pub(crate) const TCP_UNCONFIRMED_TIMEOUT: u32 = 120;
/// A confirmed pin with no packet from its instance (UDP: from either
/// side) for this long may be evicted by a new flow.
pub(crate) const CONFIRMED_IDLE_EVICT: u32 = 60;

/// TCP flag bits (byte 13 of the header).
pub(crate) const TCP_FIN: u8 = 0x01;
/// SYN.
pub(crate) const TCP_SYN: u8 = 0x02;
/// RST.
pub(crate) const TCP_RST: u8 = 0x04;
/// ACK.
pub(crate) const TCP_ACK: u8 = 0x10;

/// Allocation ids are 48 bits wide (see [`Pin::id`]).
pub(crate) const ID_MASK: u64 = (1 << 48) - 1;

/// What identifies a flow: the client's side and the fixed port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowKey {
    /// IP protocol number.
    pub(crate) proto: u8,
    /// `V4` or `V6`.
    pub(crate) family: Family,
    /// The fixed port.
    pub(crate) fixed: u16,
    /// The client's port.
    pub(crate) port: u16,
    /// The client's address (IPv4 in the first 4 bytes).
    pub(crate) addr: [u8; 16],
}

/// A pinned translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pin {
    /// The anonymous port.
    pub(crate) anon: u16,
    /// The allocation's id (48 bits; ids are never reused).
    pub(crate) id: u64,
}

/// Whether a reply of allocation `this` to one of its cooperative peers
/// keeps the anonymous port (docs/COOPERATIVE.md): its flow came to the
/// anonymous port directly (`direct`, the flow's mark keyed by the
/// anonymous port, names `this`) and not through the fixed port
/// (`pinned`, the flow's pin keyed by the fixed port, does not name
/// `this`).  Without a mark, the reply is translated as any other: a
/// mark lost to eviction or a reload costs only the cooperative flow, and
/// never a client of the fixed port.
pub(crate) fn peer_keeps_anon(direct: Option<Pin>, pinned: Option<Pin>, this: Pin) -> bool {
    direct == Some(this) && pinned != Some(this)
}

impl Pin {
    fn pack(self) -> u64 {
        u64::from(self.anon) << 48 | (self.id & ID_MASK)
    }

    fn unpack(w: u64) -> Self {
        Self {
            anon: (w >> 48) as u16,
            id: w & ID_MASK,
        }
    }
}

/// Where a pin stands (see the module documentation).  Read by the tests
/// (KUnit, host): a kernel without KUnit never names it.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PinState {
    /// Created by the client's first packet, not yet answered.
    Unconfirmed,
    /// The instance answered.
    Confirmed,
    /// The instance sent its FIN.
    Closing,
}

/// Who sent a packet of a pinned flow, and what it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The client (from the network or a local client): `tcp` and its flags.
    Client { tcp: bool, flags: u8 },
    /// The instance, from allocation `pin` (a reply leaving this host);
    /// `established`: sent by a connected socket, not by a listener, a
    /// request, time-wait or kernel control socket (only such a segment
    /// confirms a TCP pin).
    Instance {
        tcp: bool,
        flags: u8,
        pin: Pin,
        established: bool,
    },
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Into a free slot.
    Free,
    /// Over a slot whose flow had expired (or the flow's own dead pin).
    Expired,
    /// Over a live flow: the bucket was full.
    Evicted,
    /// The bucket holds only busy confirmed (or changing) pins: the flow
    /// stays unpinned rather than push out an established one.
    Full,
    /// Lost a race with another CPU: the flow stays unpinned.
    Raced,
}

// `life` word layout.
const CLAIMED: u64 = 0;
const UNCONFIRMED: u64 = 1;
const CONFIRMED: u64 = 2;
const CLOSING: u64 = 3;
const DL_BITS: u32 = 24;
const DL_MASK: u32 = (1 << DL_BITS) - 1;
const GEN_BITS: u32 = 6;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
const STATE_SHIFT: u32 = DL_BITS + GEN_BITS;

fn life(tag: u32, state: u64, gen: u64, deadline: u32) -> u64 {
    u64::from(tag) << 32
        | state << STATE_SHIFT
        | (gen & GEN_MASK) << DL_BITS
        | u64::from(deadline & DL_MASK)
}

fn gen_of(l: u64) -> u64 {
    (l >> DL_BITS) & GEN_MASK
}

fn tag_of(l: u64) -> u32 {
    (l >> 32) as u32
}

fn state_of(l: u64) -> u64 {
    (l >> STATE_SHIFT) & 3
}

fn deadline_of(l: u64) -> u32 {
    l as u32 & DL_MASK
}

/// `now` is past `deadline` (both wrapping seconds, 24 bits: every
/// timeout is far below the 97 days that leaves for comparisons).
fn expired(deadline: u32, now: u32) -> bool {
    let d = now.wrapping_sub(deadline) & DL_MASK;
    d != 0 && d < 1 << (DL_BITS - 1)
}

/// Seconds from `now` until `deadline` (0 when past).
fn remaining(deadline: u32, now: u32) -> u32 {
    if expired(deadline, now) {
        0
    } else {
        deadline.wrapping_sub(now) & DL_MASK
    }
}

/// A slot holds a live, unclaimed pin of `tag` at `now`.
fn live_for(l: u64, tag: u32, now: u32) -> bool {
    tag_of(l) == tag && state_of(l) != CLAIMED && !expired(deadline_of(l), now)
}

/// The `life` word after `seen` at `now`, or `None` to leave it as it is.
fn next_life(l: u64, pin: Pin, seen: Seen, now: u32) -> Option<u64> {
    let (tag, state, gen, deadline) = (tag_of(l), state_of(l), gen_of(l), deadline_of(l));
    let set = |state, secs: u32| Some(life(tag, state, gen, now.wrapping_add(secs)));
    let ended = Some(life(tag, state, gen, now.wrapping_sub(1)));
    match seen {
        Seen::Client { tcp, flags } => match state {
            // A scan's RST frees the slot; anything else keeps it alive.
            UNCONFIRMED if tcp && flags & TCP_RST != 0 => ended,
            UNCONFIRMED => set(UNCONFIRMED, unconfirmed_timeout(tcp)),
            // A UDP flow lives on its packets; a TCP client's packets
            // (spoofable) neither extend nor end a confirmed pin.
            CONFIRMED if !tcp => set(CONFIRMED, UDP_TIMEOUT),
            _ => None,
        },
        Seen::Instance {
            tcp,
            flags,
            pin: from,
            established,
        } => {
            if from != pin {
                // A reply of another allocation: not this pin's instance.
                return None;
            }
            if !tcp {
                return set(CONFIRMED, UDP_TIMEOUT);
            }
            if flags & TCP_RST != 0 {
                return ended;
            }
            if !established || flags & TCP_SYN != 0 {
                // A SYN-ACK or a listener's answer: sent to spoofed
                // sources too, so it confirms nothing.
                return (state == UNCONFIRMED)
                    .then(|| set(UNCONFIRMED, TCP_UNCONFIRMED_TIMEOUT))
                    .flatten();
            }
            if flags & TCP_FIN != 0 && state == CLOSING {
                // A retransmitted FIN does not push the end out.
                let fin = now.wrapping_add(TCP_FIN_TIMEOUT);
                return Some(life(
                    tag,
                    CLOSING,
                    gen,
                    if expired(deadline, fin) {
                        deadline
                    } else {
                        fin
                    },
                ));
            }
            if flags & TCP_FIN != 0 || state == CLOSING {
                return set(CLOSING, TCP_FIN_TIMEOUT);
            }
            set(CONFIRMED, TCP_TIMEOUT)
        }
    }
}

fn unconfirmed_timeout(tcp: bool) -> u32 {
    if tcp {
        TCP_UNCONFIRMED_TIMEOUT
    } else {
        UDP_TIMEOUT
    }
}

/// One slot (see the module documentation).
pub(crate) struct Slot {
    life: AtomicU64,
    pin: AtomicU64,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            life: AtomicU64::new(0),
            pin: AtomicU64::new(0),
        }
    }
}

/// The flow table over caller-provided slots (a multiple of [`WAYS`],
/// a power of two buckets).
pub(crate) struct FlowTable<S> {
    slots: S,
    key: [u64; 2],
}

impl<S: core::ops::Deref<Target = [Slot]>> FlowTable<S> {
    /// A table over `slots` with the hash key `key` (random per namespace,
    /// so that nobody can aim flows at one bucket).  `None` unless the
    /// number of buckets is a non-zero power of two.
    pub(crate) fn new(slots: S, key: [u64; 2]) -> Option<Self> {
        let buckets = slots.len() / WAYS;
        if !slots.len().is_multiple_of(WAYS) || !buckets.is_power_of_two() {
            return None;
        }
        Some(Self { slots, key })
    }

    fn bucket(&self, k: &FlowKey) -> (&[Slot], u32) {
        let h = self.hash(k);
        let buckets = self.slots.len() / WAYS;
        let b = (h as usize) & (buckets - 1);
        // Tag 0 marks a never-used slot.
        let tag = ((h >> 32) as u32).max(1);
        (&self.slots[b * WAYS..(b + 1) * WAYS], tag)
    }

    fn hash(&self, k: &FlowKey) -> u64 {
        let mut words = [0u64; 3];
        words[0] = u64::from(k.proto)
            | u64::from(k.family.code()) << 8
            | u64::from(k.fixed) << 16
            | u64::from(k.port) << 32;
        words[1] = u64::from_le_bytes([
            k.addr[0], k.addr[1], k.addr[2], k.addr[3], k.addr[4], k.addr[5], k.addr[6], k.addr[7],
        ]);
        words[2] = u64::from_le_bytes([
            k.addr[8], k.addr[9], k.addr[10], k.addr[11], k.addr[12], k.addr[13], k.addr[14],
            k.addr[15],
        ]);
        // An IPv4 address fills words[1] alone: the third word would be
        // a constant zero, and a round of work per packet.
        let n = if k.family == Family::V4 { 2 } else { 3 };
        siphash13(self.key, &words[..n])
    }

    /// A consistent reading of slot `s` for `tag`: its `life` and pin.
    fn read(s: &Slot, tag: u32, now: u32) -> Option<(u64, Pin)> {
        let l = s.life.load(Ordering::Acquire);
        if !live_for(l, tag, now) {
            return None;
        }
        let p = s.pin.load(Ordering::Acquire);
        // A new owner claims `life` (a new generation) before it writes
        // `pin`: if `pin` is newer than `l`, this load differs from `l`.
        let l2 = s.life.load(Ordering::Acquire);
        (l2 == l).then_some((l, Pin::unpack(p)))
    }

    /// The live pin of `k` at time `now`, and its slot.
    fn find(&self, k: &FlowKey, now: u32) -> Option<(&Slot, u32, Pin, u64)> {
        let (bucket, tag) = self.bucket(k);
        bucket
            .iter()
            .find_map(|s| Self::read(s, tag, now).map(|(l, p)| (s, tag, p, l)))
    }

    /// The live pin of `k`, if any (for the tests; the packet path uses
    /// [`FlowTable::pinned`]).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn lookup(&self, k: &FlowKey, now: u32) -> Option<Pin> {
        self.find(k, now).map(|(_, _, p, _)| p)
    }

    /// The live pin of `k` with its slot, which [`Pinned::touch`] then
    /// refreshes without hashing and searching the bucket again (the
    /// packet path's lookup-then-touch).
    pub(crate) fn pinned(&self, k: &FlowKey, now: u32) -> Option<Pinned<'_>> {
        self.find(k, now).map(|(slot, tag, pin, life)| Pinned {
            slot,
            tag,
            pin,
            life,
            now,
        })
    }

    /// The live pin of `k` and where it stands (for the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn lookup_state(&self, k: &FlowKey, now: u32) -> Option<(Pin, PinState)> {
        self.find(k, now).map(|(_, _, p, l)| {
            let state = match state_of(l) {
                CONFIRMED => PinState::Confirmed,
                CLOSING => PinState::Closing,
                _ => PinState::Unconfirmed,
            };
            (p, state)
        })
    }

    /// Records a packet of a pinned flow (see the module documentation
    /// for what each side's packets do).  Returns whether `k` was pinned.
    /// (For the tests; the packet path touches through [`Pinned`].)
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn touch(&self, k: &FlowKey, now: u32, seen: Seen) -> bool {
        self.pinned(k, now).is_some_and(|p| p.touch(now, seen))
    }

    /// Pins `k` to `pin` (unconfirmed) from `now` on.  The caller found no
    /// usable pin for `k`: none, or `dead`, whose allocation is gone.
    pub(crate) fn insert(
        &self,
        k: &FlowKey,
        pin: Pin,
        dead: Option<Pin>,
        now: u32,
        tcp: bool,
    ) -> Inserted {
        let (bucket, tag) = self.bucket(k);
        // Preference (lower first): the flow's own dead pin, a free slot,
        // an expired one, the unconfirmed or closing one closest to
        // expiry, an idle confirmed one.  Busy confirmed and claimed
        // slots are never taken.
        let mut best: Option<(&Slot, u64, Inserted, (u8, u32))> = None;
        for s in bucket {
            let l = s.life.load(Ordering::Acquire);
            let (dl, state) = (deadline_of(l), state_of(l));
            let left = remaining(dl, now);
            let choice = if l == 0 {
                (Inserted::Free, 1)
            } else if state == CLAIMED {
                if tag_of(l) == tag {
                    // Another CPU is pinning this very flow.
                    return Inserted::Raced;
                }
                continue;
            } else if tag_of(l) == tag {
                if left > 0 && dead != Some(Pin::unpack(s.pin.load(Ordering::Acquire))) {
                    // Another CPU pinned this flow since the caller looked.
                    return Inserted::Raced;
                }
                (Inserted::Expired, 0)
            } else if left == 0 {
                (Inserted::Expired, 2)
            } else if state != CONFIRMED {
                (Inserted::Evicted, 3)
            } else if left <= TCP_TIMEOUT - CONFIRMED_IDLE_EVICT {
                (Inserted::Evicted, 4)
            } else {
                continue;
            };
            let order = (choice.1, left);
            if best.as_ref().is_none_or(|b| order < b.3) {
                best = Some((s, l, choice.0, order));
            }
        }
        let Some((slot, old, kind, _)) = best else {
            return Inserted::Full;
        };
        // Claim: from here on nobody else writes the slot.
        let gen = gen_of(old) + 1;
        if slot
            .life
            .compare_exchange(
                old,
                life(tag, CLAIMED, gen, 0),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Inserted::Raced;
        }
        slot.pin.store(pin.pack(), Ordering::Release);
        let deadline = now.wrapping_add(unconfirmed_timeout(tcp));
        slot.life
            .store(life(tag, UNCONFIRMED, gen, deadline), Ordering::Release);
        kind
    }

    /// Number of live flows at `now` (control plane: walks every slot).
    pub(crate) fn live(&self, now: u32) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                let l = s.life.load(Ordering::Relaxed);
                l != 0 && state_of(l) != CLAIMED && !expired(deadline_of(l), now)
            })
            .count()
    }
}

/// A flow's pin found by [`FlowTable::pinned`], with its slot.
pub(crate) struct Pinned<'a> {
    slot: &'a Slot,
    tag: u32,
    /// The pin.
    pub(crate) pin: Pin,
    /// The slot's life word, as the lookup read it at time `now`.
    life: u64,
    now: u32,
}

impl Pinned<'_> {
    /// Whether the pin was confirmed by its instance (and is not closing).
    pub(crate) fn confirmed(&self) -> bool {
        state_of(self.life) == CONFIRMED
    }

    /// Records a packet of the flow (see [`FlowTable::touch`]).  A packet
    /// that changes the slot reads it again: if it changed hands since it
    /// was found, nothing changes, as when [`FlowTable::touch`] finds no
    /// pin.  One that changes nothing takes effect at the lookup and
    /// returns true, even if the pin ended since.
    pub(crate) fn touch(&self, now: u32, seen: Seen) -> bool {
        // A packet that changes nothing (most of a flow's packets: the
        // deadline is current and the state stays) takes effect at the
        // lookup, which just read the slot: no second read.
        if now == self.now
            && next_life(self.life, self.pin, seen, now).is_none_or(|new| new == self.life)
        {
            return true;
        }
        // A CAS fails only when another CPU changed the slot meanwhile;
        // a few tries cover concurrent packets of the same flow.
        for _ in 0..4 {
            let Some((l, pin)) = FlowTable::<&[Slot]>::read(self.slot, self.tag, now) else {
                // Ended, expired or taken over meanwhile: not ours to touch.
                return false;
            };
            let Some(new) = next_life(l, pin, seen, now) else {
                return true;
            };
            if new == l {
                // Nothing changes: spare the cache line a write.
                return true;
            }
            if self
                .slot
                .life
                .compare_exchange(l, new, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
        true
    }
}

/// SipHash-1-3 of `words` (little-endian), as the kernel's `siphash()`
/// family computes it for 64-bit words.
fn siphash13(key: [u64; 2], words: &[u64]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f6d6570736575,
        key[1] ^ 0x646f72616e646f6d,
        key[0] ^ 0x6c7967656e657261,
        key[1] ^ 0x7465646279746573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    for &m in words {
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    let b = ((words.len() as u64 * 8) & 0xff) << 56;
    v[3] ^= b;
    round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..3 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}
