//! Header parsing over generated and random packets.

use proptest::prelude::*;

use crate::vpm_parse::{
    ipv4, ipv4_general, ipv6, ipv6_general, plain_ipv4, plain_ipv6, Packet, Parsed, Route,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};
use crate::vpm_rules::Family;

/// Transport header with known ports and checksum field, plus payload.
fn l4(proto: u8, sport: u16, dport: u16, check: u16, payload: usize) -> Vec<u8> {
    let mut t = vec![0u8; if proto == IPPROTO_TCP { 20 } else { 8 }];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == IPPROTO_TCP {
        t[12] = 5 << 4;
        t[16..18].copy_from_slice(&check.to_be_bytes());
    } else {
        t[6..8].copy_from_slice(&check.to_be_bytes());
    }
    t.resize(t.len() + payload, 0xab);
    t
}

fn v4(proto: u8, frag: u16, options: usize, body: &[u8]) -> Vec<u8> {
    let ihl = 20 + options * 4;
    let mut p = vec![0u8; ihl];
    p[0] = 0x40 | (ihl / 4) as u8;
    p[2..4].copy_from_slice(&((ihl + body.len()) as u16).to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[9] = proto;
    p[12..16].copy_from_slice(&[192, 0, 2, 1]);
    p[16..20].copy_from_slice(&[198, 51, 100, 2]);
    p.extend_from_slice(body);
    p
}

/// IPv6 packet; `exts` are (next-header value of the extension, its bytes).
fn v6(proto: u8, exts: &[(u8, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    let first = exts.first().map_or(proto, |e| e.0);
    for (i, (_, bytes)) in exts.iter().enumerate() {
        let mut b = bytes.clone();
        b[0] = exts.get(i + 1).map_or(proto, |e| e.0);
        chain.extend_from_slice(&b);
    }
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((chain.len() + body.len()) as u16).to_be_bytes());
    p[6] = first;
    p[8] = 0x20;
    p[24] = 0x20;
    p[39] = 2;
    p.extend_from_slice(&chain);
    p.extend_from_slice(body);
    p
}

fn ext() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        // A routing header (43) of type 0-4 with 0-2 segments left, its
        // first address (from byte 8 on, when there is room) 0x77 bytes.
        (
            prop_oneof![Just(0u8), Just(43), Just(60)],
            0u8..3,
            0u8..5,
            0u8..3
        )
            .prop_map(|(nh, len, kind, left)| {
                let mut b = vec![0u8; (usize::from(len) + 1) * 8];
                b[1] = len;
                if nh == 43 {
                    b[2] = kind;
                    b[3] = left;
                    for x in b.iter_mut().skip(8).take(16) {
                        *x = 0x77;
                    }
                }
                (nh, b)
            }),
        // First fragment (offset 0, more fragments).
        Just((44u8, vec![0, 0, 0, 1, 0, 0, 0, 7])),
        (0u8..3).prop_map(|len| {
            let mut b = vec![0u8; (usize::from(len) + 2) * 4];
            b[1] = len;
            (51u8, b)
        }),
    ]
}

