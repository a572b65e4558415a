//! The flow table: pin lifecycle, timeouts, eviction policy, concurrent use.

use std::sync::Arc;

use proptest::prelude::*;

use crate::vpm_flow::{
    FlowKey, FlowTable, Inserted, Pin, PinState, Seen, Slot, CONFIRMED_IDLE_EVICT, TCP_ACK,
    TCP_FIN, TCP_FIN_TIMEOUT, TCP_RST, TCP_SYN, TCP_TIMEOUT, TCP_UNCONFIRMED_TIMEOUT, UDP_TIMEOUT,
    WAYS,
};
use crate::vpm_rules::Family;

fn table(slots: usize) -> FlowTable<Vec<Slot>> {
    FlowTable::new((0..slots).map(|_| Slot::default()).collect(), [1, 2]).unwrap()
}

fn key(port: u16) -> FlowKey {
    FlowKey {
        proto: 6,
        family: Family::V4,
        fixed: 9000,
        port,
        addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    }
}

fn pin(anon: u16) -> Pin {
    Pin {
        anon,
        id: u64::from(anon) << 32 | 0x5555,
    }
}

fn client(flags: u8) -> Seen {
    Seen::Client { tcp: true, flags }
}

fn instance(anon: u16, flags: u8) -> Seen {
    Seen::Instance {
        tcp: true,
        flags,
        pin: pin(anon),
        established: true,
    }
}

/// A TCP insert of a flow without a pin.
fn ins(t: &FlowTable<Vec<Slot>>, k: u16, p: Pin, now: u32) -> Inserted {
    t.insert(&key(k), p, None, now, true)
}

const UNCONFIRMED_TIMEOUT: u32 = TCP_UNCONFIRMED_TIMEOUT;

/// Pins `k` to `anon` and confirms it with the instance's ACK.
fn confirmed(t: &FlowTable<Vec<Slot>>, k: u16, anon: u16, now: u32) {
    assert_ne!(ins(t, k, pin(anon), now), Inserted::Full);
    assert!(t.touch(&key(k), now, instance(anon, TCP_ACK)));
    assert_eq!(
        t.lookup_state(&key(k), now).map(|s| s.1),
        Some(PinState::Confirmed)
    );
}

#[test]
fn rejects_odd_sizes() {
    assert!(FlowTable::new((0..6).map(|_| Slot::default()).collect::<Vec<_>>(), [0, 0]).is_none());
    assert!(FlowTable::new(
        (0..3 * WAYS).map(|_| Slot::default()).collect::<Vec<_>>(),
        [0, 0]
    )
    .is_none());
}

#[test]
fn unconfirmed_pins_are_short_lived() {
    let t = table(64);
    assert_eq!(t.lookup(&key(1), 100), None);
    assert_eq!(ins(&t, 1, pin(20000), 100), Inserted::Free);
    assert_eq!(
        t.lookup_state(&key(1), 100 + UNCONFIRMED_TIMEOUT),
        Some((pin(20000), PinState::Unconfirmed))
    );
    assert_eq!(
        t.lookup(&key(1), 101 + UNCONFIRMED_TIMEOUT),
        None,
        "unanswered: gone"
    );
    // The client's packets keep an unconfirmed pin, at the short timeout.
    ins(&t, 2, pin(20001), 100);
    assert!(t.touch(&key(2), 120, client(TCP_ACK)));
    assert_eq!(
        t.lookup(&key(2), 120 + UNCONFIRMED_TIMEOUT),
        Some(pin(20001))
    );
    assert_eq!(t.lookup(&key(2), 121 + UNCONFIRMED_TIMEOUT), None);
}

