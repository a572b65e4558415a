//! The server side of the cooperative protocol: what the agent answers
//! to an authenticated MAP request from a peer, and which mappings it
//! keeps on the peers' behalf (docs/COOPERATIVE.md, "Server").
//!
//! No I/O here: the kernel is reached through [`Allocator`], so that
//! every decision is tested on the host.  A mapping is a record per
//! (peer, AID, fixed port): peers that ask for the same AID share its
//! allocation, and each renews or deletes only its own record.  The
//! allocation itself is released when the last record of an allocation
//! the agent created goes; one that existed before (an instance started
//! with `vpmctl exec`, say) is left alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::wire::{proto_of, Msg, ResultCode};
use crate::aid::Aid;
use crate::proto::Proto;

/// The shortest lifetime granted (s): renewals at half of it stay sane.
pub const MIN_LIFETIME: u32 = 10;

/// A fixed port this host offers to peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub port: u16,
    /// What the agent allocates (whatever protocols a request names).
    #[serde(default)]
    pub proto: Proto,
    /// The AIDs peers may ask for: at least one (no wildcard, so that a
    /// peer cannot fill the range with AIDs of its choosing).
    pub aids: Vec<Aid>,
    /// The peers that may ask (empty: every configured peer).
    #[serde(default)]
    pub peers: Vec<String>,
}

/// Why the kernel did not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The range or the entry limit is exhausted.
    NoResources,
    /// Anything else (the message says what).
    Failed(String),
}

/// An allocation in the kernel, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alloc {
    pub anon: u16,
    pub proto: Proto,
    /// A cgroup is attached (an instance started by `vpmctl exec`, or
    /// `add --cgroup`): someone else relies on it.
    pub claimed: bool,
}

/// The kernel's allocations, as the server needs them.
pub trait Allocator {
    /// The allocation of (aid, port), if there is one.
    fn find(&mut self, aid: &Aid, port: u16) -> Result<Option<Alloc>, AllocError>;
    /// Allocates (aid, port) for `proto`; its anonymous port.
    fn allocate(&mut self, aid: &Aid, port: u16, proto: Proto) -> Result<u16, AllocError>;
    /// Releases the allocation of (aid, port).
    fn release(&mut self, aid: &Aid, port: u16) -> Result<(), AllocError>;
}

/// One peer's mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub peer: String,
    pub aid: Aid,
    pub port: u16,
    pub proto: Proto,
    pub negotiated: u16,
    /// Wall clock, ms since the Unix epoch.
    pub expires_ms: u64,
}

/// The server's state: kept in the agent's state file, so that a
/// restarted agent still knows whose mappings are whose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    pub records: Vec<Record>,
    /// Allocations this agent created, with the anonymous port it got:
    /// released only while the kernel still has that very allocation
    /// and nobody attached a cgroup to it.
    pub created: BTreeMap<String, (Aid, u16, u16)>,
}

/// What handling a request did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Granted {
        negotiated: u16,
        lifetime: u32,
        created: bool,
    },
    Deleted {
        released: bool,
    },
    /// A delete of a mapping this peer did not have.
    Absent,
    Refused(ResultCode, String),
}

/// The answer to a request, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub result: ResultCode,
    pub negotiated: u16,
    pub lifetime: u32,
    pub outcome: Outcome,
    /// The kernel no longer had (or had moved) an allocation that records
    /// named: its mappings were lost, and the agent takes a new epoch so
    /// that every peer asks again.
    pub state_lost: bool,
}

impl Answer {
    fn refused(code: ResultCode, why: String) -> Self {
        Self {
            result: code,
            negotiated: 0,
            lifetime: 0,
            outcome: Outcome::Refused(code, why),
            state_lost: false,
        }
    }
}

/// The server's configuration, as far as requests need it.
pub struct Policy<'a> {
    pub exports: &'a [Export],
    pub max_lifetime: u32,
    /// Records one peer may hold.
    pub max_per_peer: usize,
}

fn created_key(aid: &Aid, port: u16) -> String {
    format!("{aid}/{port}")
}

impl ServerState {
    fn position(&self, peer: &str, aid: &Aid, port: u16) -> Option<usize> {
        self.records
            .iter()
            .position(|r| r.peer == peer && r.aid == *aid && r.port == port)
    }

    fn held(&self, aid: &Aid, port: u16) -> bool {
        self.records.iter().any(|r| r.aid == *aid && r.port == port)
    }

