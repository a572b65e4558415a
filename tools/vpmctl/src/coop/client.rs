//! The client side of the cooperative protocol: the mappings this host
//! wants from its peers, when to (re)send each request, and what an
//! answer does to them (docs/COOPERATIVE.md, "Client").  No I/O here.
//!
//! A wanted mapping is requested at once, retransmitted with a doubling
//! delay (1 s up to 32 s) until an answer comes, renewed at half its
//! granted lifetime with up to a tenth of jitter, and requested again at
//! once when the peer's epoch changes (the peer lost its state).  A
//! refused request is retried after [`RETRY_REFUSED_MS`].

use serde::{Deserialize, Serialize};

use super::wire::{Msg, ResultCode};
use crate::aid::Aid;
use crate::proto::Proto;

/// First retransmission delay; doubles up to [`MAX_RTO_MS`].
const FIRST_RTO_MS: u64 = 1_000;
const MAX_RTO_MS: u64 = 32_000;
/// Wait after a refusal before asking again.
pub const RETRY_REFUSED_MS: u64 = 30_000;

/// A mapping this host wants from a peer (the configuration's `[[map]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Want {
    pub peer: String,
    pub aid: Aid,
    pub port: u16,
    #[serde(default)]
    pub proto: Proto,
    /// Seconds asked for.
    #[serde(default = "default_lifetime")]
    pub lifetime: u32,
}

fn default_lifetime() -> u32 {
    120
}

/// Where a wanted mapping stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Status {
    /// Asked, no answer yet.
    Pending,
    /// Granted: the negotiated port, until `expires_ms`.
    Granted { negotiated: u16, expires_ms: u64 },
    /// The peer refused; asked again later.
    Refused { result: String },
}

/// A wanted mapping and its progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub want: Want,
    #[serde(flatten)]
    pub status: Status,
    /// When to send next (ms, wall clock).
    #[serde(skip)]
    next_send_ms: u64,
    /// The current retransmission delay.
    #[serde(skip)]
    rto_ms: u64,
    /// The current request's nonce (kept across its retransmissions, so
    /// that a late answer to an earlier copy still counts) and when its
    /// first copy went out (a grant's lifetime counts from then).
    #[serde(skip)]
    request: Option<([u8; 12], u64)>,
    /// Deleting (lifetime 0 sent) rather than mapping.
    #[serde(skip)]
    deleting: bool,
}

impl Entry {
    fn new(want: Want, now_ms: u64) -> Self {
        Self {
            want,
            status: Status::Pending,
            next_send_ms: now_ms,
            rto_ms: FIRST_RTO_MS,
            request: None,
            deleting: false,
        }
    }

    /// A new request, due at once.
    fn restart(&mut self, now_ms: u64) {
        self.next_send_ms = now_ms;
        self.rto_ms = FIRST_RTO_MS;
        self.request = None;
    }

    /// Whether it is being deleted (no longer wanted).
    pub fn is_deleting(&self) -> bool {
        self.deleting
    }

    fn same_mapping(&self, w: &Want) -> bool {
        self.want.peer == w.peer && self.want.aid == w.aid && self.want.port == w.port
    }
}

/// What an answer did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Granted {
        want: Want,
        negotiated: u16,
        lifetime: u32,
    },
    /// The answer to a delete (final whatever its result: a refused
    /// delete is not retried, the record's lifetime ends it).
    Deleted {
        want: Want,
        result: ResultCode,
    },
    Refused {
        want: Want,
        result: ResultCode,
    },
    /// The peer's epoch changed: its mappings are requested again.
    PeerRestarted {
        peer: String,
    },
}

/// Every wanted mapping, and each peer's last epoch.
#[derive(Debug, Default)]
pub struct Client {
    pub entries: Vec<Entry>,
    epochs: std::collections::BTreeMap<String, u32>,
}

/// A request to send (the agent adds key id, sequence, time and epoch).
pub struct Request {
    pub peer: String,
    pub nonce: [u8; 12],
    pub aid: Aid,
    pub port: u16,
    pub proto: Proto,
    pub lifetime: u32,
}