#[test]
fn syn_ack_does_not_confirm_but_an_ack_does() {
    let t = table(64);
    ins(&t, 1, pin(7), 100);
    t.touch(&key(1), 100, instance(7, TCP_SYN | TCP_ACK));
    assert_eq!(
        t.lookup_state(&key(1), 100).unwrap().1,
        PinState::Unconfirmed
    );
    // A listener's (or request socket's) ACK answers spoofed segments too.
    t.touch(
        &key(1),
        100,
        Seen::Instance {
            tcp: true,
            flags: TCP_ACK,
            pin: pin(7),
            established: false,
        },
    );
    assert_eq!(
        t.lookup_state(&key(1), 100).unwrap().1,
        PinState::Unconfirmed
    );
    t.touch(&key(1), 101, instance(7, TCP_ACK));
    assert_eq!(
        t.lookup_state(&key(1), 100 + TCP_TIMEOUT).unwrap().1,
        PinState::Confirmed
    );
    assert_eq!(
        t.lookup(&key(1), 102 + TCP_TIMEOUT),
        None,
        "idle past the timeout"
    );
    // UDP: any reply confirms, for the UDP timeout.
    let u = Seen::Instance {
        tcp: false,
        flags: 0,
        pin: pin(8),
        established: true,
    };
    t.insert(&key(2), pin(8), None, 100, false);
    assert_eq!(
        t.lookup(&key(2), 100 + UDP_TIMEOUT),
        Some(pin(8)),
        "unconfirmed UDP: 60 s"
    );
    t.touch(&key(2), 100, u);
    assert_eq!(
        t.lookup_state(&key(2), 100 + UDP_TIMEOUT).unwrap().1,
        PinState::Confirmed
    );
    assert_eq!(t.lookup(&key(2), 101 + UDP_TIMEOUT), None);
}

#[test]
fn only_the_pins_own_allocation_confirms() {
    let t = table(64);
    ins(&t, 1, pin(7), 100);
    t.touch(&key(1), 100, instance(8, TCP_ACK));
    assert_eq!(
        t.lookup_state(&key(1), 100).unwrap().1,
        PinState::Unconfirmed
    );
    t.touch(&key(1), 100, instance(8, TCP_RST));
    assert_eq!(
        t.lookup(&key(1), 100),
        Some(pin(7)),
        "another allocation's RST ends nothing"
    );
}

#[test]
fn client_fin_and_rst_do_not_end_a_confirmed_pin() {
    let t = table(64);
    confirmed(&t, 1, 7, 1000);
    t.touch(&key(1), 1001, client(TCP_RST));
    t.touch(&key(1), 1002, client(TCP_FIN | TCP_ACK));
    assert_eq!(
        t.lookup_state(&key(1), 1000 + TCP_TIMEOUT).unwrap().1,
        PinState::Confirmed
    );
    // Nor do its other packets extend it: only the instance's do.
    t.touch(&key(1), 1100, client(TCP_ACK));
    assert_eq!(t.lookup(&key(1), 1001 + TCP_TIMEOUT), None);
    // A client RST does end an unconfirmed pin (a scan frees its slot).
    ins(&t, 2, pin(9), 1000);
    t.touch(&key(2), 1000, client(TCP_RST));
    assert_eq!(t.lookup(&key(2), 1000), None);
}

#[test]
fn instance_fin_closes_and_rst_ends() {
    let t = table(64);
    confirmed(&t, 1, 1, 1000);
    assert!(t.touch(&key(1), 1000, instance(1, TCP_FIN | TCP_ACK)));
    // A retransmitted FIN and the client's packets do not push it out;
    // the instance's further segments (a half-close: it still ACKs the
    // client's data) keep it for another 10 s, still closing.
    t.touch(&key(1), 1005, instance(1, TCP_FIN | TCP_ACK));
    t.touch(&key(1), 1005, client(TCP_ACK));
    assert_eq!(
        t.lookup_state(&key(1), 1000 + TCP_FIN_TIMEOUT),
        Some((pin(1), PinState::Closing))
    );
    assert_eq!(t.lookup(&key(1), 1001 + TCP_FIN_TIMEOUT), None);
    confirmed(&t, 3, 3, 1000);
    t.touch(&key(3), 1000, instance(3, TCP_FIN | TCP_ACK));
    t.touch(&key(3), 1008, instance(3, TCP_ACK));
    assert_eq!(
        t.lookup_state(&key(3), 1008 + TCP_FIN_TIMEOUT),
        Some((pin(3), PinState::Closing))
    );
    confirmed(&t, 2, 2, 1000);
    assert!(t.touch(&key(2), 1000, instance(2, TCP_RST)));
    assert_eq!(t.lookup(&key(2), 1000), None);
}

