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
    /// The nonce of the request waiting for its answer.
    #[serde(skip)]
    nonce: Option<[u8; 12]>,
    /// Deleting (lifetime 0 sent) rather than mapping.
    #[serde(skip)]
    deleting: bool,
}

/// What an answer did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Granted {
        index: usize,
        negotiated: u16,
        lifetime: u32,
    },
    Deleted {
        index: usize,
    },
    Refused {
        index: usize,
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

/// A request to send: the entry, and the message without its key id,
/// sequence number, time and epoch (the agent sets those).
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
        let entries = wants
            .into_iter()
            .map(|want| Entry {
                want,
                status: Status::Pending,
                next_send_ms: now_ms,
                rto_ms: FIRST_RTO_MS,
                nonce: None,
                deleting: false,
            })
            .collect();
        Self {
            entries,
            epochs: Default::default(),
        }
    }

    /// Marks entry `i` for deletion: a lifetime 0 goes out at once, and
    /// the entry is dropped when the answer comes (or after the
    /// retransmissions).
    pub fn release(&mut self, i: usize, now_ms: u64) {
        let e = &mut self.entries[i];
        e.deleting = true;
        e.next_send_ms = now_ms;
        e.rto_ms = FIRST_RTO_MS;
    }

    /// A new configuration's wants: those no longer listed are released
    /// (see [`Self::release`]), new ones requested at once, and the ones
    /// in both kept as they stand.  How many were released and added.
    pub fn reconfigure(&mut self, wants: Vec<Want>, now_ms: u64) -> (usize, usize) {
        let mut released = 0;
        for i in 0..self.entries.len() {
            if !self.entries[i].deleting && !wants.contains(&self.entries[i].want) {
                self.release(i, now_ms);
                released += 1;
            }
        }
        let new: Vec<Want> = wants
            .into_iter()
            .filter(|w| !self.entries.iter().any(|e| !e.deleting && e.want == *w))
            .collect();
        let added = new.len();
        self.entries.extend(Client::new(new, now_ms).entries);
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
        let mut gone = Vec::new();
        for (index, e) in self.entries.iter_mut().enumerate() {
            if e.next_send_ms > now_ms {
                continue;
            }
            if e.deleting && e.rto_ms > MAX_RTO_MS / 4 {
                // A delete the peer never answered: its lifetime ends it.
                gone.push(index);
                continue;
            }
            let n = nonce();
            e.nonce = Some(n);
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
        for i in gone.into_iter().rev() {
            self.entries.remove(i);
        }
        out
    }

    /// When [`Self::due`] has something next.
    pub fn next_due(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.next_send_ms).min()
    }

    /// An authenticated answer from `peer` at `now_ms`; `jitter` as for
    /// [`Self::due`].  Answers whose nonce no entry waits for are
    /// ignored (None).
    pub fn answer(
        &mut self,
        peer: &str,
        msg: &Msg,
        now_ms: u64,
        mut jitter: impl FnMut(u64) -> u64,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let restarted = match self.epochs.insert(peer.to_string(), msg.epoch) {
            Some(old) => old != msg.epoch,
            None => false,
        };
        if restarted {
            for e in self.entries.iter_mut().filter(|e| e.want.peer == peer) {
                e.next_send_ms = now_ms;
                e.rto_ms = FIRST_RTO_MS;
            }
            events.push(Event::PeerRestarted {
                peer: peer.to_string(),
            });
        }
        let Some(index) = self
            .entries
            .iter()
            .position(|e| e.want.peer == peer && e.nonce == Some(msg.nonce))
        else {
            return events;
        };
        let e = &mut self.entries[index];
        e.nonce = None;
        e.rto_ms = FIRST_RTO_MS;
        if e.deleting {
            if msg.result == ResultCode::Success {
                self.entries.remove(index);
                events.push(Event::Deleted { index });
            }
            return events;
        }
        if msg.result == ResultCode::Success && msg.negotiated != 0 && msg.lifetime > 0 {
            let life_ms = u64::from(msg.lifetime) * 1000;
            e.status = Status::Granted {
                negotiated: msg.negotiated,
                expires_ms: now_ms + life_ms,
            };
            // Renew at half the lifetime, less up to a tenth of jitter,
            // so that peers' renewals spread out.
            e.next_send_ms = now_ms + life_ms / 2 - jitter(life_ms / 10 + 1).min(life_ms / 2);
            events.push(Event::Granted {
                index,
                negotiated: msg.negotiated,
                lifetime: msg.lifetime,
            });
        } else {
            e.status = Status::Refused {
                result: msg.result.name().to_string(),
            };
            e.next_send_ms = now_ms + RETRY_REFUSED_MS;
            events.push(Event::Refused {
                index,
                result: msg.result,
            });
        }
        events
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
        r: &Request,
        result: ResultCode,
        negotiated: u16,
        lifetime: u32,
        epoch: u32,
    ) -> Msg {
        let mut m = sample();
        m.answer = true;
        m.nonce = r.nonce;
        m.result = result;
        m.negotiated = negotiated;
        m.lifetime = lifetime;
        m.epoch = epoch;
        m
    }

    #[test]
    fn request_retransmit_grant_renew() {
        let mut c = Client::new(vec![want("a")], 0);
        let mut n = 0u8;
        let mut nonce = || {
            n += 1;
            [n; 12]
        };
        let r = c.due(0, &mut nonce, |_| 0);
        assert_eq!(r.len(), 1);
        assert!(c.due(999, &mut nonce, |_| 0).is_empty());
        let r = c.due(1000, &mut nonce, |_| 0);
        assert_eq!(r.len(), 1, "retransmitted after 1 s");
        assert_eq!(c.next_due(), Some(3000), "then after 2 s");
        // An answer to the first (stale) nonce is ignored.
        let stale = Request {
            nonce: [1; 12],
            ..r[0].clone_req()
        };
        assert!(c
            .answer(
                "s",
                &answer_to(&stale, ResultCode::Success, 1, 100, 5),
                1100,
                |_| 0
            )
            .is_empty());
        let ev = c.answer(
            "s",
            &answer_to(&r[0], ResultCode::Success, 41000, 100, 5),
            1200,
            |_| 0,
        );
        assert_eq!(
            ev,
            vec![Event::Granted {
                index: 0,
                negotiated: 41000,
                lifetime: 100
            }]
        );
        assert_eq!(
            c.next_due(),
            Some(1200 + 50_000),
            "renewal at half the lifetime"
        );
        assert_eq!(c.expire(101_199), 0);
        assert_eq!(c.expire(101_200), 1);
    }

    #[test]
    fn refusal_then_epoch_change() {
        let mut c = Client::new(vec![want("a"), want("b")], 0);
        let r = c.due(0, || [1; 12], |_| 0);
        let r2 = Request {
            nonce: [2; 12],
            ..r[1].clone_req()
        };
        c.entries[1].nonce = Some([2; 12]);
        let ev = c.answer(
            "s",
            &answer_to(&r[0], ResultCode::NoResources, 0, 0, 5),
            10,
            |_| 0,
        );
        assert_eq!(
            ev,
            vec![Event::Refused {
                index: 0,
                result: ResultCode::NoResources
            }]
        );
        assert_eq!(c.entries[0].next_send_ms, 10 + RETRY_REFUSED_MS);
        c.answer(
            "s",
            &answer_to(&r2, ResultCode::Success, 41001, 100, 5),
            20,
            |_| 0,
        );
        // A new epoch: everything of that peer is due at once.
        let mut m = answer_to(&r2, ResultCode::Success, 41001, 100, 6);
        m.nonce = [9; 12];
        let ev = c.answer("s", &m, 30, |_| 0);
        assert_eq!(ev, vec![Event::PeerRestarted { peer: "s".into() }]);
        assert_eq!(c.due(30, || [3; 12], |_| 0).len(), 2);
    }

    #[test]
    fn release_sends_lifetime_zero_and_drops_on_answer() {
        let mut c = Client::new(vec![want("a")], 0);
        c.release(0, 0);
        let r = c.due(0, || [4; 12], |_| 0);
        assert_eq!(r[0].lifetime, 0);
        let ev = c.answer(
            "s",
            &answer_to(&r[0], ResultCode::Success, 0, 0, 5),
            5,
            |_| 0,
        );
        assert_eq!(ev, vec![Event::Deleted { index: 0 }]);
        assert!(c.entries.is_empty());
    }

    impl Request {
        fn clone_req(&self) -> Request {
            Request {
                peer: self.peer.clone(),
                nonce: self.nonce,
                aid: self.aid.clone(),
                port: self.port,
                proto: self.proto,
                lifetime: self.lifetime,
            }
        }
    }
}
