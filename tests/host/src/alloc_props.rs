//! The port allocator against a model: random operation sequences.

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::vpm_alloc::{AllocError, PortAllocator, WORDS};

type Alloc = PortAllocator<Vec<u64>>;

fn alloc(lo: u16, hi: u16) -> Alloc {
    PortAllocator::new(vec![0; WORDS], lo, hi).unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Alloc,
    Release(u16),
    Reserve(u16),
    SetRange(u16, u16),
}

/// Small ranges (so exhaustion happens) anywhere in the port space,
/// including the edges 1 and 65535 and word boundaries.
fn range() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        (1u16..=65535, 0u16..200).prop_map(|(lo, n)| (lo, lo.saturating_add(n))),
        Just((1, 1)),
        Just((65535, 65535)),
        Just((63, 129)),
        Just((65400, 65535)),
    ]
}

fn ops((lo, hi): (u16, u16)) -> impl Strategy<Value = Vec<Op>> {
    let port = (lo.saturating_sub(3)..=hi.saturating_add(3)).boxed();
    let op = prop_oneof![
        6 => Just(Op::Alloc),
        3 => port.clone().prop_map(Op::Release),
        2 => port.clone().prop_map(Op::Reserve),
        1 => (port.clone(), port).prop_map(|(a, b)| Op::SetRange(a.min(b), a.max(b))),
    ];
    proptest::collection::vec(op, 1..400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn behaves_like_a_set(((lo, hi), ops) in range().prop_flat_map(|r| (Just(r), ops(r)))) {
        let mut a = alloc(lo, hi);
        let mut model = BTreeSet::new();
        let (mut mlo, mut mhi) = (lo, hi);
        for op in ops {
            match op {
                Op::Alloc => match a.alloc() {
                    Ok(p) => {
                        prop_assert!((mlo..=mhi).contains(&p), "{p} outside {mlo}..={mhi}");
                        prop_assert!(model.insert(p), "{p} handed out twice");
                    }
                    Err(e) => {
                        prop_assert_eq!(e, AllocError::Exhausted);
                        prop_assert_eq!(model.len(), usize::from(mhi - mlo) + 1);
                    }
                },
                Op::Release(p) => prop_assert_eq!(a.release(p), model.remove(&p)),
                Op::Reserve(p) => {
                    let want = if !(mlo..=mhi).contains(&p) {
                        Err(AllocError::OutOfRange)
                    } else if model.contains(&p) {
                        Err(AllocError::Taken)
                    } else {
                        model.insert(p);
                        Ok(())
                    };
                    prop_assert_eq!(a.reserve(p), want);
                }
                Op::SetRange(l, h) => {
                    let want = if l == 0 {
                        Err(AllocError::BadRange)
                    } else if model.iter().any(|p| !(l..=h).contains(p)) {
                        Err(AllocError::InUseOutside)
                    } else {
                        mlo = l;
                        mhi = h;
                        Ok(())
                    };
                    prop_assert_eq!(a.set_range(l, h), want);
                }
            }
            prop_assert_eq!(a.in_use() as usize, model.len());
            prop_assert_eq!(a.range(), (mlo, mhi));
        }
    }
}

#[test]
fn exhausts_then_reuses_after_release() {
    let mut a = alloc(20000, 20009);
    let got: Vec<u16> = (0..10).map(|_| a.alloc().unwrap()).collect();
    assert_eq!(got, (20000..=20009).collect::<Vec<_>>());
    assert_eq!(a.alloc(), Err(AllocError::Exhausted));
    assert!(a.release(20004));
    assert_eq!(a.alloc(), Ok(20004));
}

#[test]
fn next_fit_does_not_reuse_a_port_at_once() {
    let mut a = alloc(100, 199);
    let p = a.alloc().unwrap();
    assert!(a.release(p));
    assert_ne!(a.alloc().unwrap(), p);
}

#[test]
fn full_port_space() {
    let mut a = alloc(1, 65535);
    for want in 1..=65535u16 {
        assert_eq!(a.alloc(), Ok(want));
    }
    assert_eq!(a.alloc(), Err(AllocError::Exhausted));
    assert_eq!(a.in_use(), 65535);
}

#[test]
fn rejects_bad_ranges_and_storage() {
    assert!(PortAllocator::new(vec![0; WORDS], 0, 10).is_err());
    assert!(PortAllocator::new(vec![0; WORDS], 10, 9).is_err());
    assert!(PortAllocator::new(vec![0; WORDS - 1], 1, 9).is_err());
}
