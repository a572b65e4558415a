// SPDX-License-Identifier: GPL-2.0

//! Internet checksum arithmetic (RFC 1071, RFC 1624) on plain integers.
//!
//! This file depends only on `core`: the kernel module compiles it as a
//! module and the host test crate (`tests/host`) compiles the very same
//! file, so the arithmetic the packet path relies on is property-tested on
//! the host and checked again inside the kernel by KUnit (`vpm_kunit.rs`).
//!
//! All 16-bit values are the numeric value of a big-endian wire field, e.g.
//! `u16::from_be_bytes([hdr[2], hdr[3]])` for a destination port.

/// Folds a one's-complement accumulator into 16 bits (end-around carry).
pub(crate) const fn fold(sum: u64) -> u16 {
    let mut s = sum;
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Adds `data` as big-endian 16-bit words to a one's-complement
/// accumulator; an odd trailing byte is padded with a zero byte.
pub(crate) fn sum_bytes(data: &[u8], initial: u64) -> u64 {
    let mut sum = initial;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// The checksum field value that makes `data` (with the field zeroed)
/// plus `initial` (e.g. a pseudo-header sum) verify.
pub(crate) fn checksum(data: &[u8], initial: u64) -> u16 {
    !fold(sum_bytes(data, initial))
}

/// Updates checksum field `check` after one covered 16-bit word changed
/// from `old` to `new`.
///
/// This is RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`, the arithmetic of
/// the kernel's `csum_replace2()`: unlike equation 2 it never produces the
/// negative zero that a receiver would reject.
pub(crate) const fn replace2(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u64 + !old as u64 + new as u64)
}

/// [`replace2`] for a UDP checksum field, IPv4 or IPv6: a computed zero
/// is sent as `0xffff` (RFC 768; over IPv6 a zero checksum is invalid,
/// RFC 8200, and receivers drop the datagram), and a zero that arrived
/// stays zero ("no checksum", which only UDP over IPv4 may carry: the
/// packet path never rewrites UDP over IPv6 with a zero checksum).
/// This is what `nf_nat_proto.c` does for UDP of both families.
pub(crate) const fn replace2_udp(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        return 0;
    }
    match replace2(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}