#[test]
fn clock_wraps() {
    let t = table(64);
    ins(&t, 1, pin(1), u32::MAX - 5);
    assert_eq!(t.lookup(&key(1), 10), Some(pin(1)));
    assert_eq!(t.lookup(&key(1), UNCONFIRMED_TIMEOUT), None);
    // The deadline is kept in 24 bits: wrapping there works too.
    let t = table(64);
    ins(&t, 1, pin(1), (1 << 24) - 5);
    assert_eq!(t.lookup(&key(1), 1 << 24), Some(pin(1)));
    assert_eq!(t.lookup(&key(1), (1 << 24) + UNCONFIRMED_TIMEOUT), None);
}

#[test]
fn full_bucket_evicts_the_soonest_unconfirmed() {
    // One bucket: every key lands in it.
    let t = table(WAYS);
    for i in 0..WAYS as u16 {
        assert_eq!(ins(&t, i, pin(i), 100 + u32::from(i)), Inserted::Free);
    }
    assert_eq!(ins(&t, 99, pin(99), 105), Inserted::Evicted);
    assert_eq!(
        t.lookup(&key(0), 105),
        None,
        "the soonest-to-expire flow went"
    );
    for i in 1..WAYS as u16 {
        assert_eq!(t.lookup(&key(i), 105), Some(pin(i)));
    }
    // An expired slot is reused before a live one is evicted.
    assert_eq!(
        ins(&t, 98, pin(98), 101 + UNCONFIRMED_TIMEOUT + 1),
        Inserted::Expired
    );
}

#[test]
fn busy_confirmed_pins_are_never_evicted() {
    let t = table(WAYS);
    for i in 0..WAYS as u16 {
        confirmed(&t, i, i, 100);
    }
    let busy = 100 + CONFIRMED_IDLE_EVICT - 1;
    for n in 0..1000u16 {
        assert_eq!(ins(&t, 1000 + n, pin(1000 + n), busy), Inserted::Full);
    }
    for i in 0..WAYS as u16 {
        assert_eq!(t.lookup(&key(i), busy), Some(pin(i)));
    }
    // Once idle for a minute, the one idle longest may go.
    t.touch(&key(1), 101, instance(1, TCP_ACK));
    let idle = 101 + CONFIRMED_IDLE_EVICT;
    assert_eq!(ins(&t, 77, pin(77), idle), Inserted::Evicted);
    assert_eq!(
        t.lookup(&key(1), idle),
        Some(pin(1)),
        "the more recent one stays"
    );
    // Unconfirmed pins go first, even when a confirmed one is closer to
    // its deadline.
    let t = table(WAYS);
    confirmed(&t, 0, 0, 100);
    let late = 100 + TCP_TIMEOUT - 20;
    for i in 1..WAYS as u16 {
        ins(&t, i, pin(i), late - 20);
    }
    // The confirmed pin has 20 s left, the unconfirmed ones 10 s.
    assert_eq!(ins(&t, 50, pin(50), late), Inserted::Evicted);
    assert_eq!(t.lookup(&key(0), late), Some(pin(0)));
}

/// Issue 8's experiment: 1,000 confirmed pins, then 32,768 spoofed SYNs
/// (new flows that are never answered) in an 8,192-slot table.
#[test]
fn syn_flood_leaves_confirmed_pins_alone() {
    let t = table(8192);
    for i in 0..1000u16 {
        confirmed(&t, i, 20000 + (i % 100), 10);
    }
    let mut k = key(0);
    for n in 0..32768u32 {
        k.addr[4..8].copy_from_slice(&n.to_le_bytes());
        k.port = n as u16;
        if t.lookup(&k, 20).is_none() {
            t.insert(&k, pin(30000), None, 20, true);
        }
    }
    for i in 0..1000u16 {
        assert_eq!(
            t.lookup(&key(i), 20),
            Some(pin(20000 + (i % 100))),
            "pin {i} survived"
        );
    }
}

