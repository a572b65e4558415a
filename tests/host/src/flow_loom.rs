//! Model checking of the flow table's lock-free protocol with `loom`.
//!
//! Built only with `RUSTFLAGS="--cfg loom"`: `vpm_flow.rs` then uses
//! loom's atomics, and each `loom::model` below runs its threads under
//! every interleaving (and every value the memory model lets a load
//! return).  The claims checked are those of issue 8 and of vpm_flow.rs's
//! module documentation: no interleaving lets one flow's insert or touch
//! end, shorten or replace another flow's pin, except the stated eviction
//! of an unconfirmed pin; and a reader never pairs a flow with another
//! flow's pin.

use loom::sync::Arc;
use loom::thread;

use crate::vpm_flow::{
    FlowKey, FlowTable, Inserted, Pin, PinState, Seen, Slot, TCP_ACK, TCP_FIN, TCP_RST,
    TCP_UNCONFIRMED_TIMEOUT, WAYS,
};
use crate::vpm_rules::Family;

/// One bucket: every flow competes for the same `WAYS` slots.
fn bucket() -> FlowTable<Vec<Slot>> {
    FlowTable::new((0..WAYS).map(|_| Slot::default()).collect(), [3, 4]).unwrap()
}

fn key(port: u16) -> FlowKey {
    FlowKey {
        proto: 6,
        family: Family::V4,
        fixed: 9000,
        port,
        addr: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }
}

fn pin(n: u16) -> Pin {
    Pin {
        anon: 20000 + n,
        id: u64::from(n) << 40 | 7,
    }
}

fn instance(n: u16, flags: u8) -> Seen {
    Seen::Instance {
        tcp: true,
        flags,
        pin: pin(n),
        established: true,
    }
}

const NOW: u32 = 1000;

/// Confirmed pins 100.. in all slots but one, an unconfirmed pin 1 there.
fn crowded() -> FlowTable<Vec<Slot>> {
    let t = bucket();
    for i in 0..WAYS as u16 - 1 {
        assert_eq!(
            t.insert(&key(100 + i), pin(100 + i), None, NOW, true),
            Inserted::Free
        );
        t.touch(&key(100 + i), NOW, instance(100 + i, TCP_ACK));
    }
    assert_eq!(t.insert(&key(1), pin(1), None, NOW, true), Inserted::Free);
    t
}

fn confirmed_intact(t: &FlowTable<Vec<Slot>>) {
    for i in 0..WAYS as u16 - 1 {
        assert_eq!(
            t.lookup_state(&key(100 + i), NOW),
            Some((pin(100 + i), PinState::Confirmed))
        );
    }
}

/// Two new flows race for the one evictable slot.  Sequentially the
/// second evicts the first (both unconfirmed: that is the policy); in any
/// interleaving exactly one ends up owning the slot, with its own pin and
/// its full (unshortened) deadline, and the confirmed pins are untouched.
#[test]
fn flow_loom_two_inserts() {
    loom::model(|| {
        let t = Arc::new(crowded());
        let racers: Vec<_> = [2u16, 3]
            .into_iter()
            .map(|n| {
                let t = t.clone();
                thread::spawn(move || t.insert(&key(n), pin(n), None, NOW, true))
            })
            .collect();
        let results: Vec<Inserted> = racers.into_iter().map(|h| h.join().unwrap()).collect();
        let owners: Vec<u16> = [2u16, 3]
            .into_iter()
            .filter(|n| t.lookup(&key(*n), NOW + TCP_UNCONFIRMED_TIMEOUT) == Some(pin(*n)))
            .collect();
        assert_eq!(owners.len(), 1, "{results:?}");
        assert_eq!(results[usize::from(owners[0] - 2)], Inserted::Evicted);
        assert_eq!(
            t.lookup(&key(1), NOW),
            None,
            "the unconfirmed pin was evicted"
        );
        confirmed_intact(&t);
    });
}

