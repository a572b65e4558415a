//! Source-rule selection against a brute-force model.

use proptest::prelude::*;

use crate::vpm_rules::{is_peer, select, sort, Family, Match, Peer, RuleError, Source};

/// Addresses drawn from a tiny space so that prefixes overlap often.
fn addr(family: Family) -> impl Strategy<Value = [u8; 16]> {
    let n = if family == Family::V4 { 4 } else { 16 };
    proptest::collection::vec(prop_oneof![Just(0u8), Just(10), Just(0x80), Just(0xff)], n).prop_map(
        |bytes| {
            let mut a = [0u8; 16];
            a[..bytes.len()].copy_from_slice(&bytes);
            a
        },
    )
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::V4), Just(Family::V6)]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), Just(5000), Just(5001)]
}

/// A valid rule: a random prefix of a random address (host bits cleared).
fn rule() -> impl Strategy<Value = Match> {
    prop_oneof![
        1 => port().prop_map(|p| Match::new(Family::Any, [0; 16], 0, p).unwrap()),
        6 => (family(), port()).prop_flat_map(|(f, p)| {
            (addr(f), 0..=f.bits()).prop_map(move |(a, plen)| {
                let mut net = a;
                for bit in usize::from(plen)..128 {
                    net[bit / 8] &= !(0x80 >> (bit % 8));
                }
                Match::new(f, net, plen, p).unwrap()
            })
        }),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    (family(), port()).prop_flat_map(|(f, p)| {
        addr(f).prop_map(move |a| Source {
            family: f,
            addr: a,
            port: p,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// `select` returns the value of the unique most specific matching
    /// rule; distinct rules never tie.
    #[test]
    fn select_is_longest_match(rules in proptest::collection::btree_set(rule(), 0..12), src in source()) {
        let mut table: Vec<(Match, usize)> = rules.iter().copied().zip(0..).collect();
        let matching: Vec<&(Match, usize)> = table.iter().filter(|(m, _)| m.matches(&src)).collect();
        let best = matching.iter().map(|(m, _)| m.specificity()).max();
        let winners: Vec<usize> = matching
            .iter()
            .filter(|(m, _)| Some(m.specificity()) == best)
            .map(|(_, v)| *v)
            .collect();
        prop_assert!(winners.len() <= 1, "tie between distinct rules: {winners:?}");
        sort(&mut table);
        prop_assert_eq!(select(&table, &src, |_| true).copied(), winners.first().copied());
    }

    /// A rule always matches its own prefix address, whatever the host part.
    #[test]
    fn rule_matches_its_network(m in rule(), src in source()) {
        if m.family() != Family::Any {
            let s = Source { family: m.family(), addr: *m.addr(), port: if m.port() != 0 { m.port() } else { src.port } };
            prop_assert!(m.matches(&s));
        }
    }
}

fn select_all<'a, T>(rules: &'a [(Match, T)], src: &Source) -> Option<&'a T> {
    select(rules, src, |_| true)
}

/// An unusable rule (say, one whose allocation lacks the protocol) does
/// not hide a less specific usable one.
#[test]
fn unusable_rules_are_skipped() {
    let mut net = [0u8; 16];
    net[0] = 10;
    let mut rules = vec![
        (Match::new(Family::V4, net, 8, 0).unwrap(), 1),
        (Match::ANY, 2),
    ];
    sort(&mut rules);
    let src = Source {
        family: Family::V4,
        addr: net,
        port: 9,
    };
    assert_eq!(select(&rules, &src, |&v| v != 1), Some(&2));
    assert_eq!(select(&rules, &src, |_| true), Some(&1));
}

#[test]
fn refuses_bad_prefixes() {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[192, 168, 1, 70]);
    assert_eq!(Match::new(Family::V4, a, 24, 0), Err(RuleError::HostBits));
    assert_eq!(
        Match::new(Family::V4, a, 33, 0),
        Err(RuleError::PrefixTooLong { max: 32 })
    );
    assert_eq!(Match::new(Family::Any, a, 0, 0), Err(RuleError::HostBits));
    assert!(Match::new(Family::V4, a, 32, 0).is_ok());
    a[3] = 0;
    assert!(Match::new(Family::V4, a, 24, 0).is_ok());
}

#[test]
fn host_rule_beats_port_rule_on_shorter_prefix() {
    let mut net8 = [0u8; 16];
    net8[0] = 10;
    let mut host = net8;
    host[3] = 7;
    let mut rules = vec![
        (Match::new(Family::V4, net8, 8, 5000).unwrap(), "net8:5000"),
        (Match::new(Family::V4, host, 32, 0).unwrap(), "host"),
        (Match::new(Family::V4, net8, 8, 0).unwrap(), "net8"),
        (Match::ANY, "default"),
    ];
    sort(&mut rules);
    let src = |a: [u8; 16], port| Source {
        family: Family::V4,
        addr: a,
        port,
    };
    assert_eq!(select_all(&rules, &src(host, 5000)), Some(&"host"));
    let mut other = net8;
    other[3] = 8;
    assert_eq!(select_all(&rules, &src(other, 5000)), Some(&"net8:5000"));
    assert_eq!(select_all(&rules, &src(other, 1)), Some(&"net8"));
    assert_eq!(
        select_all(
            &rules,
            &Source {
                family: Family::V6,
                addr: [0; 16],
                port: 1
            }
        ),
        Some(&"default")
    );
}

#[test]
fn peers_are_v4_or_v6_and_mapped_v4_is_v4() {
    let v4 = Peer::new(&[192, 0, 2, 1]).unwrap();
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[192, 0, 2, 1]);
    assert!(v4.is(Family::V4, &a));
    assert!(!v4.is(Family::V6, &a));
    assert_eq!(v4.bytes(), &[192, 0, 2, 1]);
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12..].copy_from_slice(&[192, 0, 2, 1]);
    assert_eq!(Peer::new(&mapped), Some(v4));
    let v6 = [0xfd, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let p6 = Peer::new(&v6).unwrap();
    assert!(p6.is(Family::V6, &v6));
    assert_eq!(p6.bytes(), &v6);
    assert!(is_peer(&[v4, p6], Family::V6, &v6));
    assert!(!is_peer(&[v4], Family::V6, &v6));
    for bad in [
        &[][..],
        &[0; 4][..],
        &[0; 16][..],
        &[1, 2, 3][..],
        &[1; 17][..],
    ] {
        assert_eq!(Peer::new(bad), None, "{bad:?}");
    }
}
