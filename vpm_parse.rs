// SPDX-License-Identifier: GPL-2.0

//! IPv4/IPv6 + TCP/UDP header parsing for the packet path.
//!
//! Pure `core`, like `vpm_csum.rs`: the module and the host tests compile
//! this same file.  The packet is reached through [`Packet`], which copies
//! bytes out (the kernel implements it with `skb_copy_bits`, the host
//! tests with a slice), so a truncated or non-linear packet can never make
//! the parser read out of bounds.  Offsets are from the network header.
//!
//! The parser decides only what a packet is; what to do with it is
//! `vpm_nf.rs`'s business.

use crate::vpm_rules::Family;

/// Read access to a packet, from its network header on.
pub(crate) trait Packet {
    /// Bytes from the network header to the end of the packet.
    fn len(&self) -> usize;
    /// Copies `buf.len()` bytes from offset `off`; false if out of bounds.
    fn read(&self, off: usize, buf: &mut [u8]) -> bool;
}

impl Packet for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        match off.checked_add(buf.len()).and_then(|end| self.get(off..end)) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// IP protocol numbers vpm translates.
pub(crate) const IPPROTO_TCP: u8 = 6;
/// UDP.
pub(crate) const IPPROTO_UDP: u8 = 17;

/// Most IPv6 extension headers walked before giving up.
pub(crate) const MAX_EXT_HEADERS: usize = 8;

/// A TCP or UDP packet whose ports (and checksum field) are present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flow {
    /// `V4` or `V6`.
    pub(crate) family: Family,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub(crate) proto: u8,
    /// Source address (IPv4 in the first 4 bytes).
    pub(crate) src: [u8; 16],
    /// Destination address (IPv4 in the first 4 bytes).
    pub(crate) dst: [u8; 16],
    /// Offset of the transport header.
    pub(crate) l4: usize,
    /// Source port.
    pub(crate) sport: u16,
    /// Destination port.
    pub(crate) dport: u16,
    /// The transport checksum field.
    pub(crate) check: u16,
}

impl Flow {
    /// Offset of the source port field.
    pub(crate) fn sport_off(&self) -> usize {
        self.l4
    }

    /// Offset of the destination port field.
    pub(crate) fn dport_off(&self) -> usize {
        self.l4 + 2
    }

    /// Offset of the checksum field.
    pub(crate) fn check_off(&self) -> usize {
        self.l4 + if self.proto == IPPROTO_TCP { 16 } else { 6 }
    }

    /// Bytes that must be present (and writable) to rewrite a port and
    /// the checksum: everything up to the end of the checksum field.
    pub(crate) fn write_len(&self) -> usize {
        self.check_off() + 2
    }
}

/// What a packet is, as far as vpm cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// TCP or UDP with complete ports and checksum.
    Flow(Flow),
    /// Another protocol (ICMP, SCTP, ESP, ...): not vpm's business.
    Other,
    /// A non-first fragment: no transport header to look at.
    Fragment,
    /// Headers that cannot be parsed safely (truncated, bad lengths, a
    /// too-long extension chain).
    Malformed,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses an IPv4 packet.
pub(crate) fn ipv4<P: Packet + ?Sized>(p: &P) -> Parsed {
    let mut h = [0u8; 20];
    if !p.read(0, &mut h) || h[0] >> 4 != 4 {
        return Parsed::Malformed;
    }
    let ihl = usize::from(h[0] & 0xf) * 4;
    // A zero total length is how BIG TCP marks a GSO packet over 64 KiB;
    // the packet's own length stands in for it.
    let tot = match usize::from(be16(&h, 2)) {
        0 if p.len() > 0xffff => p.len(),
        t => t,
    };
    if ihl < 20 || tot < ihl || tot > p.len() {
        return Parsed::Malformed;
    }
    if be16(&h, 6) & 0x1fff != 0 {
        return Parsed::Fragment;
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src[..4].copy_from_slice(&h[12..16]);
    dst[..4].copy_from_slice(&h[16..20]);
    transport(p, Family::V4, h[9], ihl, tot, src, dst)
}

/// Parses an IPv6 packet, walking its extension headers.
pub(crate) fn ipv6<P: Packet + ?Sized>(p: &P) -> Parsed {
    let mut h = [0u8; 40];
    if !p.read(0, &mut h) || h[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let end = match usize::from(be16(&h, 4)) {
        // BIG TCP GSO packet (or a jumbogram, RFC 2675): use the real length.
        0 if p.len() > 0xffff + 40 => p.len(),
        n => 40 + n,
    };
    if end > p.len() {
        return Parsed::Malformed;
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let mut off = 40;
    for _ in 0..MAX_EXT_HEADERS {
        let mut e = [0u8; 8];
        match next {
            IPPROTO_TCP | IPPROTO_UDP => return transport(p, Family::V6, next, off, end, src, dst),
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                if off + 2 > end || !p.read(off, &mut e[..2]) {
                    return Parsed::Malformed;
                }
                next = e[0];
                off += (usize::from(e[1]) + 1) * 8;
            }
            // Fragment header: 8 bytes; only the first fragment has ports.
            44 => {
                if off + 8 > end || !p.read(off, &mut e) {
                    return Parsed::Malformed;
                }
                if be16(&e, 2) & 0xfff8 != 0 {
                    return Parsed::Fragment;
                }
                next = e[0];
                off += 8;
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                if off + 2 > end || !p.read(off, &mut e[..2]) {
                    return Parsed::Malformed;
                }
                next = e[0];
                off += (usize::from(e[1]) + 2) * 4;
            }
            // ESP, no next header, ICMPv6, anything else.
            _ => return Parsed::Other,
        }
    }
    Parsed::Malformed
}

/// Reads the transport header at `l4`, which must end by `end`.
fn transport<P: Packet + ?Sized>(
    p: &P,
    family: Family,
    proto: u8,
    l4: usize,
    end: usize,
    src: [u8; 16],
    dst: [u8; 16],
) -> Parsed {
    let need = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        _ => return Parsed::Other,
    };
    let mut t = [0u8; 20];
    if l4 + need > end || !p.read(l4, &mut t[..need]) {
        return Parsed::Malformed;
    }
    let check_at = if proto == IPPROTO_TCP {
        // The data offset must at least cover the fixed header.
        if t[12] >> 4 < 5 {
            return Parsed::Malformed;
        }
        16
    } else {
        6
    };
    Parsed::Flow(Flow {
        family,
        proto,
        src,
        dst,
        l4,
        sport: be16(&t, 0),
        dport: be16(&t, 2),
        check: be16(&t, check_at),
    })
}