fn proto() -> impl Strategy<Value = u8> {
    prop_oneof![Just(IPPROTO_TCP), Just(IPPROTO_UDP)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Well-formed IPv4 packets yield their ports, checksum and offsets.
    #[test]
    fn v4_flows(proto in proto(), sp: u16, dp: u16, ck: u16, opts in 0usize..10, pay in 0usize..64) {
        let p = v4(proto, 0x4000, opts, &l4(proto, sp, dp, ck, pay));
        let Parsed::Flow(f) = ipv4(&p[..]) else { panic!("not a flow") };
        prop_assert_eq!((f.family, f.proto, f.sport, f.dport, f.check), (Family::V4, proto, sp, dp, ck));
        prop_assert_eq!(f.l4, 20 + opts * 4);
        prop_assert_eq!(&p[f.check_off()..f.check_off() + 2], &ck.to_be_bytes());
        prop_assert_eq!(&f.src[..4], &[192, 0, 2, 1]);
    }

    /// Well-formed IPv6 packets are found behind any extension chain.
    #[test]
    fn v6_flows(proto in proto(), exts in proptest::collection::vec(ext(), 0..6), sp: u16, dp: u16, ck: u16) {
        let p = v6(proto, &exts, &l4(proto, sp, dp, ck, 5));
        let Parsed::Flow(f) = ipv6(&p[..]) else { panic!("not a flow") };
        prop_assert_eq!((f.family, f.sport, f.dport, f.check), (Family::V6, sp, dp, ck));
        prop_assert_eq!(f.l4, 40 + exts.iter().map(|e| e.1.len()).sum::<usize>());
        prop_assert_eq!(&p[f.dport_off()..f.dport_off() + 2], &dp.to_be_bytes());
        // The first routing header with segments left decides; a second
        // one makes the route unknown.  Exactly one segment left, within
        // the list (type 4) or a well-formed type 2, names the address.
        let mut left = exts.iter().filter(|e| e.0 == 43 && e.1[3] != 0);
        let want = match (left.next(), left.next()) {
            (None, _) => Route::Direct,
            (Some(_), Some(_)) => Route::Unknown,
            (Some(e), None) => {
                let (len, kind, sl) = (e.1[1], e.1[2], e.1[3]);
                let ok = match kind {
                    2 => len == 2 && sl == 1,
                    4 => sl == 1 && sl < len / 2,
                    _ => false,
                };
                if ok && e.1.len() >= 24 { Route::To([0x77; 16]) } else { Route::Unknown }
            }
        };
        prop_assert_eq!(f.route, want);
    }

    /// Any truncation of a valid packet is Malformed, never a Flow with
    /// fields beyond the end, and never a panic.
    #[test]
    fn truncation_is_malformed(proto in proto(), exts in proptest::collection::vec(ext(), 0..4), cut in 1usize..200) {
        let full = v6(proto, &exts, &l4(proto, 1, 2, 3, 0));
        let cut = cut.min(full.len());
        let short = &full[..full.len() - cut];
        prop_assert_eq!(ipv6(short), Parsed::Malformed);
        let full4 = v4(proto, 0, 0, &l4(proto, 1, 2, 3, 0));
        let short4 = &full4[..full4.len().saturating_sub(cut)];
        prop_assert_eq!(ipv4(short4), Parsed::Malformed);
    }

    /// The same with the payload length cut to match, so that the cut
    /// lands in the extension chain or the transport header as the walk
    /// reads them (not at the IPv6 header's length check).
    #[test]
    fn consistent_truncation_is_malformed(proto in proto(), exts in proptest::collection::vec(ext(), 1..5), cut in 1usize..200) {
        let mut p = v6(proto, &exts, &l4(proto, 1, 2, 3, 0));
        let cut = cut.min(p.len() - 40);
        p.truncate(p.len() - cut);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        prop_assert_eq!(ipv6(&p[..]), Parsed::Malformed);
    }

    /// Random bytes never panic, and a Flow's write window lies inside.
    #[test]
    fn random_bytes(mut p in proptest::collection::vec(any::<u8>(), 0..120), v6ver: bool) {
        if let Some(b) = p.first_mut() {
            *b = (*b & 0x0f) | if v6ver { 0x60 } else { 0x40 };
        }
        for r in [ipv4(&p[..]), ipv6(&p[..])] {
            if let Parsed::Flow(f) = r {
                prop_assert!(f.write_len() <= p.len());
            }
        }
    }
}

#[test]
fn fragments_and_others() {
    let body = l4(IPPROTO_UDP, 1, 2, 3, 0);
    assert_eq!(
        ipv4(&v4(IPPROTO_UDP, 0x0001, 0, &body)[..]),
        Parsed::Fragment
    );
    assert!(matches!(
        ipv4(&v4(IPPROTO_UDP, 0x2000, 0, &body)[..]),
        Parsed::Flow(_)
    ));
    assert_eq!(ipv4(&v4(1, 0, 0, &body)[..]), Parsed::Other);
    assert_eq!(ipv4(&v4(132, 0, 0, &body)[..]), Parsed::Other);
    let later = (44u8, vec![0, 0, 0x05, 0x01, 0, 0, 0, 7]);
    assert_eq!(
        ipv6(&v6(IPPROTO_UDP, &[later], &body)[..]),
        Parsed::Fragment
    );
    // ESP, no-next-header and ICMPv6 end the walk.
    for nh in [50u8, 59, 58] {
        assert_eq!(ipv6(&v6(nh, &[], &body)[..]), Parsed::Other);
    }
    // A chain longer than the walker's limit.
    let hop = (60u8, vec![0u8; 8]);
    let long: Vec<_> = std::iter::repeat_n(hop, 9).collect();
    assert_eq!(ipv6(&v6(IPPROTO_UDP, &long, &body)[..]), Parsed::Malformed);
    // Bad IHL, short total length, TCP data offset below 5.
    let mut bad = v4(IPPROTO_UDP, 0, 0, &body);
    bad[0] = 0x44;
    assert_eq!(ipv4(&bad[..]), Parsed::Malformed);
    let mut bad = v4(IPPROTO_UDP, 0, 0, &body);
    bad[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(ipv4(&bad[..]), Parsed::Malformed);
    let mut tcp = l4(IPPROTO_TCP, 1, 2, 3, 0);
    tcp[12] = 4 << 4;
    assert_eq!(ipv4(&v4(IPPROTO_TCP, 0, 0, &tcp)[..]), Parsed::Malformed);
}

/// An ICMP(v6) error of `ty` quoting the first `keep` bytes of `quoted`.
fn icmp_error(is_v6: bool, ty: u8, quoted: &[u8], keep: usize) -> Vec<u8> {
    let mut msg = vec![ty, 0, 0xab, 0xcd, 0, 0, 0x05, 0x00];
    msg.extend_from_slice(&quoted[..keep.min(quoted.len())]);
    if is_v6 {
        v6(IPPROTO_ICMPV6, &[], &msg)
    } else {
        v4(IPPROTO_ICMP, 0, 0, &msg)
    }
}

proptest! {
    /// Errors quoting TCP/UDP expose the quoted ports, whatever the quote's
    /// length from 4 transport bytes on; the quoted checksum only when
    /// complete.
    #[test]
    fn icmp_errors_quote_flows(proto in proto(), v6q: bool, sp: u16, dp: u16, ck: u16, cut in 0usize..40) {
        let inner = if v6q { v6(proto, &[], &l4(proto, sp, dp, ck, 16)) } else { v4(proto, 0, 0, &l4(proto, sp, dp, ck, 16)) };
        let ip = if v6q { 40 } else { 20 };
        let keep = (ip + 4 + cut).min(inner.len());
        let ty = if v6q { 1 } else { 3 };
        let p = icmp_error(v6q, ty, &inner, keep);
        let Parsed::IcmpError(e) = (if v6q { ipv6(&p[..]) } else { ipv4(&p[..]) }) else { panic!("not an ICMP error") };
        prop_assert_eq!((e.inner.sport, e.inner.dport, e.inner.proto), (sp, dp, proto));
        prop_assert_eq!(e.check, 0xabcd);
        let check_end = ip + if proto == IPPROTO_TCP { 18 } else { 8 };
        prop_assert_eq!(e.inner_check, keep >= check_end);
        if e.inner_check {
            prop_assert_eq!(e.inner.check, ck);
        }
        prop_assert!(e.write_len() <= p.len());
        let at = e.inner.sport_off();
        prop_assert_eq!(&p[at..at + 2], &sp.to_be_bytes());
    }
}

/// A segment routing header (type 4) of two segments, `last` and then
/// the active one, with `left` segments left.
fn srh(left: u8, last: [u8; 16]) -> (u8, Vec<u8>) {
    let mut b = vec![0, 4, 4, left, 1, 0, 0, 0];
    b.extend_from_slice(&last);
    b.extend_from_slice(&[0x11; 16]);
    (43, b)
}

/// An ICMPv6 error, and the packet it quotes, name their final
/// destinations: the outer one for the check that the error is for this
/// host, the quoted one for the flow it is about.
#[test]
fn icmp6_errors_carry_their_routes() {
    let mut inner = v6(
        IPPROTO_UDP,
        &[srh(1, [0x55; 16])],
        &l4(IPPROTO_UDP, 1, 2, 3, 0),
    );
    let mut msg = vec![1, 0, 0xab, 0xcd, 0, 0, 0, 0];
    msg.append(&mut inner);
    let p = v6(IPPROTO_ICMPV6, &[srh(1, [0x66; 16])], &msg);
    let Parsed::IcmpError(e) = ipv6(&p[..]) else {
        panic!("not an ICMP error");
    };
    assert_eq!(e.route, Route::To([0x66; 16]));
    assert_eq!(e.inner.route, Route::To([0x55; 16]));
    assert_eq!(e.inner.peer(), [0x55; 16]);
    let p = v6(IPPROTO_ICMPV6, &[srh(0, [0x66; 16])], &msg);
    let Parsed::IcmpError(e) = ipv6(&p[..]) else {
        panic!("not an ICMP error");
    };
    assert_eq!(e.route, Route::Direct);
    // A quote cut inside the segment list: its route is unknown.
    let inner = v6(
        IPPROTO_UDP,
        &[srh(1, [0x55; 16])],
        &l4(IPPROTO_UDP, 1, 2, 3, 0),
    );
    let mut msg = vec![1, 0, 0xab, 0xcd, 0, 0, 0, 0];
    msg.extend_from_slice(&inner[..40 + 12]);
    let p = v6(IPPROTO_ICMPV6, &[], &msg);
    assert_eq!(ipv6(&p[..]), Parsed::Other);
}

/// A Mobile IPv6 routing header (type 2) names the home address; type 3
/// (RPL) and a segment routing header with two segments left do not.
#[test]
fn routing_type2_names_the_home_address() {
    let mut rh = (43u8, vec![0, 2, 2, 1, 0, 0, 0, 0]);
    rh.1.extend_from_slice(&[0x44; 16]);
    let p = v6(IPPROTO_TCP, &[rh.clone()], &l4(IPPROTO_TCP, 1, 2, 3, 0));
    let Parsed::Flow(f) = ipv6(&p[..]) else {
        panic!("not a flow");
    };
    assert_eq!(
        (f.route, f.final_dst(), f.peer()),
        (Route::To([0x44; 16]), Some([0x44; 16]), [0x44; 16])
    );
    rh.1[2] = 3;
    let p = v6(IPPROTO_TCP, &[rh], &l4(IPPROTO_TCP, 1, 2, 3, 0));
    let Parsed::Flow(f) = ipv6(&p[..]) else {
        panic!("not a flow");
    };
    assert_eq!(
        (f.route, f.final_dst(), f.peer()),
        (Route::Unknown, None, f.dst)
    );
    let p = v6(
        IPPROTO_TCP,
        &[srh(2, [0x44; 16])],
        &l4(IPPROTO_TCP, 1, 2, 3, 0),
    );
    let Parsed::Flow(f) = ipv6(&p[..]) else {
        panic!("not a flow");
    };
    assert_eq!(f.route, Route::Unknown);
}

#[test]
fn icmp_non_errors_and_short_quotes() {
    let inner = v4(IPPROTO_UDP, 0, 0, &l4(IPPROTO_UDP, 1, 2, 3, 0));
    // Echo request (8) is not an error.
    assert_eq!(
        ipv4(&icmp_error(false, 8, &inner, inner.len())[..]),
        Parsed::Other
    );
    // Fewer than 4 quoted transport bytes: nothing to translate.
    assert_eq!(ipv4(&icmp_error(false, 3, &inner, 22)[..]), Parsed::Other);
    // ICMPv6 echo request (128) is not an error either.
    let inner6 = v6(IPPROTO_UDP, &[], &l4(IPPROTO_UDP, 1, 2, 3, 0));
    assert_eq!(
        ipv6(&icmp_error(true, 128, &inner6, inner6.len())[..]),
        Parsed::Other
    );
    // A quoted non-first fragment carries no ports.
    let frag = v4(IPPROTO_UDP, 0x0010, 0, &l4(IPPROTO_UDP, 1, 2, 3, 0));
    assert_eq!(
        ipv4(&icmp_error(false, 3, &frag, frag.len())[..]),
        Parsed::Other
    );
}

/// Issue 8: for about one UDP/IPv6 datagram in 65,536 the translated
/// checksum computes to zero, which an IPv6 receiver drops.  A real
/// datagram whose payload makes it so must leave with 0xffff (and still
/// verify); TCP keeps plain RFC 1624 arithmetic.
#[test]
fn udp6_translation_never_emits_a_zero_checksum() {
    use crate::vpm_csum::{checksum, fold, sum_bytes};
    let (fixed, anon) = (9000u16, 20001u16);
    // The sum a receiver checks: pseudo-header (src, dst, length, proto) + datagram.
    let verify = |p: &[u8]| {
        fold(sum_bytes(
            &p[40..],
            sum_bytes(&p[8..40], (p.len() - 40) as u64 + 17),
        ))
    };
    let datagram = |port: u16, pad: u16| {
        let mut body = l4(IPPROTO_UDP, 45000, port, 0, 4);
        body[8..10].copy_from_slice(&pad.to_be_bytes());
        let mut p = v6(IPPROTO_UDP, &[], &body);
        let c = checksum(&p[40..], sum_bytes(&p[8..40], body.len() as u64 + 17));
        p[46..48].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        p
    };
    // The payload whose datagram to `anon` sums to negative zero.
    let pad = (0..=u16::MAX).find(|&pad| {
        checksum(&datagram(anon, pad)[40..], 0) != 0 && {
            let p = datagram(anon, pad);
            let mut z = p.clone();
            z[46..48].copy_from_slice(&[0, 0]);
            checksum(&z[40..], sum_bytes(&z[8..40], (z.len() - 40) as u64 + 17)) == 0
        }
    });
    let pad = pad.expect("some payload makes the checksum zero");
    let mut p = datagram(fixed, pad);
    let Parsed::Flow(f) = ipv6(&p[..]) else {
        panic!("not a flow")
    };
    assert_eq!(
        crate::vpm_csum::replace2(f.check, fixed, anon),
        0,
        "plain arithmetic gives 0 here"
    );
    let check = f.port_check(fixed, anon);
    assert_eq!(check, 0xffff);
    p[42..44].copy_from_slice(&anon.to_be_bytes());
    p[46..48].copy_from_slice(&check.to_be_bytes());
    assert_eq!(verify(&p), 0xffff, "the translated datagram verifies");
    assert!(!f.is_udp6_without_checksum());
    // TCP: no special case.
    let t = v6(IPPROTO_TCP, &[], &l4(IPPROTO_TCP, 1, fixed, 0x1234, 0));
    let Parsed::Flow(ft) = ipv6(&t[..]) else {
        panic!("not a flow")
    };
    assert_eq!(
        ft.port_check(fixed, anon),
        crate::vpm_csum::replace2(0x1234, fixed, anon)
    );
}

/// An ICMP error records its own destination (the locality check of the
/// packet path uses it), not the quoted packet's.
#[test]
fn icmp_error_keeps_the_outer_destination() {
    let quoted = v4(IPPROTO_UDP, 0, 0, &l4(IPPROTO_UDP, 9000, 40000, 0x1234, 0));
    let p = icmp_error(false, 3, &quoted, quoted.len());
    let Parsed::IcmpError(e) = ipv4(&p[..]) else {
        panic!("not an ICMP error")
    };
    assert_eq!(&e.dst[..4], &[198, 51, 100, 2]);
    assert_eq!(&e.inner.dst[..4], &[198, 51, 100, 2]);
    // The quote of a packet this host sent: its source is the error's
    // destination; make them differ to tell them apart.
    let mut quoted = quoted;
    quoted[16..20].copy_from_slice(&[203, 0, 113, 9]);
    let p = icmp_error(false, 3, &quoted, quoted.len());
    let Parsed::IcmpError(e) = ipv4(&p[..]) else {
        panic!("not an ICMP error")
    };
    assert_eq!(&e.dst[..4], &[198, 51, 100, 2]);
    assert_eq!(&e.inner.dst[..4], &[203, 0, 113, 9]);
}

/// A packet whose first `linear` bytes can be read in place (an skb with
/// paged data, or one whose headers are not all pulled).
struct Split<'a> {
    bytes: &'a [u8],
    linear: usize,
}

impl Packet for Split<'_> {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        self.bytes.read(off, buf)
    }

    fn in_place(&self) -> &[u8] {
        &self.bytes[..self.linear.min(self.bytes.len())]
    }
}

