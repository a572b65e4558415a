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

use std::collections::BTreeSet;

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
    #[serde(default)]
    pub proto: Proto,
    /// The AIDs peers may ask for (empty: any).
    #[serde(default)]
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

/// The kernel's allocations, as the server needs them.
pub trait Allocator {
    /// The allocation of (aid, port), if there is one: its anonymous
    /// port and protocols.
    fn find(&mut self, aid: &Aid, port: u16) -> Result<Option<(u16, Proto)>, AllocError>;
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
    /// Allocations this agent created (and so releases).
    pub created: BTreeSet<(Aid, u16)>,
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
    /// A delete of a mapping nobody had.
    Absent,
    Refused(ResultCode, String),
}

/// The server's configuration, as far as requests need it.
pub struct Policy<'a> {
    pub exports: &'a [Export],
    pub max_lifetime: u32,
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
    /// client address checked) at `now_ms`: the answer's result,
    /// negotiated port and lifetime, and what happened.
    pub fn handle(
        &mut self,
        policy: &Policy<'_>,
        alloc: &mut dyn Allocator,
        peer: &str,
        req: &Msg,
        now_ms: u64,
    ) -> (ResultCode, u16, u32, Outcome) {
        let refuse = |code: ResultCode, why: String| (code, 0, 0, Outcome::Refused(code, why));
        let Some(proto) = proto_of(req.protos) else {
            return refuse(ResultCode::MalformedRequest, "no protocol".into());
        };
        let Some(export) = policy.exports.iter().find(|e| e.port == req.port) else {
            return refuse(
                ResultCode::NoSuchPort,
                format!("port {} is not exported", req.port),
            );
        };
        if !export.peers.is_empty() && !export.peers.iter().any(|p| p == peer) {
            return refuse(
                ResultCode::NotAuthorized,
                format!("port {} is not exported to peer {peer}", req.port),
            );
        }
        if !export.aids.is_empty() && !export.aids.contains(&req.aid) {
            return refuse(
                ResultCode::NotAuthorized,
                format!(
                    "AID {} may not use port {} from peer {peer}",
                    req.aid, req.port
                ),
            );
        }
        if !covers(export.proto, proto) {
            return refuse(
                ResultCode::NoSuchPort,
                format!("port {} is exported for {} only", req.port, export.proto),
            );
        }
        let mine = self.position(peer, &req.aid, req.port);
        if req.lifetime == 0 {
            return match mine {
                Some(i) => {
                    self.records.remove(i);
                    let released = self.release_if_unheld(alloc, &req.aid, req.port);
                    (ResultCode::Success, 0, 0, Outcome::Deleted { released })
                }
                None if self.held(&req.aid, req.port) => refuse(
                    ResultCode::NotAuthorized,
                    format!(
                        "the mapping of {} port {} is another peer's",
                        req.aid, req.port
                    ),
                ),
                None => (ResultCode::Success, 0, 0, Outcome::Absent),
            };
        }
        let lifetime = req
            .lifetime
            .clamp(MIN_LIFETIME, policy.max_lifetime.max(MIN_LIFETIME));
        let existing = match alloc.find(&req.aid, req.port) {
            Ok(e) => e,
            Err(e) => return alloc_refusal(e),
        };
        let (negotiated, created) = match existing {
            Some((anon, have)) if covers(have, proto) => (anon, false),
            Some((_, have)) => {
                return refuse(
                    ResultCode::NoSuchPort,
                    format!("{} port {} is allocated for {have} only", req.aid, req.port),
                )
            }
            None => match alloc.allocate(&req.aid, req.port, proto) {
                Ok(anon) => (anon, true),
                Err(e) => return alloc_refusal(e),
            },
        };
        if created {
            self.created.insert((req.aid.clone(), req.port));
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
        (
            ResultCode::Success,
            negotiated,
            lifetime,
            Outcome::Granted {
                negotiated,
                lifetime,
                created,
            },
        )
    }

    /// Releases (aid, port) if this agent created it and no record holds
    /// it any more; whether it did.
    fn release_if_unheld(&mut self, alloc: &mut dyn Allocator, aid: &Aid, port: u16) -> bool {
        let key = (aid.clone(), port);
        if self.held(aid, port) || !self.created.contains(&key) {
            return false;
        }
        // Forgotten even when the release fails (it was already gone,
        // say): the agent never releases what it did not create.
        self.created.remove(&key);
        alloc.release(aid, port).is_ok()
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

fn alloc_refusal(e: AllocError) -> (ResultCode, u16, u32, Outcome) {
    let why = match e {
        AllocError::NoResources => "no anonymous port is free (range or entry limit)".to_string(),
        AllocError::Failed(m) => m,
    };
    (
        ResultCode::NoResources,
        0,
        0,
        Outcome::Refused(ResultCode::NoResources, why),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::coop::wire::tests::sample;
    use std::collections::BTreeMap;

    /// The kernel's table, in memory.
    #[derive(Default)]
    pub(crate) struct FakeKernel {
        pub map: BTreeMap<(Aid, u16), (u16, Proto)>,
        pub next: u16,
        pub full: bool,
    }

    impl Allocator for FakeKernel {
        fn find(&mut self, aid: &Aid, port: u16) -> Result<Option<(u16, Proto)>, AllocError> {
            Ok(self.map.get(&(aid.clone(), port)).copied())
        }
        fn allocate(&mut self, aid: &Aid, port: u16, proto: Proto) -> Result<u16, AllocError> {
            if self.full {
                return Err(AllocError::NoResources);
            }
            self.next += 1;
            let anon = 40000 + self.next;
            self.map.insert((aid.clone(), port), (anon, proto));
            Ok(anon)
        }
        fn release(&mut self, aid: &Aid, port: u16) -> Result<(), AllocError> {
            self.map
                .remove(&(aid.clone(), port))
                .map(|_| ())
                .ok_or(AllocError::Failed("no such allocation".into()))
        }
    }

    fn exports() -> Vec<Export> {
        vec![
            Export {
                port: 9000,
                proto: Proto::Both,
                aids: vec![],
                peers: vec![],
            },
            Export {
                port: 9100,
                proto: Proto::Tcp,
                aids: vec!["a".parse().unwrap()],
                peers: vec!["c1".into()],
            },
        ]
    }

    fn req(aid: &str, port: u16, lifetime: u32) -> Msg {
        let mut m = sample();
        m.aid = aid.parse().unwrap();
        m.port = port;
        m.lifetime = lifetime;
        m
    }

    #[test]
    fn grant_renew_share_delete() {
        let ex = exports();
        let p = Policy {
            exports: &ex,
            max_lifetime: 600,
        };
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        let (r, port, life, o) = s.handle(&p, &mut k, "c1", &req("a", 9000, 120), 0);
        assert_eq!((r, life), (ResultCode::Success, 120));
        assert!(matches!(o, Outcome::Granted { created: true, .. }));
        // A renewal: same port, later expiry, nothing new allocated.
        let (_, port2, _, o) = s.handle(&p, &mut k, "c1", &req("a", 9000, 5000), 1000);
        assert_eq!(port, port2);
        assert!(matches!(
            o,
            Outcome::Granted {
                created: false,
                lifetime: 600,
                ..
            }
        ));
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.records[0].expires_ms, 601_000);
        // Another peer shares it.
        let (_, port3, _, _) = s.handle(&p, &mut k, "c2", &req("a", 9000, 1), 0);
        assert_eq!(port3, port);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.records[1].expires_ms, u64::from(MIN_LIFETIME) * 1000);
        // c2 cannot delete c1's; its own goes, the allocation stays.
        let (r, _, _, o) = s.handle(&p, &mut k, "c2", &req("a", 9000, 0), 0);
        assert_eq!(
            (r, o),
            (ResultCode::Success, Outcome::Deleted { released: false })
        );
        let (r, _, _, _) = s.handle(&p, &mut k, "c2", &req("a", 9000, 0), 0);
        assert_eq!(r, ResultCode::NotAuthorized);
        assert_eq!(s.records.len(), 1);
        assert!(k.map.contains_key(&("a".parse().unwrap(), 9000)));
        // c1's delete releases it.
        let (_, _, _, o) = s.handle(&p, &mut k, "c1", &req("a", 9000, 0), 0);
        assert_eq!(o, Outcome::Deleted { released: true });
        assert!(k.map.is_empty());
        // A delete of nothing succeeds.
        let (r, _, _, o) = s.handle(&p, &mut k, "c1", &req("a", 9000, 0), 0);
        assert_eq!((r, o), (ResultCode::Success, Outcome::Absent));
    }

    #[test]
    fn refusals_change_nothing() {
        let ex = exports();
        let p = Policy {
            exports: &ex,
            max_lifetime: 600,
        };
        let mut k = FakeKernel::default();
        let mut s = ServerState::default();
        let cases = [
            ("c1", req("a", 9001, 60), ResultCode::NoSuchPort),
            ("c2", req("a", 9100, 60), ResultCode::NotAuthorized),
            ("c1", req("b", 9100, 60), ResultCode::NotAuthorized),
            (
                "c1",
                {
                    let mut m = req("a", 9100, 60);
                    m.protos = 2;
                    m
                },
                ResultCode::NoSuchPort,
            ),
        ];
        for (peer, m, want) in cases {
            let (r, port, _, o) = s.handle(&p, &mut k, peer, &m, 0);
            assert_eq!((r, port), (want, 0), "{o:?}");
        }
        k.full = true;
        let (r, _, _, _) = s.handle(&p, &mut k, "c1", &req("a", 9000, 60), 0);
        assert_eq!(r, ResultCode::NoResources);
        assert_eq!(s, ServerState::default());
        assert!(k.map.is_empty());
    }

    #[test]
    fn existing_allocations_are_reused_never_released() {
        let ex = exports();
        let p = Policy {
            exports: &ex,
            max_lifetime: 600,
        };
        let mut k = FakeKernel::default();
        k.map
            .insert(("a".parse().unwrap(), 9000), (41234, Proto::Tcp));
        let mut s = ServerState::default();
        let mut m = req("a", 9000, 60);
        m.protos = 1;
        let (r, port, _, _) = s.handle(&p, &mut k, "c1", &m, 0);
        assert_eq!((r, port), (ResultCode::Success, 41234));
        // UDP is not covered by the existing allocation.
        let (r, _, _, _) = s.handle(&p, &mut k, "c1", &req("a", 9000, 60), 0);
        assert_eq!(r, ResultCode::NoSuchPort);
        let gone = s.expire(&mut k, 60_000);
        assert_eq!(gone.len(), 1);
        assert!(!gone[0].1);
        assert_eq!(k.map.len(), 1);
    }

    #[test]
    fn expiry_releases_when_the_last_record_goes() {
        let ex = exports();
        let p = Policy {
            exports: &ex,
            max_lifetime: 600,
        };
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
