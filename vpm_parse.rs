// SPDX-License-Identifier: GPL-2.0

//! IPv4/IPv6 + TCP/UDP header parsing for the packet path.
//!
//! Pure `core`, like `vpm_csum.rs`: the module and the host tests compile
//! this same file.  The packet is reached through [`Packet`], which copies
//! bytes out (the kernel implements it from the skb's linear part, else
//! with `skb_copy_bits`; the host tests with a slice), so a truncated or
//! non-linear packet can never make the parser read out of bounds; the
//! common case reads the linear part in place, through bounds-checked
//! slices.  Offsets are from the network header.
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
    /// The bytes from the network header on that can be read in place
    /// (the skb's linear part): a prefix of the packet, possibly empty.
    fn in_place(&self) -> &[u8];
}

impl Packet for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        match off
            .checked_add(buf.len())
            .and_then(|end| self.get(off..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    fn in_place(&self) -> &[u8] {
        self
    }
}

/// IP protocol numbers vpm translates.
pub(crate) const IPPROTO_TCP: u8 = 6;
/// UDP.
pub(crate) const IPPROTO_UDP: u8 = 17;

/// Most headers read in an IPv6 chain before giving up, the transport
/// header included: a chain of 7 extension headers is walked, one of 8 is
/// malformed (tests/vm/lib/corpus.py: `v6-chain-7`, `v6-chain-8`).
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
    /// TCP flags (byte 13 of the header); 0 for UDP and quoted packets.
    pub(crate) tcp_flags: u8,
    /// Where the packet ends up: `dst`, or further on when an IPv6
    /// routing header has segments left.
    pub(crate) route: Route,
}

/// The final destination of a packet whose IPv6 routing header has
/// segments left (RFC 8200 section 4.4): `dst` is then only the next
/// waypoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// No segments left (or no routing header): `dst` is the destination.
    Direct,
    /// The last segment of a segment routing header (type 4), or the home
    /// address of a Mobile IPv6 one (type 2).
    To([u8; 16]),
    /// Another type (0 is deprecated, 3 is RPL's compressed form), or an
    /// address that is not all there (a quote cut short).
    Unknown,
}

impl Flow {
    /// The final destination, when it is known: the peer of an outbound
    /// packet, or this host for an inbound one.
    pub(crate) fn final_dst(&self) -> Option<[u8; 16]> {
        match self.route {
            Route::Direct => Some(self.dst),
            Route::To(a) => Some(a),
            Route::Unknown => None,
        }
    }

    /// The peer a packet this host sends goes to: the final destination,
    /// `dst` when that is unknown.
    pub(crate) fn peer(&self) -> [u8; 16] {
        self.final_dst().unwrap_or(self.dst)
    }

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

    /// The transport checksum after one of the ports changed from `old`
    /// to `new` (`inet_proto_csum_replace2` semantics with
    /// `pseudohdr=false`): UDP, of either family, never carries a
    /// computed zero, and a UDP/IPv4 zero ("no checksum") stays zero.
    pub(crate) fn port_check(&self, old: u16, new: u16) -> u16 {
        if self.proto == IPPROTO_UDP {
            crate::vpm_csum::replace2_udp(self.check, old, new)
        } else {
            crate::vpm_csum::replace2(self.check, old, new)
        }
    }

    /// UDP over IPv6 without a checksum: invalid (RFC 8200), so vpm never
    /// translates it (and never invents a checksum for it).
    pub(crate) fn is_udp6_without_checksum(&self) -> bool {
        self.family == Family::V6 && self.proto == IPPROTO_UDP && self.check == 0
    }
}

/// An ICMP or ICMPv6 error message quoting a TCP or UDP packet.
///
/// `inner` describes the quoted packet; its `check` is meaningful only
/// when `inner_check` is true (a quote may stop after the ports: RFC 792
/// only guarantees 8 bytes of the transport header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IcmpError {
    /// The error's own destination address (IPv4 in the first 4 bytes).
    pub(crate) dst: [u8; 16],
    /// Where the error ends up (see [`Flow::route`]).
    pub(crate) route: Route,
    /// Offset of the ICMP checksum field.
    pub(crate) check_off: usize,
    /// The ICMP checksum field.
    pub(crate) check: u16,
    /// The quoted packet.
    pub(crate) inner: Flow,
    /// Whether the quoted packet's checksum field is present.
    pub(crate) inner_check: bool,
}