/// A plain packet with one header byte (or two) overwritten: what the
/// shortcut looks at, and around it.
fn mutated(mut p: Vec<u8>, at: usize, value: u8, at2: usize, value2: u8) -> Vec<u8> {
    if let Some(b) = p.get_mut(at) {
        *b = value;
    }
    if let Some(b) = p.get_mut(at2) {
        *b = value2;
    }
    p
}

fn plain(is_v6: bool, proto: u8, sp: u16, dp: u16, ck: u16, pay: usize) -> Vec<u8> {
    let body = l4(proto, sp, dp, ck, pay);
    if is_v6 {
        v6(proto, &[], &body)
    } else {
        v4(proto, 0, 0, &body)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The common-case shortcut answers exactly as the general parser
    /// does, whatever the packet and however much of it is in place.
    #[test]
    fn shortcut_agrees_with_the_general_parser(
        is_v6: bool, proto in proto(), sp: u16, dp: u16, ck: u16, pay in 0usize..32,
        at in 0usize..64, value: u8, at2 in 0usize..64, value2: u8,
        cut in 0usize..100, linear in 0usize..100,
    ) {
        let p = mutated(plain(is_v6, proto, sp, dp, ck, pay), at, value, at2, value2);
        let p = &p[..p.len().saturating_sub(cut % 8 * (cut / 50))];
        let split = Split { bytes: p, linear };
        if is_v6 {
            prop_assert_eq!(ipv6(&split), ipv6_general(&split));
            prop_assert_eq!(ipv6(p), ipv6_general(p));
        } else {
            prop_assert_eq!(ipv4(&split), ipv4_general(&split));
            prop_assert_eq!(ipv4(p), ipv4_general(p));
        }
    }

    /// Random bytes too.
    #[test]
    fn shortcut_agrees_on_random_bytes(mut p in proptest::collection::vec(any::<u8>(), 0..100), v6ver: bool, linear in 0usize..100) {
        if let Some(b) = p.first_mut() {
            *b = if v6ver { 0x60 | (*b & 0xf) } else { 0x45 };
        }
        let split = Split { bytes: &p, linear };
        if v6ver {
            prop_assert_eq!(ipv6(&split), ipv6_general(&split));
        } else {
            prop_assert_eq!(ipv4(&split), ipv4_general(&split));
        }
    }

    /// And the shortcut does take the plain TCP and UDP packets in place.
    #[test]
    fn shortcut_takes_plain_flows(is_v6: bool, tcp: bool, sp: u16, dp: u16, ck: u16, pay in 0usize..32) {
        let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        let p = plain(is_v6, proto, sp, dp, ck, pay);
        let flow = if is_v6 { plain_ipv6(&p, p.len()) } else { plain_ipv4(&p, p.len()) };
        prop_assert!(flow.is_some_and(|f| f.sport == sp && f.dport == dp && f.check == ck));
    }
}