impl Client {
    pub fn new(wants: Vec<Want>, now_ms: u64) -> Self {
        Self {
            entries: wants.into_iter().map(|w| Entry::new(w, now_ms)).collect(),
            epochs: Default::default(),
        }
    }

    /// Each peer's last epoch (kept in the state file).
    pub fn epochs(&self) -> &std::collections::BTreeMap<String, u32> {
        &self.epochs
    }

    /// Takes over the grants of `saved` (a previous run's entries, from
    /// its state file) that are still running, for the same mappings of
    /// a peer that `same_peer` says is still the same host, and the
    /// epochs it knew of those peers: a restarted agent keeps the data
    /// path as it was, renews at once, and sees a peer's restart in the
    /// first answer.
    pub fn resume(
        &mut self,
        saved: &[Entry],
        epochs: &std::collections::BTreeMap<String, u32>,
        same_peer: impl Fn(&str) -> bool,
        now_ms: u64,
    ) -> usize {
        for (peer, epoch) in epochs.iter().filter(|(p, _)| same_peer(p)) {
            self.epochs.insert(peer.clone(), *epoch);
        }
        let mut n = 0;
        for e in self.entries.iter_mut().filter(|e| same_peer(&e.want.peer)) {
            let grant = saved.iter().find_map(|s| match s.status {
                Status::Granted {
                    negotiated,
                    expires_ms,
                } if s.want == e.want && expires_ms > now_ms => Some((negotiated, expires_ms)),
                _ => None,
            });
            if let Some((negotiated, expires_ms)) = grant {
                e.status = Status::Granted {
                    negotiated,
                    expires_ms,
                };
                n += 1;
            }
        }
        n
    }

    /// Marks entry `i` for deletion: a lifetime 0 goes out at once, and
    /// the entry is dropped when the answer comes (or after the
    /// retransmissions).
    pub fn release(&mut self, i: usize, now_ms: u64) {
        let e = &mut self.entries[i];
        e.deleting = true;
        e.restart(now_ms);
    }

    /// A new configuration's wants, by (peer, AID, port): those no longer
    /// listed are released (see [`Self::release`]); those listed again
    /// take the new lifetime and protocols in place (a pending delete of
    /// one is cancelled), renewed at once; new ones are requested at
    /// once.  How many were released and added.
    pub fn reconfigure(&mut self, wants: Vec<Want>, now_ms: u64) -> (usize, usize) {
        let mut released = 0;
        for i in 0..self.entries.len() {
            match wants.iter().find(|w| self.entries[i].same_mapping(w)) {
                Some(w) => {
                    let e = &mut self.entries[i];
                    if e.deleting || e.want != *w {
                        e.want = w.clone();
                        e.deleting = false;
                        e.restart(now_ms);
                    }
                }
                None if !self.entries[i].deleting => {
                    self.release(i, now_ms);
                    released += 1;
                }
                None => {}
            }
        }
        let new: Vec<Want> = wants
            .into_iter()
            .filter(|w| !self.entries.iter().any(|e| e.same_mapping(w)))
            .collect();
        let added = new.len();
        self.entries
            .extend(new.into_iter().map(|w| Entry::new(w, now_ms)));
        (released, added)
    }

    /// The requests due at `now_ms`; `nonce` gives fresh nonces, and
    /// `jitter(n)` a number in 0..n.
    pub fn due(
        &mut self,
        now_ms: u64,
        mut nonce: impl FnMut() -> [u8; 12],
        mut jitter: impl FnMut(u64) -> u64,
    ) -> Vec<Request> {
        let mut out = Vec::new();
        self.entries.retain(|e| {
            // A delete the peer never answered: its lifetime ends it.
            !(e.deleting && e.next_send_ms <= now_ms && e.rto_ms > MAX_RTO_MS / 4)
        });
        for e in &mut self.entries {
            if e.next_send_ms > now_ms {
                continue;
            }
            let (n, _) = *e.request.get_or_insert_with(|| (nonce(), now_ms));
            e.next_send_ms = now_ms + e.rto_ms + jitter(e.rto_ms / 10 + 1);
            e.rto_ms = (e.rto_ms * 2).min(MAX_RTO_MS);
            out.push(Request {
                peer: e.want.peer.clone(),
                nonce: n,
                aid: e.want.aid.clone(),
                port: e.want.port,
                proto: e.want.proto,
                lifetime: if e.deleting { 0 } else { e.want.lifetime },
            });
        }
        out
    }