/// A new flow evicts flow 1 while flow 1's instance sends a FIN and a
/// RST: whichever wins, the new flow's pin (if it got the slot) keeps its
/// deadline, and flow 1's packets never touch it.
#[test]
fn flow_loom_insert_against_fin_and_rst() {
    loom::model(|| {
        let t = Arc::new(crowded());
        let t1 = t.clone();
        let closer = thread::spawn(move || {
            t1.touch(&key(1), NOW, instance(1, TCP_FIN));
            t1.touch(&key(1), NOW, instance(1, TCP_RST));
        });
        let r = t.insert(&key(2), pin(2), None, NOW, true);
        closer.join().unwrap();
        match r {
            Inserted::Evicted | Inserted::Expired => {
                assert_eq!(
                    t.lookup(&key(2), NOW + TCP_UNCONFIRMED_TIMEOUT),
                    Some(pin(2))
                )
            }
            Inserted::Raced | Inserted::Full => assert_eq!(t.lookup(&key(2), NOW), None),
            Inserted::Free => panic!("no free slot existed"),
        }
        assert_eq!(t.lookup(&key(1), NOW), None, "flow 1 ended either way");
        confirmed_intact(&t);
    });
}

/// A reader of flow 1 and of the new flow, during an eviction: each sees
/// its own pin or nothing, never the other's.
#[test]
fn flow_loom_reader_never_mixes() {
    loom::model(|| {
        let t = Arc::new(crowded());
        let t1 = t.clone();
        let reader = thread::spawn(move || (t1.lookup(&key(1), NOW), t1.lookup(&key(2), NOW)));
        t.insert(&key(2), pin(2), None, NOW, true);
        let (one, two) = reader.join().unwrap();
        assert!(one.is_none() || one == Some(pin(1)), "{one:?}");
        assert!(two.is_none() || two == Some(pin(2)), "{two:?}");
    });
}

/// Confirmation racing an eviction: either flow 1 got confirmed first
/// (and then cannot be evicted: the insert finds no room) or it was
/// evicted (and the late confirmation changes nothing).
#[test]
fn flow_loom_confirm_against_evict() {
    loom::model(|| {
        let t = Arc::new(crowded());
        let t1 = t.clone();
        let confirmer = thread::spawn(move || {
            t1.touch(&key(1), NOW, instance(1, TCP_ACK));
        });
        let r = t.insert(&key(2), pin(2), None, NOW, true);
        confirmer.join().unwrap();
        match t.lookup_state(&key(1), NOW) {
            Some((p, PinState::Confirmed)) => {
                assert_eq!(p, pin(1));
                assert_ne!(r, Inserted::Evicted);
            }
            Some(other) => panic!("flow 1 neither confirmed nor evicted: {other:?}"),
            None => {
                assert_eq!(r, Inserted::Evicted);
                assert_eq!(
                    t.lookup_state(&key(2), NOW),
                    Some((pin(2), PinState::Unconfirmed))
                );
            }
        }
        confirmed_intact(&t);
    });
}

/// The reviewer's interleaving: a reader of flow 1 loads `life`, flow 2
/// evicts flow 1, flow 1 comes back with a new pin into the same slot,
/// the reader loads `pin` and `life` again.  The reader must never
/// return flow 2's pin for flow 1.
#[test]
fn flow_loom_reader_against_evict_and_return() {
    loom::model(|| {
        let t = Arc::new(crowded());
        let t1 = t.clone();
        let reader = thread::spawn(move || t1.lookup(&key(1), NOW));
        let t2 = t.clone();
        let churn = thread::spawn(move || {
            t2.insert(&key(2), pin(2), None, NOW, true);
            t2.insert(&key(1), pin(11), None, NOW, true);
        });
        let seen = reader.join().unwrap();
        churn.join().unwrap();
        assert!(
            seen.is_none() || seen == Some(pin(1)) || seen == Some(pin(11)),
            "{seen:?}"
        );
    });
}
