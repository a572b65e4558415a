//! Header parsing over generated and random packets.

use proptest::prelude::*;

use crate::vpm_parse::{ipv4, ipv6, Parsed, IPPROTO_TCP, IPPROTO_UDP};
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
        (prop_oneof![Just(0u8), Just(43), Just(60)], 0u8..3).prop_map(|(nh, len)| {
            let mut b = vec![0u8; (usize::from(len) + 1) * 8];
            b[1] = len;
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
    assert_eq!(ipv4(&v4(IPPROTO_UDP, 0x0001, 0, &body)[..]), Parsed::Fragment);
    assert!(matches!(ipv4(&v4(IPPROTO_UDP, 0x2000, 0, &body)[..]), Parsed::Flow(_)));
    assert_eq!(ipv4(&v4(1, 0, 0, &body)[..]), Parsed::Other);
    assert_eq!(ipv4(&v4(132, 0, 0, &body)[..]), Parsed::Other);
    let later = (44u8, vec![0, 0, 0x05, 0x01, 0, 0, 0, 7]);
    assert_eq!(ipv6(&v6(IPPROTO_UDP, &[later], &body)[..]), Parsed::Fragment);
    // ESP, no-next-header and ICMPv6 end the walk.
    for nh in [50u8, 59, 58] {
        assert_eq!(ipv6(&v6(nh, &[], &body)[..]), Parsed::Other);
    }
    // A chain longer than the walker's limit.
    let hop = (60u8, vec![0u8; 8]);
    let long: Vec<_> = std::iter::repeat(hop).take(9).collect();
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