impl IcmpError {
    /// Bytes that must be present (and writable) to rewrite the quoted
    /// ports and checksum.
    pub(crate) fn write_len(&self) -> usize {
        if self.inner_check {
            self.inner.write_len()
        } else {
            self.inner.l4 + 4
        }
    }
}

/// What a packet is, as far as vpm cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// TCP or UDP with complete ports and checksum.
    Flow(Flow),
    /// An ICMP/ICMPv6 error about a TCP or UDP packet.
    IcmpError(IcmpError),
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

/// IP protocol number of ICMP.
pub(crate) const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of ICMPv6.
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

/// Parses an IPv4 packet.
pub(crate) fn ipv4<P: Packet + ?Sized>(p: &P) -> Parsed {
    match plain_ipv4(p.in_place(), p.len()) {
        Some(flow) => Parsed::Flow(flow),
        None => ipv4_general(p),
    }
}

/// [`ipv4`] without its shortcut for the common case.
pub(crate) fn ipv4_general<P: Packet + ?Sized>(p: &P) -> Parsed {
    let (proto, l4, end, src, dst) = match ipv4_header(p, 0, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    if proto == IPPROTO_ICMP {
        return icmp(p, Family::V4, l4, end, dst, Route::Direct);
    }
    transport(p, Family::V4, proto, l4, end, src, dst, false)
}

/// Parses an IPv6 packet, walking its extension headers.
pub(crate) fn ipv6<P: Packet + ?Sized>(p: &P) -> Parsed {
    match plain_ipv6(p.in_place(), p.len()) {
        Some(flow) => Parsed::Flow(flow),
        None => ipv6_general(p),
    }
}

/// [`ipv6`] without its shortcut for the common case.
pub(crate) fn ipv6_general<P: Packet + ?Sized>(p: &P) -> Parsed {
    let ((proto, l4, end, src, dst), route) = match ipv6_header(p, 0, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    if proto == IPPROTO_ICMPV6 {
        return icmp(p, Family::V6, l4, end, dst, route);
    }
    match transport(p, Family::V6, proto, l4, end, src, dst, false) {
        Parsed::Flow(f) => Parsed::Flow(Flow { route, ..f }),
        r => r,
    }
}

// The common case, read in place: an unfragmented TCP or UDP datagram
// with an option-less IPv4 header, or an IPv6 header followed directly by
// TCP or UDP, whose headers are all in the linear part.  It returns what
// the general parser below returns for the same packet (the host tests
// hold it to that), or `None` for anything else, which the general parser
// then reads: copying each header out and walking options and extension
// headers cost most of a table miss's time (the micro-benchmark's parse
// part).

/// [`ipv4`]'s common case; `len` is the packet's length.
pub(crate) fn plain_ipv4(b: &[u8], len: usize) -> Option<Flow> {
    let h = b.get(..20)?;
    let tot = usize::from(be16(h, 2));
    // 0x45: version 4, no options.  A zero total length (BIG TCP) and
    // fragments take the general path.
    if h[0] != 0x45 || tot == 0 || tot > len || be16(h, 6) & 0x1fff != 0 {
        return None;
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src[..4].copy_from_slice(&h[12..16]);
    dst[..4].copy_from_slice(&h[16..20]);
    plain_transport(b, Family::V4, h[9], 20, tot, src, dst)
}

/// [`ipv6`]'s common case; `len` is the packet's length.
pub(crate) fn plain_ipv6(b: &[u8], len: usize) -> Option<Flow> {
    let h = b.get(..40)?;
    let payload = usize::from(be16(h, 4));
    // A zero payload length (BIG TCP, jumbograms) takes the general path.
    if h[0] >> 4 != 6 || payload == 0 || 40 + payload > len {
        return None;
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    plain_transport(b, Family::V6, h[6], 40, 40 + payload, src, dst)
}

/// [`transport`] for an unquoted TCP or UDP header at `l4`, in place.
fn plain_transport(
    b: &[u8],
    family: Family,
    proto: u8,
    l4: usize,
    end: usize,
    src: [u8; 16],
    dst: [u8; 16],
) -> Option<Flow> {
    let (full, check_at) = match proto {
        IPPROTO_TCP => (20, 16),
        IPPROTO_UDP => (8, 6),
        _ => return None,
    };
    if l4 + full > end {
        return None;
    }
    let t = b.get(l4..l4 + full)?;
    // A TCP data offset must at least cover the fixed header.
    if proto == IPPROTO_TCP && t[12] >> 4 < 5 {
        return None;
    }
    Some(Flow {
        family,
        proto,
        src,
        dst,
        l4,
        sport: be16(t, 0),
        dport: be16(t, 2),
        check: be16(t, check_at),
        tcp_flags: if proto == IPPROTO_TCP { t[13] } else { 0 },
        route: Route::Direct,
    })
}

/// (protocol, transport offset, end of the datagram, source, destination).
type Header = (u8, usize, usize, [u8; 16], [u8; 16]);

/// The IPv4 header at `at`.  A `quoted` header (inside an ICMP error) may
/// announce more bytes than the quote holds.
fn ipv4_header<P: Packet + ?Sized>(p: &P, at: usize, quoted: bool) -> Result<Header, Parsed> {
    let mut h = [0u8; 20];
    if !p.read(at, &mut h) || h[0] >> 4 != 4 {
        return Err(Parsed::Malformed);
    }
    let ihl = usize::from(h[0] & 0xf) * 4;
    let avail = p.len() - at;
    // A zero total length is how BIG TCP marks a GSO packet over 64 KiB;
    // the packet's own length stands in for it.
    let tot = match usize::from(be16(&h, 2)) {
        0 if avail > 0xffff => avail,
        t if quoted => t.min(avail),
        t => t,
    };
    if ihl < 20 || tot < ihl || tot > avail {
        return Err(Parsed::Malformed);
    }
    if be16(&h, 6) & 0x1fff != 0 {
        return Err(Parsed::Fragment);
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src[..4].copy_from_slice(&h[12..16]);
    dst[..4].copy_from_slice(&h[16..20]);
    Ok((h[9], at + ihl, at + tot, src, dst))
}

/// The IPv6 header at `at` and its extension headers, and where the
/// packet ends up.
fn ipv6_header<P: Packet + ?Sized>(
    p: &P,
    at: usize,
    quoted: bool,
) -> Result<(Header, Route), Parsed> {
    let mut h = [0u8; 40];
    if !p.read(at, &mut h) || h[0] >> 4 != 6 {
        return Err(Parsed::Malformed);
    }
    let avail = p.len() - at;
    let end = match usize::from(be16(&h, 4)) {
        // BIG TCP GSO packet (or a jumbogram, RFC 2675): use the real length.
        0 if avail > 0xffff + 40 => avail,
        n if quoted => (40 + n).min(avail),
        n => 40 + n,
    };
    if end > avail {
        return Err(Parsed::Malformed);
    }
    let end = at + end;
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let mut off = at + 40;
    let mut route = Route::Direct;
    for _ in 0..MAX_EXT_HEADERS {
        let mut e = [0u8; 8];
        match next {
            // Routing: (len + 1) * 8 bytes.
            43 => {
                if off + 4 > end || !p.read(off, &mut e[..4]) {
                    return Err(Parsed::Malformed);
                }
                // Linux acts on the first header with segments left; a
                // second one is only read once the first is used up.
                if e[3] != 0 {
                    route = match route {
                        Route::Direct => routing_final(p, off, e[1], e[2], e[3], end),
                        _ => Route::Unknown,
                    };
                }
                next = e[0];
                off += (usize::from(e[1]) + 1) * 8;
            }
            // Hop-by-hop, destination options: (len + 1) * 8 bytes.
            0 | 60 => {
                if off + 2 > end || !p.read(off, &mut e[..2]) {
                    return Err(Parsed::Malformed);
                }
                next = e[0];
                off += (usize::from(e[1]) + 1) * 8;
            }
            // Fragment header: 8 bytes; only the first fragment has ports.
            44 => {
                if off + 8 > end || !p.read(off, &mut e) {
                    return Err(Parsed::Malformed);
                }
                if be16(&e, 2) & 0xfff8 != 0 {
                    return Err(Parsed::Fragment);
                }
                next = e[0];
                off += 8;
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                if off + 2 > end || !p.read(off, &mut e[..2]) {
                    return Err(Parsed::Malformed);
                }
                next = e[0];
                off += (usize::from(e[1]) + 2) * 4;
            }
            // The upper layer (or ESP, no next header: not ours to read).
            _ => return Ok(((next, off, end, src, dst), route)),
        }
    }
    Err(Parsed::Malformed)
}

/// The final destination named by the routing header at `off` (of
/// `len` 8-byte units after the first, of routing type `kind`), which has
/// `left` segments left, when that is the only address still to visit.
/// Type 4 (RFC 8754) lists segments last first, so the final one is the
/// first address, right after the 8-byte fixed part; with more than one
/// left the packet visits others first, and whether it stays on this host
/// depends on each of them (`Unknown`).  A type 2 header (RFC 6275) holds
/// one address, the home address, in the same place.  Anything Linux
/// refuses (Segments Left past the list, a malformed type 2) is `Unknown`.
fn routing_final<P: Packet + ?Sized>(
    p: &P,
    off: usize,
    len: u8,
    kind: u8,
    left: u8,
    end: usize,
) -> Route {
    let mut a = [0u8; 16];
    let fits = len >= 2 && off + 24 <= end;
    let one_left = match kind {
        2 => len == 2 && left == 1,
        4 => left == 1 && left < len / 2,
        _ => false,
    };
    if one_left && fits && p.read(off + 8, &mut a) {
        Route::To(a)
    } else {
        Route::Unknown
    }
}

/// An ICMP(v6) message at `l4`: an error quoting TCP/UDP, or `Other`.
fn icmp<P: Packet + ?Sized>(
    p: &P,
    family: Family,
    l4: usize,
    end: usize,
    outer_dst: [u8; 16],
    outer_route: Route,
) -> Parsed {
    let mut h = [0u8; 4];
    if l4 + 8 > end || !p.read(l4, &mut h) {
        return Parsed::Malformed;
    }
    let error = match family {
        // Destination unreachable, time exceeded, parameter problem.
        Family::V4 => matches!(h[0], 3 | 11 | 12),
        // Destination unreachable, packet too big, time exceeded,
        // parameter problem.
        _ => matches!(h[0], 1..=4),
    };
    if !error {
        return Parsed::Other;
    }
    let quote = l4 + 8;
    // The quote is a prefix of a packet: read it within this datagram.
    let inner = Window { p, end };
    let hdr = match family {
        Family::V4 => ipv4_header(&inner, quote, true).map(|h| (h, Route::Direct)),
        _ => ipv6_header(&inner, quote, true),
    };
    let ((proto, il4, iend, src, dst), route) = match hdr {
        Ok(h) => h,
        // A quoted fragment or an unparsable quote: nothing to translate.
        Err(_) => return Parsed::Other,
    };
    match transport(&inner, family, proto, il4, iend, src, dst, true) {
        Parsed::Flow(f) => Parsed::IcmpError(IcmpError {
            dst: outer_dst,
            route: outer_route,
            check_off: l4 + 2,
            check: be16(&h, 2),
            inner: Flow { route, ..f },
            inner_check: f.write_len() <= iend,
        }),
        _ => Parsed::Other,
    }
}

/// A packet cut at `end` (an ICMP message's end, for its quote).
struct Window<'a, P: ?Sized> {
    p: &'a P,
    end: usize,
}

impl<P: Packet + ?Sized> Packet for Window<'_, P> {
    fn len(&self) -> usize {
        self.end.min(self.p.len())
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        off.checked_add(buf.len()).is_some_and(|e| e <= self.len()) && self.p.read(off, buf)
    }

    fn in_place(&self) -> &[u8] {
        let b = self.p.in_place();
        &b[..self.end.min(b.len())]
    }
}

/// Reads the transport header at `l4`, which must end by `end`.  A
/// `quoted` header needs only its ports (its checksum field, if cut off,
/// reads as zero and must not be used).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per caller, all fields named"
)]
fn transport<P: Packet + ?Sized>(
    p: &P,
    family: Family,
    proto: u8,
    l4: usize,
    end: usize,
    src: [u8; 16],
    dst: [u8; 16],
    quoted: bool,
) -> Parsed {
    let full = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        _ => return Parsed::Other,
    };
    let need = if quoted { 4 } else { full };
    let have = if quoted {
        full.min(end.saturating_sub(l4))
    } else {
        full
    };
    let mut t = [0u8; 20];
    if l4 + need > end || !p.read(l4, &mut t[..have.max(need)]) {
        return Parsed::Malformed;
    }
    let check_at = if proto == IPPROTO_TCP {
        // The data offset must at least cover the fixed header.
        if have >= 13 && t[12] >> 4 < 5 {
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
        tcp_flags: if proto == IPPROTO_TCP && !quoted {
            t[13]
        } else {
            0
        },
        route: Route::Direct,
    })
}
