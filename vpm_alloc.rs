// SPDX-License-Identifier: GPL-2.0

//! Anonymous port allocation within a configured range.
//!
//! Pure `core`, like `vpm_csum.rs`: the module and the host tests compile
//! this same file.  The allocator is owned by the control plane (process
//! context, under the namespace's update lock); the packet path never
//! touches it.
//!
//! Allocation is next-fit over a bitmap of all 65,536 ports: a released
//! port is handed out again only after the rest of the range has been
//! used, which keeps late packets of an old flow away from a new owner.
//! One call inspects at most [`WORDS`] + 1 words of 64 ports: bounded
//! work, never a per-port scan.

use core::ops::DerefMut;

/// Number of 64-bit words covering every port number.
pub(crate) const WORDS: usize = 65536 / 64;

/// Why an allocator request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AllocError {
    /// The range is empty, starts at port 0 or is reversed.
    BadRange,
    /// Every port of the range is in use.
    Exhausted,
    /// The port lies outside the range.
    OutOfRange,
    /// The port is already allocated.
    Taken,
    /// Ports in use would fall outside the new range.
    InUseOutside,
}

/// The anonymous ports of one namespace.
///
/// The bitmap storage `B` is supplied by the caller (8 KiB: the kernel
/// allocates it on the heap, never on its small stack).
///
/// # Invariants
///
/// - `bits` holds exactly [`WORDS`] words;
/// - `lo <= hi`, `lo >= 1`;
/// - a bit is set only for ports in `lo..=hi`;
/// - `used` is the number of set bits;
/// - `cursor` is in `lo..=hi`.
pub(crate) struct PortAllocator<B> {
    bits: B,
    lo: u16,
    hi: u16,
    used: u32,
    cursor: u16,
}

impl<B: DerefMut<Target = [u64]>> PortAllocator<B> {
    /// An allocator for `lo..=hi` with nothing allocated, over `bits`
    /// ([`WORDS`] words, cleared here).
    pub(crate) fn new(mut bits: B, lo: u16, hi: u16) -> Result<Self, AllocError> {
        if lo == 0 || lo > hi || bits.len() != WORDS {
            return Err(AllocError::BadRange);
        }
        bits.fill(0);
        // INVARIANT: sizes and range checked above; no bit set; cursor at `lo`.
        Ok(Self {
            bits,
            lo,
            hi,
            used: 0,
            cursor: lo,
        })
    }

    /// The configured range.
    pub(crate) fn range(&self) -> (u16, u16) {
        (self.lo, self.hi)
    }

    /// Number of ports in the range.
    pub(crate) fn capacity(&self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }

    /// Number of ports allocated.
    pub(crate) fn in_use(&self) -> u32 {
        self.used
    }

    /// Whether `port` is allocated.
    pub(crate) fn is_used(&self, port: u16) -> bool {
        self.bits[port as usize / 64] & (1 << (port % 64)) != 0
    }

    fn set(&mut self, port: u16) {
        self.bits[port as usize / 64] |= 1 << (port % 64);
        self.used += 1;
    }

    /// Allocates the next free port at or after the cursor, wrapping once.
    pub(crate) fn alloc(&mut self) -> Result<u16, AllocError> {
        if self.used >= self.capacity() {
            return Err(AllocError::Exhausted);
        }
        let port = self
            .first_free(self.cursor, self.hi)
            .or_else(|| self.first_free(self.lo, self.cursor))
            .ok_or(AllocError::Exhausted)?;
        self.set(port);
        // INVARIANT: the next search starts after `port`, wrapping to `lo`.
        self.cursor = if port == self.hi { self.lo } else { port + 1 };
        Ok(port)
    }

    /// First free port in `from..=to`, a word of 64 ports at a time.
    fn first_free(&self, from: u16, to: u16) -> Option<u16> {
        let (mut port, to) = (u32::from(from), u32::from(to));
        while port <= to {
            let word = port as usize / 64;
            // Ports below `port` in this word count as taken.
            let below = (1u64 << (port % 64)) - 1;
            let free = !(self.bits[word] | below);
            if free != 0 {
                let found = (word as u32) * 64 + free.trailing_zeros();
                return (found <= to).then_some(found as u16);
            }
            port = (word as u32 + 1) * 64;
        }
        None
    }

    /// Allocates exactly `port` (restoring a saved allocation).
    pub(crate) fn reserve(&mut self, port: u16) -> Result<(), AllocError> {
        if port < self.lo || port > self.hi {
            return Err(AllocError::OutOfRange);
        }
        if self.is_used(port) {
            return Err(AllocError::Taken);
        }
        self.set(port);
        Ok(())
    }

    /// Frees `port`; returns whether it was allocated.
    pub(crate) fn release(&mut self, port: u16) -> bool {
        if !self.is_used(port) {
            return false;
        }
        self.bits[port as usize / 64] &= !(1 << (port % 64));
        self.used -= 1;
        true
    }

    /// Moves to range `lo..=hi`, keeping every allocation, which must all
    /// lie inside it.
    pub(crate) fn set_range(&mut self, lo: u16, hi: u16) -> Result<(), AllocError> {
        if lo == 0 || lo > hi {
            return Err(AllocError::BadRange);
        }
        let inside = self.count_in(lo, hi);
        if inside != self.used {
            return Err(AllocError::InUseOutside);
        }
        // INVARIANT: all set bits lie in the new range; the cursor is
        // clamped into it.
        self.lo = lo;
        self.hi = hi;
        self.cursor = self.cursor.clamp(lo, hi);
        Ok(())
    }

    /// Number of allocated ports in `lo..=hi`.
    fn count_in(&self, lo: u16, hi: u16) -> u32 {
        let mut n = 0;
        let mut port = u32::from(lo);
        while port <= u32::from(hi) {
            let word = port as usize / 64;
            let first = port % 64;
            let last = (u32::from(hi) - (word as u32) * 64).min(63);
            let width = last - first + 1;
            let mask = if width == 64 {
                u64::MAX
            } else {
                ((1u64 << width) - 1) << first
            };
            n += (self.bits[word] & mask).count_ones();
            port = (word as u32 + 1) * 64;
        }
        n
    }
}