    /// Handles a request `req` from `peer` (already authenticated, its
    /// client address checked) at `now_ms`.
    pub fn handle(
        &mut self,
        policy: &Policy<'_>,
        alloc: &mut dyn Allocator,
        peer: &str,
        req: &Msg,
        now_ms: u64,
    ) -> Answer {
        let mine = self.position(peer, &req.aid, req.port);
        // Deletes first: a peer may always drop its own records, even of
        // a port no longer exported.
        if req.lifetime == 0 {
            return match mine {
                Some(i) => {
                    self.records.remove(i);
                    let released = self.release_if_unheld(alloc, &req.aid, req.port);
                    Answer {
                        result: ResultCode::Success,
                        negotiated: 0,
                        lifetime: 0,
                        outcome: Outcome::Deleted { released },
                        state_lost: false,
                    }
                }
                None if self.held(&req.aid, req.port) => Answer::refused(
                    ResultCode::NotAuthorized,
                    format!(
                        "the mapping of {} port {} is another peer's",
                        req.aid, req.port
                    ),
                ),
                None => Answer {
                    result: ResultCode::Success,
                    negotiated: 0,
                    lifetime: 0,
                    outcome: Outcome::Absent,
                    state_lost: false,
                },
            };
        }
        let Some(proto) = proto_of(req.protos) else {
            return Answer::refused(ResultCode::MalformedRequest, "no protocol".into());
        };
        let Some(export) = policy.exports.iter().find(|e| e.port == req.port) else {
            return Answer::refused(
                ResultCode::NoSuchPort,
                format!("port {} is not exported", req.port),
            );
        };
        if !export.peers.is_empty() && !export.peers.iter().any(|p| p == peer) {
            return Answer::refused(
                ResultCode::NotAuthorized,
                format!("port {} is not exported to peer {peer}", req.port),
            );
        }
        if !export.aids.contains(&req.aid) {
            return Answer::refused(
                ResultCode::NotAuthorized,
                format!(
                    "AID {} may not use port {} from peer {peer}",
                    req.aid, req.port
                ),
            );
        }
        if !covers(export.proto, proto) {
            return Answer::refused(
                ResultCode::NoSuchPort,
                format!("port {} is exported for {} only", req.port, export.proto),
            );
        }
        if mine.is_none()
            && self.records.iter().filter(|r| r.peer == peer).count() >= policy.max_per_peer
        {
            return Answer::refused(
                ResultCode::NoResources,
                format!(
                    "peer {peer} holds {} mappings, its limit",
                    policy.max_per_peer
                ),
            );
        }
        let lifetime = req
            .lifetime
            .clamp(MIN_LIFETIME, policy.max_lifetime.max(MIN_LIFETIME));
        let existing = match alloc.find(&req.aid, req.port) {
            Ok(e) => e,
            Err(e) => return alloc_refusal(e),
        };
        let (negotiated, created) = match existing {
            Some(a) if covers(a.proto, proto) => (a.anon, false),
            Some(a) => {
                return Answer::refused(
                    ResultCode::NoSuchPort,
                    format!(
                        "{} port {} is allocated for {} only",
                        req.aid, req.port, a.proto
                    ),
                )
            }
            // The export's protocols, not the request's: a peer asking
            // for TCP alone must not narrow what others get.
            None => match alloc.allocate(&req.aid, req.port, export.proto) {
                Ok(anon) => (anon, true),
                Err(e) => return alloc_refusal(e),
            },
        };
        let key = created_key(&req.aid, req.port);
        if created {
            self.created
                .insert(key, (req.aid.clone(), req.port, negotiated));
        } else if self.created.get(&key).is_some_and(|c| c.2 != negotiated) {
            // Not the allocation the agent made (it was released and
            // made again by someone else): not the agent's to release.
            self.created.remove(&key);
        }
        // Records of the same allocation with another port: the kernel
        // lost the one they were granted.
        let mut state_lost = false;
        for r in self
            .records
            .iter_mut()
            .filter(|r| r.aid == req.aid && r.port == req.port && r.negotiated != negotiated)
        {
            r.negotiated = negotiated;
            state_lost = true;
        }
        let expires_ms = now_ms.saturating_add(u64::from(lifetime) * 1000);
        let rec = Record {
            peer: peer.to_string(),
            aid: req.aid.clone(),
            port: req.port,
            proto,
            negotiated,
            expires_ms,
        };
        match mine {
            Some(i) => self.records[i] = rec,
            None => self.records.push(rec),
        }
        Answer {
            result: ResultCode::Success,
            negotiated,
            lifetime,
            outcome: Outcome::Granted {
                negotiated,
                lifetime,
                created,
            },
            state_lost,
        }
    }