    /// When [`Self::due`] has something next.
    pub fn next_due(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.next_send_ms).min()
    }

    /// An authenticated answer from `peer` at `now_ms`; `jitter` as for
    /// [`Self::due`].  None, and nothing changed, when no request waits
    /// for its nonce (a late duplicate, or a message reflected back).
    pub fn answer(
        &mut self,
        peer: &str,
        msg: &Msg,
        now_ms: u64,
        mut jitter: impl FnMut(u64) -> u64,
    ) -> Option<Vec<Event>> {
        let index = self
            .entries
            .iter()
            .position(|e| e.want.peer == peer && e.request.is_some_and(|(n, _)| n == msg.nonce))?;
        let mut events = Vec::new();
        let sent_ms = self.entries[index].request.map_or(now_ms, |(_, t)| t);
        let e = &mut self.entries[index];
        e.request = None;
        e.rto_ms = FIRST_RTO_MS;
        if e.deleting {
            let want = e.want.clone();
            self.entries.remove(index);
            events.push(Event::Deleted {
                want,
                result: msg.result,
            });
        } else if msg.result == ResultCode::Success && msg.negotiated != 0 && msg.lifetime > 0 {
            // The lifetime counts from the request, as the peer's does
            // (give or take the way there).
            let life_ms = u64::from(msg.lifetime) * 1000;
            e.status = Status::Granted {
                negotiated: msg.negotiated,
                expires_ms: sent_ms + life_ms,
            };
            // Renew at half the lifetime, less up to a tenth of jitter,
            // so that peers' renewals spread out.
            e.next_send_ms = sent_ms + life_ms / 2 - jitter(life_ms / 10 + 1).min(life_ms / 2);
            events.push(Event::Granted {
                want: e.want.clone(),
                negotiated: msg.negotiated,
                lifetime: msg.lifetime,
            });
        } else {
            e.status = Status::Refused {
                result: msg.result.name().to_string(),
            };
            e.next_send_ms = now_ms + RETRY_REFUSED_MS;
            events.push(Event::Refused {
                want: e.want.clone(),
                result: msg.result,
            });
        }
        // The epoch only from an answer to our own request.
        let restarted = self
            .epochs
            .insert(peer.to_string(), msg.epoch)
            .is_some_and(|old| old != msg.epoch);
        if restarted {
            // The peer lost its state: its grants may name ports it has
            // given to others since, so the data path refuses them until
            // they are granted again.
            for (i, e) in self.entries.iter_mut().enumerate() {
                if e.want.peer != peer || i == index {
                    continue;
                }
                if !e.deleting {
                    e.status = Status::Pending;
                }
                if e.request.is_none() {
                    e.restart(now_ms);
                }
            }
            events.push(Event::PeerRestarted {
                peer: peer.to_string(),
            });
        }
        Some(events)
    }

    /// Drops grants whose lifetime ran out unrenewed (the peer dropped
    /// them too): back to pending.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        for e in &mut self.entries {
            if let Status::Granted { expires_ms, .. } = e.status {
                if expires_ms <= now_ms {
                    e.status = Status::Pending;
                    n += 1;
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coop::wire::tests::sample;

    fn want(aid: &str) -> Want {
        Want {
            peer: "s".into(),
            aid: aid.parse().unwrap(),
            port: 9000,
            proto: Proto::Both,
            lifetime: 100,
        }
    }

    fn answer_to(
        nonce: [u8; 12],
        result: ResultCode,
        negotiated: u16,
        lifetime: u32,
        epoch: u32,
    ) -> Msg {
        let mut m = sample();
        m.answer = true;
        m.nonce = nonce;
        m.result = result;
        m.negotiated = negotiated;
        m.lifetime = lifetime;
        m.epoch = epoch;
        m
    }

    fn counter() -> impl FnMut() -> [u8; 12] {
        let mut n = 0u8;
        move || {
            n += 1;
            [n; 12]
        }
    }

    #[test]
    fn request_retransmit_grant_renew() {
        let mut c = Client::new(vec![want("a")], 0);
        let mut nonce = counter();
        let r = c.due(0, &mut nonce, |_| 0);
        assert_eq!(r.len(), 1);
        assert!(c.due(999, &mut nonce, |_| 0).is_empty());
        let r2 = c.due(1000, &mut nonce, |_| 0);
        assert_eq!(r2.len(), 1, "retransmitted after 1 s");
        assert_eq!(r2[0].nonce, r[0].nonce, "same request, same nonce");
        assert_eq!(c.next_due(), Some(3000), "then after 2 s");
        // An answer with another nonce changes nothing.
        assert!(c
            .answer(
                "s",
                &answer_to([77; 12], ResultCode::Success, 1, 100, 5),
                1100,
                |_| 0
            )
            .is_none());
        // A late answer to the first copy counts, from its send time.
        let ev = c
            .answer(
                "s",
                &answer_to(r[0].nonce, ResultCode::Success, 41000, 100, 5),
                1200,
                |_| 0,
            )
            .unwrap();
        assert_eq!(
            ev,
            vec![Event::Granted {
                want: want("a"),
                negotiated: 41000,
                lifetime: 100
            }]
        );
        assert_eq!(c.next_due(), Some(50_000), "renewal at half the lifetime");
        assert_eq!(c.expire(99_999), 0);
        assert_eq!(c.expire(100_000), 1);
        // The renewal is a new request.
        let r3 = c.due(50_000, &mut nonce, |_| 0);
        assert_ne!(r3[0].nonce, r[0].nonce);
    }

    #[test]
    fn refusal_then_epoch_change() {
        let mut c = Client::new(vec![want("a"), want("b")], 0);
        let r = c.due(0, counter(), |_| 0);
        let ev = c
            .answer(
                "s",
                &answer_to(r[0].nonce, ResultCode::NoResources, 0, 0, 5),
                10,
                |_| 0,
            )
            .unwrap();
        assert_eq!(
            ev,
            vec![Event::Refused {
                want: want("a"),
                result: ResultCode::NoResources
            }]
        );
        assert_eq!(c.entries[0].next_send_ms, 10 + RETRY_REFUSED_MS);
        c.answer(
            "s",
            &answer_to(r[1].nonce, ResultCode::Success, 41001, 100, 5),
            20,
            |_| 0,
        );
        // A new epoch, seen in an answer to our own request: everything
        // of that peer is due at once.
        let r = c.due(50_000, counter(), |_| 0);
        let ev = c
            .answer(
                "s",
                &answer_to(r[0].nonce, ResultCode::Success, 41001, 100, 6),
                50_010,
                |_| 0,
            )
            .unwrap();
        assert!(ev.contains(&Event::PeerRestarted { peer: "s".into() }));
        // a, just granted under the new epoch, stands; b, granted under
        // the old one, is pending (the data path refuses it) until its
        // request, still on its way, is answered.
        assert!(matches!(
            c.entries[0].status,
            Status::Granted {
                negotiated: 41001,
                ..
            }
        ));
        assert_eq!(c.entries[1].status, Status::Pending);
        assert!(c.due(50_010, counter(), |_| 0).is_empty());
    }

    #[test]
    fn a_restarted_agent_resumes_running_grants() {
        let mut old = Client::new(vec![want("a"), want("b")], 0);
        old.entries[0].status = Status::Granted {
            negotiated: 41001,
            expires_ms: 100_000,
        };
        old.entries[1].status = Status::Granted {
            negotiated: 41002,
            expires_ms: 5_000,
        };
        let mut other = want("b");
        other.lifetime = 7;
        let mut c = Client::new(vec![want("a"), other, want("c")], 10_000);
        // a's grant runs on; b's expired (and its want changed); c is new.
        assert_eq!(
            c.resume(&old.entries, &Default::default(), |_| true, 10_000),
            1
        );
        assert_eq!(
            c.entries[0].status,
            Status::Granted {
                negotiated: 41001,
                expires_ms: 100_000
            }
        );
        assert_eq!(c.entries[1].status, Status::Pending);
        assert_eq!(c.entries[2].status, Status::Pending);
        // Every one is asked at once all the same.
        assert_eq!(c.due(10_000, counter(), |_| 0).len(), 3);
        // A peer that is another host now (its addresses changed): its
        // grants are not taken over, nor its epoch.
        let mut c = Client::new(vec![want("a")], 10_000);
        let epochs = [("s".to_string(), 5u32)].into_iter().collect();
        assert_eq!(c.resume(&old.entries, &epochs, |_| false, 10_000), 0);
        assert_eq!(c.entries[0].status, Status::Pending);
        assert!(c.epochs().is_empty());
        // The same host: its epoch is known, so a new one in the first
        // answer is a restart.
        let mut c = Client::new(vec![want("a")], 10_000);
        assert_eq!(c.resume(&old.entries, &epochs, |_| true, 10_000), 1);
        let r = c.due(10_000, counter(), |_| 0);
        let ev = c
            .answer(
                "s",
                &answer_to(r[0].nonce, ResultCode::Success, 41009, 100, 6),
                10_010,
                |_| 0,
            )
            .unwrap();
        assert!(ev.contains(&Event::PeerRestarted { peer: "s".into() }));
    }

    #[test]
    fn a_delete_ends_with_any_answer() {
        for result in [
            ResultCode::Success,
            ResultCode::NotAuthorized,
            ResultCode::NoSuchPort,
        ] {
            let mut c = Client::new(vec![want("a")], 0);
            c.release(0, 0);
            let r = c.due(0, counter(), |_| 0);
            assert_eq!(r[0].lifetime, 0);
            let ev = c
                .answer("s", &answer_to(r[0].nonce, result, 0, 0, 5), 5, |_| 0)
                .unwrap();
            assert_eq!(
                ev,
                vec![Event::Deleted {
                    want: want("a"),
                    result
                }]
            );
            assert!(c.entries.is_empty());
        }
        // Unanswered: dropped after a few retransmissions.
        let mut c = Client::new(vec![want("a")], 0);
        c.release(0, 0);
        let mut t = 0;
        while !c.entries.is_empty() && t < 100_000 {
            c.due(t, counter(), |_| 0);
            t += 500;
        }
        assert!(c.entries.is_empty() && t < 30_000, "{t}");
    }

    #[test]
    fn reconfigure_keeps_mappings_by_key() {
        let mut c = Client::new(vec![want("a"), want("b")], 0);
        let r = c.due(0, counter(), |_| 0);
        c.answer(
            "s",
            &answer_to(r[0].nonce, ResultCode::Success, 41000, 100, 5),
            1,
            |_| 0,
        );
        // a's lifetime changes: renewed in place, not deleted; b goes.
        let mut a2 = want("a");
        a2.lifetime = 300;
        assert_eq!(c.reconfigure(vec![a2.clone()], 10), (1, 0));
        let r = c.due(10, counter(), |_| 0);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].aid.as_str(), r[0].lifetime), ("a", 300));
        assert_eq!((r[1].aid.as_str(), r[1].lifetime), ("b", 0));
        // b comes back before its delete was answered: cancelled.
        assert_eq!(c.reconfigure(vec![a2, want("b")], 20), (0, 0));
        let r = c.due(20, counter(), |_| 0);
        assert_eq!((r[0].aid.as_str(), r[0].lifetime), ("b", 100));
    }
}
