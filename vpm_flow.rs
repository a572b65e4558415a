// SPDX-License-Identifier: GPL-2.0

//! Flow pinning: the translation chosen for a flow's first packet is
//! recorded, so that a later rule change does not move an established
//! TCP connection or an active UDP flow to another instance (the patent
//! records the translation per connection).
//!
//! Pure `core` (atomics included), like `vpm_csum.rs`: the module and the
//! host tests compile this same file.
//!
//! The table is a fixed array of slots, allocated once per namespace by
//! the control plane; the packet path never allocates and never takes a
//! lock.  Slots are grouped in buckets of [`WAYS`]; a flow's keyed hash
//! picks the bucket and a 32-bit tag identifies it within.  A slot is one
//! atomic word (tag, anonymous port, allocation id) plus an atomic
//! deadline, in seconds:
//!
//! - lookup: compare the tags of one bucket; a slot past its deadline is
//!   free.
//! - insert (first packet of a flow): take a free slot, else an expired
//!   one, else evict the one closest to expiry (counted); a lost race
//!   leaves the flow unpinned (translated statelessly, counted).  Nothing
//!   can fail the packet.
//! - every translated packet pushes the deadline out; TCP FIN shortens
//!   it, RST ends it.
//!
//! A slot names the allocation it pinned (anonymous port and allocation
//! id); the packet path checks that the allocation still exists before
//! using it, so releasing an allocation ends its flows.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots per bucket.
pub(crate) const WAYS: usize = 4;
/// Idle timeout of a UDP flow, in seconds.
pub(crate) const UDP_TIMEOUT: u32 = 60;
/// Idle timeout of a TCP connection, in seconds.
pub(crate) const TCP_TIMEOUT: u32 = 7200;
/// How long a TCP connection stays pinned after a FIN, in seconds.
pub(crate) const TCP_FIN_TIMEOUT: u32 = 10;

/// TCP flag bits (byte 13 of the header).
pub(crate) const TCP_FIN: u8 = 0x01;
/// SYN.
pub(crate) const TCP_SYN: u8 = 0x02;
/// RST.
pub(crate) const TCP_RST: u8 = 0x04;
/// ACK.
pub(crate) const TCP_ACK: u8 = 0x10;

/// What identifies a flow: the client's side and the fixed port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowKey {
    /// IP protocol number.
    pub(crate) proto: u8,
    /// 4 or 6.
    pub(crate) family: u8,
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
    /// Low bits of the allocation's id.
    pub(crate) id: u16,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Into a free slot.
    Free,
    /// Over a slot whose flow had expired.
    Expired,
    /// Over a live flow: the bucket was full.
    Evicted,
    /// Lost a race with another CPU: the flow stays unpinned.
    Raced,
}

/// One slot.
#[derive(Default)]
pub(crate) struct Slot {
    /// tag << 32 | anon << 16 | id; 0 when never used.
    word: AtomicU64,
    /// Second (on the caller's clock) after which the slot is free.
    deadline: AtomicU32,
}

/// `now` is past `deadline` (wrapping seconds).
fn expired(deadline: u32, now: u32) -> bool {
    (now.wrapping_sub(deadline) as i32) > 0
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
        words[0] = u64::from(k.proto) | u64::from(k.family) << 8 | u64::from(k.fixed) << 16 | u64::from(k.port) << 32;
        words[1] = u64::from_le_bytes([k.addr[0], k.addr[1], k.addr[2], k.addr[3], k.addr[4], k.addr[5], k.addr[6], k.addr[7]]);
        words[2] = u64::from_le_bytes([
            k.addr[8], k.addr[9], k.addr[10], k.addr[11], k.addr[12], k.addr[13], k.addr[14], k.addr[15],
        ]);
        siphash13(self.key, &words)
    }

    /// The live pin of `k` at time `now`, and its slot.
    fn find(&self, k: &FlowKey, now: u32) -> Option<(&Slot, Pin)> {
        let (bucket, tag) = self.bucket(k);
        bucket.iter().find_map(|s| {
            let w = s.word.load(Ordering::Acquire);
            if (w >> 32) as u32 != tag || expired(s.deadline.load(Ordering::Relaxed), now) {
                return None;
            }
            Some((
                s,
                Pin {
                    anon: (w >> 16) as u16,
                    id: w as u16,
                },
            ))
        })
    }

    /// The live pin of `k`, if any.
    pub(crate) fn lookup(&self, k: &FlowKey, now: u32) -> Option<Pin> {
        self.find(k, now).map(|(_, p)| p)
    }

    /// Records a packet of a pinned flow: pushes its deadline out to
    /// `now + timeout`, or, for a TCP segment with FIN or RST, shortens it.
    /// Returns whether the flow was pinned.
    pub(crate) fn touch(&self, k: &FlowKey, now: u32, timeout: u32, tcp_flags: u8) -> bool {
        let Some((slot, _)) = self.find(k, now) else {
            return false;
        };
        let deadline = if tcp_flags & TCP_RST != 0 {
            // Ended: free from the next second on.
            now.wrapping_sub(1)
        } else if tcp_flags & TCP_FIN != 0 {
            let fin = now.wrapping_add(TCP_FIN_TIMEOUT);
            let cur = slot.deadline.load(Ordering::Relaxed);
            if expired(cur, fin) { cur } else { fin }
        } else {
            now.wrapping_add(timeout)
        };
        slot.deadline.store(deadline, Ordering::Relaxed);
        true
    }

    /// Pins `k` to `pin` until `now + timeout`.
    pub(crate) fn insert(&self, k: &FlowKey, pin: Pin, now: u32, timeout: u32) -> Inserted {
        let (bucket, tag) = self.bucket(k);
        let word = u64::from(tag) << 32 | u64::from(pin.anon) << 16 | u64::from(pin.id);
        // Prefer the slot already holding this flow (a pin the caller
        // found dead), then a free one, then an expired one, then the live
        // one closest to expiry.
        let mut best: Option<(&Slot, u64, Inserted, (u8, u32))> = None;
        for s in bucket {
            let w = s.word.load(Ordering::Acquire);
            let dl = s.deadline.load(Ordering::Relaxed);
            let (kind, rank) = if (w >> 32) as u32 == tag {
                (Inserted::Expired, 0)
            } else if w == 0 {
                (Inserted::Free, 1)
            } else if expired(dl, now) {
                (Inserted::Expired, 2)
            } else {
                (Inserted::Evicted, 3)
            };
            let order = (rank, dl.wrapping_sub(now));
            if best.as_ref().is_none_or(|b| order < b.3) {
                best = Some((s, w, kind, order));
            }
        }
        let Some((slot, old, kind, _)) = best else {
            return Inserted::Raced;
        };
        // Make the slot look expired while it changes hands, so a reader
        // that sees the new word with the old deadline ignores it.
        slot.deadline.store(now.wrapping_sub(1), Ordering::Relaxed);
        if slot.word.compare_exchange(old, word, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return Inserted::Raced;
        }
        slot.deadline.store(now.wrapping_add(timeout), Ordering::Release);
        kind
    }

    /// Number of live flows at `now` (control plane: walks every slot).
    pub(crate) fn live(&self, now: u32) -> usize {
        self.slots
            .iter()
            .filter(|s| s.word.load(Ordering::Relaxed) != 0 && !expired(s.deadline.load(Ordering::Relaxed), now))
            .count()
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