    /// Releases (aid, port) if this agent created it, the kernel still
    /// has that very allocation (same anonymous port, no cgroup attached
    /// since) and no record holds it any more; whether it did.
    pub fn release_if_unheld(&mut self, alloc: &mut dyn Allocator, aid: &Aid, port: u16) -> bool {
        let key = created_key(aid, port);
        if self.held(aid, port) {
            return false;
        }
        // Forgotten whatever happens next: the agent never releases what
        // it did not create, and never twice.
        let Some((_, _, anon)) = self.created.remove(&key) else {
            return false;
        };
        match alloc.find(aid, port) {
            Ok(Some(a)) if a.anon == anon && !a.claimed => alloc.release(aid, port).is_ok(),
            _ => false,
        }
    }

    /// Takes back `peer`'s record of (aid, port), which the data path
    /// could not serve, releasing the allocation if nobody holds it any
    /// more (as an expiry would); whether it released it.
    pub fn withdraw(
        &mut self,
        alloc: &mut dyn Allocator,
        peer: &str,
        aid: &Aid,
        port: u16,
    ) -> bool {
        self.records
            .retain(|r| !(r.peer == peer && r.aid == *aid && r.port == port));
        self.release_if_unheld(alloc, aid, port)
    }

    /// Drops the records whose lifetime ran out at `now_ms`, releasing
    /// what nobody holds any more: the records dropped and whether each
    /// released its allocation.
    pub fn expire(&mut self, alloc: &mut dyn Allocator, now_ms: u64) -> Vec<(Record, bool)> {
        let (gone, kept): (Vec<_>, Vec<_>) =
            self.records.drain(..).partition(|r| r.expires_ms <= now_ms);
        self.records = kept;
        gone.into_iter()
            .map(|r| {
                let released = self.release_if_unheld(alloc, &r.aid, r.port);
                (r, released)
            })
            .collect()
    }

    /// When the next record expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.records.iter().map(|r| r.expires_ms).min()
    }
}

fn covers(have: Proto, want: Proto) -> bool {
    have == Proto::Both || have == want
}

