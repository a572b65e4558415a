//! The flow table: pinning, timeouts, eviction, concurrent use.

use std::sync::Arc;

use proptest::prelude::*;

use crate::vpm_flow::{
    FlowKey, FlowTable, Inserted, Pin, Slot, TCP_FIN, TCP_FIN_TIMEOUT, TCP_RST, WAYS,
};

fn table(slots: usize) -> FlowTable<Vec<Slot>> {
    FlowTable::new((0..slots).map(|_| Slot::default()).collect(), [1, 2]).unwrap()
}

fn key(port: u16) -> FlowKey {
    FlowKey { proto: 17, family: 4, fixed: 9000, port, addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] }
}

fn pin(anon: u16) -> Pin {
    Pin { anon, id: anon ^ 0x5555 }
}

#[test]
fn rejects_odd_sizes() {
    assert!(FlowTable::new((0..6).map(|_| Slot::default()).collect::<Vec<_>>(), [0, 0]).is_none());
    assert!(FlowTable::new((0..3 * WAYS).map(|_| Slot::default()).collect::<Vec<_>>(), [0, 0]).is_none());
}

#[test]
fn pins_until_idle_timeout() {
    let t = table(64);
    assert_eq!(t.lookup(&key(1), 100), None);
    assert_eq!(t.insert(&key(1), pin(20000), 100, 30), Inserted::Free);
    assert_eq!(t.lookup(&key(1), 130), Some(pin(20000)));
    assert_eq!(t.lookup(&key(1), 131), None, "idle past the timeout");
    assert!(!t.touch(&key(1), 131, 30, 0));
    // Traffic keeps it alive.
    t.insert(&key(2), pin(20001), 100, 30);
    assert!(t.touch(&key(2), 125, 30, 0));
    assert_eq!(t.lookup(&key(2), 150), Some(pin(20001)));
    assert_eq!(t.live(150), 1);
}

#[test]
fn fin_shortens_and_rst_ends() {
    let t = table(64);
    t.insert(&key(1), pin(1), 1000, 7200);
    assert!(t.touch(&key(1), 1000, 7200, TCP_FIN));
    assert_eq!(t.lookup(&key(1), 1000 + TCP_FIN_TIMEOUT), Some(pin(1)));
    assert_eq!(t.lookup(&key(1), 1001 + TCP_FIN_TIMEOUT), None);
    t.insert(&key(2), pin(2), 1000, 7200);
    assert!(t.touch(&key(2), 1000, 7200, TCP_RST));
    assert_eq!(t.lookup(&key(2), 1000), None);
}

#[test]
fn clock_wraps() {
    let t = table(64);
    t.insert(&key(1), pin(1), u32::MAX - 5, 30);
    assert_eq!(t.lookup(&key(1), 10), Some(pin(1)));
    assert_eq!(t.lookup(&key(1), 30), None);
}

#[test]
fn full_bucket_evicts_the_soonest_to_expire() {
    // One bucket: every key lands in it.
    let t = table(WAYS);
    for i in 0..WAYS as u16 {
        assert_eq!(t.insert(&key(i), pin(i), 100, 100 + u32::from(i)), Inserted::Free);
    }
    assert_eq!(t.insert(&key(99), pin(99), 100, 50), Inserted::Evicted);
    assert_eq!(t.lookup(&key(0), 101), None, "the soonest-to-expire flow went");
    for i in 1..WAYS as u16 {
        assert_eq!(t.lookup(&key(i), 101), Some(pin(i)));
    }
    // An expired slot is reused before a live one is evicted.
    assert_eq!(t.insert(&key(98), pin(98), 160, 50), Inserted::Expired);
    assert_eq!(t.lookup(&key(1), 160), Some(pin(1)));
}

#[test]
fn repinning_a_flow_replaces_its_slot() {
    let t = table(WAYS);
    t.insert(&key(1), pin(1), 0, 100);
    assert_eq!(t.insert(&key(1), pin(7), 1, 100), Inserted::Expired);
    assert_eq!(t.lookup(&key(1), 2), Some(pin(7)));
    assert_eq!(t.live(2), 1, "no duplicate slot");
}

proptest! {
    /// Against a model without collisions: with room to spare, every
    /// inserted flow is found with its pin until it times out.
    #[test]
    fn model(ops in proptest::collection::vec((0u16..40, 1u16..1000, 0u32..50), 1..200)) {
        let t = table(1024);
        let mut model = std::collections::HashMap::new();
        let mut now = 1000u32;
        for (port, anon, dt) in ops {
            now += dt;
            model.retain(|_, (_, dl): &mut (Pin, u32)| *dl >= now);
            match t.lookup(&key(port), now) {
                Some(p) => prop_assert_eq!(Some(&p), model.get(&port).map(|(p, _)| p)),
                None => {
                    prop_assert!(!model.contains_key(&port));
                    t.insert(&key(port), pin(anon), now, 60);
                    model.insert(port, (pin(anon), now + 60));
                }
            }
        }
    }
}

/// Many CPUs inserting, touching and looking up at once: a found pin is
/// always one that was inserted for that very key.
#[test]
fn concurrent_use_never_mixes_flows() {
    let t = Arc::new(table(64));
    let threads: Vec<_> = (0..4u16)
        .map(|n| {
            let t = t.clone();
            std::thread::spawn(move || {
                for round in 0..20_000u32 {
                    let port = (round as u16 % 200) + n * 1000;
                    let k = key(port);
                    match t.lookup(&k, round / 100) {
                        Some(p) => assert_eq!(p, pin(port), "key {port} found another flow's pin"),
                        None => {
                            t.insert(&k, pin(port), round / 100, 5);
                        }
                    }
                    t.touch(&k, round / 100, 5, 0);
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
}