#[test]
fn repinning_a_flow_replaces_its_slot() {
    let t = table(WAYS);
    confirmed(&t, 1, 1, 0);
    // Another CPU pinned it since this one looked: not replaced.
    assert_eq!(ins(&t, 1, pin(7), 1), Inserted::Raced);
    assert_eq!(t.lookup(&key(1), 1), Some(pin(1)));
    // Its allocation went (the caller found the pin dead): re-pin.
    assert_eq!(
        t.insert(&key(1), pin(7), Some(pin(1)), 1, true),
        Inserted::Expired
    );
    assert_eq!(t.lookup(&key(1), 2), Some(pin(7)));
    assert_eq!(t.live(2), 1, "no duplicate slot");
}

#[test]
fn ids_keep_48_bits() {
    let t = table(64);
    let p = Pin {
        anon: 65535,
        id: (1 << 48) - 1,
    };
    t.insert(&key(1), p, None, 0, true);
    assert_eq!(t.lookup(&key(1), 0), Some(p));
}

proptest! {
    /// Against a model without collisions: with room to spare, every
    /// inserted flow is found with its pin until it times out.
    #[test]
    fn model(ops in proptest::collection::vec((0u16..40, 1u16..1000, 0u32..20, any::<bool>()), 1..200)) {
        let t = table(1024);
        let mut model = std::collections::HashMap::new();
        let mut now = 1000u32;
        for (port, anon, dt, answer) in ops {
            now += dt;
            model.retain(|_, (_, dl): &mut (Pin, u32)| *dl >= now);
            match t.lookup(&key(port), now) {
                Some(p) => {
                    prop_assert_eq!(Some(&p), model.get(&port).map(|(p, _)| p));
                    if answer {
                        t.touch(&key(port), now, instance(p.anon, TCP_ACK));
                        model.insert(port, (p, now + TCP_TIMEOUT));
                    }
                }
                None => {
                    prop_assert!(!model.contains_key(&port));
                    ins(&t, port, pin(anon), now);
                    model.insert(port, (pin(anon), now + UNCONFIRMED_TIMEOUT));
                }
            }
        }
    }
}

/// Many CPUs inserting, touching and looking up at once: a found pin is
/// always one that was inserted for that very key, and a confirmed pin
/// survives every other flow's traffic.
#[test]
fn concurrent_use_never_mixes_flows() {
    let t = Arc::new(table(64));
    let keeper = key(60000);
    confirmed(&t, 60000, 5, 0);
    let threads: Vec<_> = (0..4u16)
        .map(|n| {
            let t = t.clone();
            std::thread::spawn(move || {
                for round in 0..20_000u32 {
                    let port = (round as u16 % 200) + n * 1000;
                    let k = key(port);
                    let now = round / 1000;
                    match t.lookup(&k, now) {
                        Some(p) => assert_eq!(p, pin(port), "key {port} found another flow's pin"),
                        None => {
                            t.insert(&k, pin(port), None, now, true);
                        }
                    }
                    let flags = [TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN][round as usize % 4];
                    t.touch(&k, now, instance(port, flags));
                    t.touch(&k, now, client(flags));
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(
        t.lookup_state(&keeper, 20),
        Some((pin(5), PinState::Confirmed))
    );
}

#[test]
fn a_peer_reply_keeps_the_anonymous_port_only_on_a_direct_flow() {
    use crate::vpm_flow::peer_keeps_anon;
    let this = Pin { anon: 20005, id: 7 };
    let other = Pin { anon: 20006, id: 8 };
    let old = Pin { anon: 20005, id: 3 };
    // Came to the anonymous port directly, never through the fixed port.
    assert!(peer_keeps_anon(Some(this), None, this));
    // A pin of another allocation on the fixed port does not count.
    assert!(peer_keeps_anon(Some(this), Some(other), this));
    // No mark (lost, or a client of the fixed port): translated.
    assert!(!peer_keeps_anon(None, None, this));
    assert!(!peer_keeps_anon(None, Some(this), this));
    // A mark of an earlier allocation on the same port: translated.
    assert!(!peer_keeps_anon(Some(old), None, this));
    // Both: the flow through the fixed port wins (a forged mark cannot
    // take its replies).
    assert!(!peer_keeps_anon(Some(this), Some(this), this));
}