fn alloc_refusal(e: AllocError) -> Answer {
    let why = match e {
        AllocError::NoResources => "no anonymous port is free (range or entry limit)".to_string(),
        AllocError::Failed(m) => format!("the kernel failed: {m}"),
    };
    Answer::refused(ResultCode::NoResources, why)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::coop::wire::tests::sample;

    /// The kernel's table, in memory.
    #[derive(Default)]
    pub(crate) struct FakeKernel {
        pub map: BTreeMap<(Aid, u16), Alloc>,
        pub next: u16,
        pub full: bool,
    }

    impl Allocator for FakeKernel {
        fn find(&mut self, aid: &Aid, port: u16) -> Result<Option<Alloc>, AllocError> {
            Ok(self.map.get(&(aid.clone(), port)).copied())
        }
        fn allocate(&mut self, aid: &Aid, port: u16, proto: Proto) -> Result<u16, AllocError> {
            if self.full {
                return Err(AllocError::NoResources);
            }
            self.next += 1;
            let anon = 40000 + self.next;
            let a = Alloc {
                anon,
                proto,
                claimed: false,
            };
            self.map.insert((aid.clone(), port), a);
            Ok(anon)
        }
        fn release(&mut self, aid: &Aid, port: u16) -> Result<(), AllocError> {
            self.map
                .remove(&(aid.clone(), port))
                .map(|_| ())
                .ok_or(AllocError::Failed("no such allocation".into()))
        }
    }

    fn aid(s: &str) -> Aid {
        s.parse().unwrap()
    }

    fn exports() -> Vec<Export> {
        vec![
            Export {
                port: 9000,
                proto: Proto::Both,
                aids: vec![aid("a"), aid("b"), aid("c")],
                peers: vec![],
            },
            Export {
                port: 9100,
                proto: Proto::Tcp,
                aids: vec![aid("a")],
                peers: vec!["c1".into()],
            },
        ]
    }

    fn req(a: &str, port: u16, lifetime: u32) -> Msg {
        let mut m = sample();
        m.aid = aid(a);
        m.port = port;
        m.lifetime = lifetime;
        m
    }

    fn policy(ex: &[Export]) -> Policy<'_> {
        Policy {
            exports: ex,
            max_lifetime: 600,
            max_per_peer: 2,
        }
    }

    #[test]
    fn grant_renew_share_delete() {
        let ex = exports();
        let p = policy(&ex);
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        let a = s.handle(&p, &mut k, "c1", &req("a", 9000, 120), 0);
        assert_eq!((a.result, a.lifetime), (ResultCode::Success, 120));
        assert!(matches!(a.outcome, Outcome::Granted { created: true, .. }));
        let port = a.negotiated;
        // Allocated for the export's protocols, not the request's TCP.
        let mut m = req("b", 9000, 60);
        m.protos = 1;
        s.handle(&p, &mut k, "c1", &m, 0);
        assert_eq!(k.map[&(aid("b"), 9000)].proto, Proto::Both);
        // A renewal: same port, later expiry, nothing new allocated.
        let a = s.handle(&p, &mut k, "c1", &req("a", 9000, 5000), 1000);
        assert_eq!(a.negotiated, port);
        assert!(matches!(
            a.outcome,
            Outcome::Granted {
                created: false,
                lifetime: 600,
                ..
            }
        ));
        assert_eq!(s.records[0].expires_ms, 601_000);
        // Another peer shares it.
        let a = s.handle(&p, &mut k, "c2", &req("a", 9000, 1), 0);
        assert_eq!(a.negotiated, port);
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.records[2].expires_ms, u64::from(MIN_LIFETIME) * 1000);
        // c2 deletes its own; the allocation stays (c1 holds it).
        let a = s.handle(&p, &mut k, "c2", &req("a", 9000, 0), 0);
        assert_eq!(
            (a.result, a.outcome),
            (ResultCode::Success, Outcome::Deleted { released: false })
        );
        // Then c2 cannot delete c1's.
        let a = s.handle(&p, &mut k, "c2", &req("a", 9000, 0), 0);
        assert_eq!(a.result, ResultCode::NotAuthorized);
        assert!(k.map.contains_key(&(aid("a"), 9000)));
        // c1's delete releases it, even once the port is no longer exported.
        let a = s.handle(
            &Policy { exports: &[], ..p },
            &mut k,
            "c1",
            &req("a", 9000, 0),
            0,
        );
        assert_eq!(a.outcome, Outcome::Deleted { released: true });
        assert!(!k.map.contains_key(&(aid("a"), 9000)));
        // A delete of nothing succeeds.
        let a = s.handle(&p, &mut k, "c1", &req("a", 9000, 0), 0);
        assert_eq!(
            (a.result, a.outcome),
            (ResultCode::Success, Outcome::Absent)
        );
    }

    #[test]
    fn refusals_change_nothing() {
        let ex = exports();
        let p = policy(&ex);
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        let mut udp = req("a", 9100, 60);
        udp.protos = 2;
        let cases = [
            ("c1", req("a", 9001, 60), ResultCode::NoSuchPort),
            ("c2", req("a", 9100, 60), ResultCode::NotAuthorized),
            ("c1", req("b", 9100, 60), ResultCode::NotAuthorized),
            ("c1", req("zz", 9000, 60), ResultCode::NotAuthorized),
            ("c1", udp, ResultCode::NoSuchPort),
        ];
        for (peer, m, want) in cases {
            let a = s.handle(&p, &mut k, peer, &m, 0);
            assert_eq!((a.result, a.negotiated), (want, 0), "{:?}", a.outcome);
        }
        k.full = true;
        let a = s.handle(&p, &mut k, "c1", &req("a", 9000, 60), 0);
        assert_eq!(a.result, ResultCode::NoResources);
        assert_eq!(s, ServerState::default());
        assert!(k.map.is_empty());
    }

    #[test]
    fn a_peer_holds_at_most_its_limit() {
        let ex = exports();
        let p = policy(&ex);
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        s.handle(&p, &mut k, "c1", &req("a", 9000, 60), 0);
        s.handle(&p, &mut k, "c1", &req("b", 9000, 60), 0);
        let a = s.handle(&p, &mut k, "c1", &req("c", 9000, 60), 0);
        assert_eq!(a.result, ResultCode::NoResources);
        // Renewing one it holds is fine, and other peers have their own.
        assert_eq!(
            s.handle(&p, &mut k, "c1", &req("b", 9000, 60), 0).result,
            ResultCode::Success
        );
        assert_eq!(
            s.handle(&p, &mut k, "c2", &req("c", 9000, 60), 0).result,
            ResultCode::Success
        );
    }

    #[test]
    fn allocations_of_others_are_reused_never_released() {
        let ex = exports();
        let p = policy(&ex);
        let mut k = FakeKernel::default();
        k.map.insert(
            (aid("a"), 9000),
            Alloc {
                anon: 41234,
                proto: Proto::Tcp,
                claimed: true,
            },
        );
        let mut s = ServerState::default();
        let mut m = req("a", 9000, 60);
        m.protos = 1;
        let a = s.handle(&p, &mut k, "c1", &m, 0);
        assert_eq!((a.result, a.negotiated), (ResultCode::Success, 41234));
        // UDP is not covered by the existing allocation.
        let a = s.handle(&p, &mut k, "c1", &req("a", 9000, 60), 0);
        assert_eq!(a.result, ResultCode::NoSuchPort);
        let gone = s.expire(&mut k, 60_000);
        assert_eq!(gone.len(), 1);
        assert!(!gone[0].1);
        assert_eq!(k.map.len(), 1);
    }

    #[test]
    fn created_then_claimed_or_replaced_is_not_released() {
        let ex = exports();
        let p = policy(&ex);
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        // Created by the agent, then an exec'd instance attached its cgroup.
        s.handle(&p, &mut k, "c1", &req("a", 9000, 60), 0);
        k.map.get_mut(&(aid("a"), 9000)).unwrap().claimed = true;
        assert!(!s
            .handle(&p, &mut k, "c1", &req("a", 9000, 0), 0)
            .outcome
            .eq(&Outcome::Deleted { released: true }));
        assert!(k.map.contains_key(&(aid("a"), 9000)));
        // Created, then released and made again by someone else (another
        // port): the renewal sees it is not the agent's, and records
        // that the mapping was lost.
        s.handle(&p, &mut k, "c1", &req("b", 9000, 60), 0);
        let b = k.map.remove(&(aid("b"), 9000)).unwrap();
        k.map.insert(
            (aid("b"), 9000),
            Alloc {
                anon: b.anon + 100,
                ..b
            },
        );
        let a = s.handle(&p, &mut k, "c1", &req("b", 9000, 60), 0);
        assert_eq!(a.negotiated, b.anon + 100);
        assert!(a.state_lost);
        assert!(s.created.is_empty());
        s.handle(&p, &mut k, "c1", &req("b", 9000, 0), 0);
        assert!(k.map.contains_key(&(aid("b"), 9000)));
    }

    #[test]
    fn a_withdrawn_grant_releases_only_what_nobody_else_holds() {
        let ex = exports();
        let p = policy(&ex);
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        s.handle(&p, &mut k, "c1", &req("a", 9000, 30), 0);
        s.handle(&p, &mut k, "c2", &req("a", 9000, 30), 0);
        // c2's grant taken back: c1 still holds the allocation.
        assert!(!s.withdraw(&mut k, "c2", &aid("a"), 9000));
        assert_eq!(s.records.len(), 1);
        assert_eq!(k.map.len(), 1);
        // c1's too: the agent made it, nobody holds it, it goes.
        assert!(s.withdraw(&mut k, "c1", &aid("a"), 9000));
        assert!(s.records.is_empty() && k.map.is_empty() && s.created.is_empty());
        // Withdrawing what is not there changes nothing.
        assert!(!s.withdraw(&mut k, "c1", &aid("a"), 9000));
    }

    #[test]
    fn expiry_releases_when_the_last_record_goes() {
        let ex = exports();
        let p = policy(&ex);
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        s.handle(&p, &mut k, "c1", &req("a", 9000, 30), 0);
        s.handle(&p, &mut k, "c2", &req("a", 9000, 60), 0);
        assert_eq!(s.next_expiry(), Some(30_000));
        assert!(s.expire(&mut k, 29_999).is_empty());
        let gone = s.expire(&mut k, 30_000);
        assert_eq!((gone.len(), gone[0].1), (1, false));
        let gone = s.expire(&mut k, 60_000);
        assert_eq!((gone.len(), gone[0].1), (1, true));
        assert!(k.map.is_empty() && s.created.is_empty());
    }
}
