//! `vpmctl save` and `vpmctl restore`: a namespace's allocations and
//! settings as JSON (the patent's snapshot and restore of an application's
//! port state).
//!
//! Restore is all or nothing: it first checks the saved state against the
//! live one and names the first conflicting entry; if the kernel still
//! refuses an entry midway, everything restore added is removed again and
//! the old settings are put back.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::aid::Aid;
use crate::config::{self, Config};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::mapping::{self, AddOpts, Mapping};
use crate::proto::Proto;
use crate::rule::{self, Rule};

/// Format version of a saved state: 2 when it holds cooperative peers
/// (so that a vpmctl that knows nothing of them refuses it rather than
/// restore it without them), 1 otherwise.
const STATE_VERSION: u32 = 2;
const STATE_VERSION_NO_PEERS: u32 = 1;

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedConfig {
    pub range_lo: u16,
    pub range_hi: u16,
    pub max_entries: u32,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedMapping {
    pub aid: Aid,
    pub port: u16,
    pub proto: Proto,
    pub anon_port: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cgroup: Option<String>,
    /// Cooperative peers (docs/COOPERATIVE.md): kernel state like the
    /// allocation, which established flows with those peers need.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub peers: Vec<IpAddr>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub config: SavedConfig,
    pub mappings: Vec<SavedMapping>,
    /// Source rules (absent in states saved before rules existed).
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl SavedMapping {
    fn from_live(m: &Mapping) -> Self {
        Self {
            aid: m.aid.clone(),
            port: m.port,
            proto: m.proto,
            anon_port: m.anon_port,
            cgroup: m.cgroup.clone(),
            peers: m.peers.clone(),
        }
    }

    fn name(&self) -> String {
        format!("{} port {}", self.aid, self.port)
    }
}

/// How often `save` reads the state again after a change during a read.
const SAVE_TRIES: usize = 5;

/// The live state of the namespace, as it stood at one moment.
///
/// It takes three requests (settings, allocations, rules); each is
/// consistent in itself, but a change between them would save rules of a
/// deleted allocation or miss a new one's.  So the read listens to the
/// change events and is repeated when any arrived during it.  (An event of
/// the generic netlink controller, or a lost one, also counts: a needless
/// repeat is cheap.)
pub fn save(conn: &Connection) -> Result<State> {
    let watch = conn.watch()?;
    for _ in 0..SAVE_TRIES {
        let state = read_state(conn)?;
        if !watch.wait(Duration::ZERO)? {
            return Ok(state);
        }
    }
    Err(Error::Save(format!(
        "the table changed during each of {SAVE_TRIES} reads; save again when it is quieter"
    )))
}

fn read_state(conn: &Connection) -> Result<State> {
    let c = config::get(conn)?;
    let maps = mapping::list(conn)?;
    let version = if maps.iter().any(|m| !m.peers.is_empty()) {
        STATE_VERSION
    } else {
        STATE_VERSION_NO_PEERS
    };
    Ok(State {
        version,
        config: SavedConfig {
            range_lo: c.range_lo,
            range_hi: c.range_hi,
            max_entries: c.max_entries,
        },
        mappings: maps.iter().map(SavedMapping::from_live).collect(),
        rules: rule::list(conn)?,
    })
}

/// What restoring `want`'s rules on top of `live` would break, if anything.
pub fn first_rule_conflict(want: &State, live: &[Rule]) -> Option<String> {
    for (i, w) in want.rules.iter().enumerate() {
        let name = format!("rule port {} from {}", w.port, w.from.render());
        if !want
            .mappings
            .iter()
            .any(|m| m.aid == w.aid && m.port == w.port)
        {
            return Some(format!(
                "{name}: AID {} has no saved allocation on that port",
                w.aid
            ));
        }
        if want.rules[..i]
            .iter()
            .any(|o| o.port == w.port && o.from == w.from)
        {
            return Some(format!("{name}: appears twice in the saved state"));
        }
        if let Some(l) = live
            .iter()
            .find(|l| l.port == w.port && l.from == w.from && l.aid != w.aid)
        {
            return Some(format!(
                "{name}: points to AID {} now, the saved state says {}",
                l.aid, w.aid
            ));
        }
    }
    None
}

/// What restoring `want` on top of `live` would break, if anything.
pub fn first_conflict(want: &State, live: &[Mapping]) -> Option<String> {
    let c = &want.config;
    if c.range_lo == 0 || c.range_lo > c.range_hi {
        return Some(format!("config: bad range {}-{}", c.range_lo, c.range_hi));
    }
    // Saved entries that are live already do not count twice.
    let extra = want
        .mappings
        .iter()
        .filter(|w| !live.iter().any(|l| l.aid == w.aid && l.port == w.port))
        .count();
    if extra + live.len() > c.max_entries as usize {
        return Some(format!(
            "config: max_entries {} cannot hold {} live and {} restored allocations",
            c.max_entries,
            live.len(),
            extra
        ));
    }
    for l in live {
        if !(c.range_lo..=c.range_hi).contains(&l.anon_port) {
            return Some(format!(
                "live allocation {} port {} (anonymous port {}) lies outside the saved range {}-{}",
                l.aid, l.port, l.anon_port, c.range_lo, c.range_hi
            ));
        }
    }
    for (i, w) in want.mappings.iter().enumerate() {
        if !(c.range_lo..=c.range_hi).contains(&w.anon_port) {
            return Some(format!(
                "{}: anonymous port {} outside the saved range",
                w.name(),
                w.anon_port
            ));
        }
        if let Some(o) = want.mappings[..i]
            .iter()
            .find(|o| o.anon_port == w.anon_port || (o.aid == w.aid && o.port == w.port))
        {
            return Some(format!(
                "{}: clashes with {} in the saved state",
                w.name(),
                o.name()
            ));
        }
        for l in live {
            let same_key = l.aid == w.aid && l.port == w.port;
            if same_key && l.anon_port != w.anon_port {
                return Some(format!(
                    "{}: holds anonymous port {} now, the saved state says {}",
                    w.name(),
                    l.anon_port,
                    w.anon_port
                ));
            }
            if !same_key && l.anon_port == w.anon_port {
                return Some(format!(
                    "{}: anonymous port {} is held by {} port {}",
                    w.name(),
                    w.anon_port,
                    l.aid,
                    l.port
                ));
            }
        }
    }
    None
}

/// The groups `vpmctl exec` made (below the vpm cgroup parent) that a
/// saved allocation names but that are gone (a flush removed an idle
/// AID's group, or the host rebooted) are made again, so the kernel can
/// find them.  Other cgroups are the operator's to make.  Returns the
/// directories made, to remove again if the restore fails.
fn recreate_exec_groups(want: &State) -> Vec<std::path::PathBuf> {
    let mut made = Vec::new();
    let Ok(place) = crate::place::Place::current(None) else {
        return made;
    };
    for c in want.mappings.iter().filter_map(|m| m.cgroup.as_deref()) {
        let dir = place.cgroup2.join(c.trim_start_matches('/'));
        let ours = dir.starts_with(&place.parent)
            && dir.components().all(|p| {
                matches!(
                    p,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
        if ours && !dir.exists() {
            // Each missing level, outermost first, so that undo can remove
            // them innermost first.
            let mut missing: Vec<_> = dir
                .ancestors()
                .take_while(|d| !d.exists())
                .map(|d| d.to_path_buf())
                .collect();
            missing.reverse();
            if std::fs::create_dir_all(&dir).is_ok() {
                made.extend(missing);
            }
        }
    }
    made
}

/// Restores `want`; on any failure the namespace is left as it was.
pub fn restore(conn: &Connection, want: &State) -> Result<()> {
    if !(STATE_VERSION_NO_PEERS..=STATE_VERSION).contains(&want.version) {
        return Err(Error::State(format!(
            "state format version {} is not {STATE_VERSION_NO_PEERS} or {STATE_VERSION}",
            want.version
        )));
    }
    let live = mapping::list(conn)?;
    if let Some(c) = first_conflict(want, &live) {
        return Err(Error::State(format!("nothing restored: {c}")));
    }
    let live_rules = rule::list(conn)?;
    if let Some(c) = first_rule_conflict(want, &live_rules) {
        return Err(Error::State(format!("nothing restored: {c}")));
    }
    let made = recreate_exec_groups(want);
    let r = apply(conn, want, &live, &live_rules);
    if r.is_err() {
        for d in made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
    r
}

/// The changes of [`restore`], after its checks.
fn apply(
    conn: &Connection,
    want: &State,
    live: &[mapping::Mapping],
    live_rules: &[Rule],
) -> Result<()> {
    let old: Config = config::get(conn)?;
    config::set(
        conn,
        Some((want.config.range_lo, want.config.range_hi)),
        Some(want.config.max_entries),
    )?;
    let mut added: Vec<(Aid, u16)> = Vec::new();
    let mut added_rules: Vec<&Rule> = Vec::new();
    // Peers added to allocations that were live already (a new
    // allocation's peers go with it).
    let mut added_peers: Vec<(Aid, u16, IpAddr)> = Vec::new();
    // Undo, newest first; the namespace was consistent before.
    let undo = |added: &[(Aid, u16)], added_rules: &[&Rule], added_peers: &[(Aid, u16, IpAddr)]| {
        for r in added_rules.iter().rev() {
            let _ = rule::del(conn, r.port, &r.from);
        }
        for (aid, port, peer) in added_peers.iter().rev() {
            let _ = mapping::peer_del(conn, aid, *port, *peer);
        }
        for (aid, port) in added.iter().rev() {
            let _ = mapping::del(conn, aid, *port);
        }
        let _ = config::set(
            conn,
            Some((old.range_lo, old.range_hi)),
            Some(old.max_entries),
        );
    };
    for w in &want.mappings {
        let existed = live.iter().any(|l| l.aid == w.aid && l.port == w.port);
        let opts = AddOpts {
            proto: Some(w.proto),
            anon: Some(w.anon_port),
            wait_ms: None,
            cgroup: w.cgroup.clone(),
        };
        if let Err(e) = mapping::add(conn, &w.aid, w.port, &opts) {
            undo(&added, &added_rules, &added_peers);
            return Err(Error::State(format!("nothing restored: {}: {e}", w.name())));
        }
        if !existed {
            added.push((w.aid.clone(), w.port));
        }
        let had = |p: &IpAddr| {
            live.iter().any(|l| {
                l.aid == w.aid
                    && l.port == w.port
                    && l.peers.iter().any(|q| q.to_canonical() == p.to_canonical())
            })
        };
        for &peer in &w.peers {
            if had(&peer) {
                continue;
            }
            if let Err(e) = mapping::peer_add(conn, &w.aid, w.port, peer) {
                undo(&added, &added_rules, &added_peers);
                return Err(Error::State(format!(
                    "nothing restored: {} peer {peer}: {e}",
                    w.name()
                )));
            }
            if existed {
                added_peers.push((w.aid.clone(), w.port, peer));
            }
        }
    }
    for r in &want.rules {
        if live_rules
            .iter()
            .any(|l| l.port == r.port && l.from == r.from)
        {
            continue;
        }
        if let Err(e) = rule::add(conn, r.port, &r.from, &r.aid) {
            undo(&added, &added_rules, &added_peers);
            return Err(Error::State(format!(
                "nothing restored: rule port {} from {}: {e}",
                r.port,
                r.from.render()
            )));
        }
        added_rules.push(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(maps: &[(&str, u16, u16)]) -> State {
        State {
            version: 1,
            config: SavedConfig {
                range_lo: 20000,
                range_hi: 20099,
                max_entries: 100,
            },
            mappings: maps
                .iter()
                .map(|(a, p, n)| SavedMapping {
                    aid: Aid::new(*a).unwrap(),
                    port: *p,
                    proto: Proto::Both,
                    anon_port: *n,
                    cgroup: None,
                    peers: Vec::new(),
                })
                .collect(),
            rules: Vec::new(),
        }
    }

    fn live(maps: &[(&str, u16, u16)]) -> Vec<Mapping> {
        maps.iter()
            .map(|(a, p, n)| Mapping {
                aid: Aid::new(*a).unwrap(),
                port: *p,
                proto: Proto::Both,
                anon_port: *n,
                cgroup: None,
                cgroup_id: None,
                pkts_in: 0,
                bytes_in: 0,
                pkts_out: 0,
                bytes_out: 0,
                peers: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn clean_restore_has_no_conflict() {
        assert_eq!(first_conflict(&state(&[("a", 9000, 20000)]), &[]), None);
        // Restoring what is already there is fine.
        assert_eq!(
            first_conflict(&state(&[("a", 9000, 20000)]), &live(&[("a", 9000, 20000)])),
            None
        );
    }

    #[test]
    fn names_the_conflicting_entry() {
        let c = first_conflict(&state(&[("a", 9000, 20000)]), &live(&[("x", 1, 20000)])).unwrap();
        assert_eq!(c, "a port 9000: anonymous port 20000 is held by x port 1");
        let c =
            first_conflict(&state(&[("a", 9000, 20000)]), &live(&[("a", 9000, 20001)])).unwrap();
        assert!(c.contains("holds anonymous port 20001 now"), "{c}");
        let c = first_conflict(&state(&[("a", 9000, 20000), ("b", 9000, 20000)]), &[]).unwrap();
        assert!(
            c.starts_with("b port 9000: clashes with a port 9000"),
            "{c}"
        );
        let c = first_conflict(&state(&[("a", 9000, 30000)]), &[]).unwrap();
        assert!(c.contains("outside the saved range"), "{c}");
        let c = first_conflict(&state(&[]), &live(&[("x", 1, 30000)])).unwrap();
        assert!(c.contains("lies outside the saved range"), "{c}");
    }

    #[test]
    fn entry_limit_counts_live_entries_once() {
        let mut s = state(&[("a", 9000, 20000), ("b", 9000, 20001)]);
        s.config.max_entries = 2;
        // "a" is live already: 2 entries in all, which fits.
        assert_eq!(first_conflict(&s, &live(&[("a", 9000, 20000)])), None);
        let c = first_conflict(&s, &live(&[("x", 1, 20050)])).unwrap();
        assert!(
            c.starts_with("config: max_entries 2 cannot hold 1 live and 2 restored"),
            "{c}"
        );
    }

    #[test]
    fn rule_conflicts() {
        let from = rule::Source::parse("10.0.0.0/8").unwrap();
        let r = |aid: &str| Rule {
            port: 9000,
            from,
            aid: Aid::new(aid).unwrap(),
        };
        let mut s = state(&[("a", 9000, 20000)]);
        s.rules = vec![r("a")];
        assert_eq!(first_rule_conflict(&s, &[]), None);
        assert_eq!(first_rule_conflict(&s, &[r("a")]), None);
        let c = first_rule_conflict(&s, &[r("b")]).unwrap();
        assert_eq!(
            c,
            "rule port 9000 from 10.0.0.0/8: points to AID b now, the saved state says a"
        );
        s.rules = vec![r("z")];
        assert!(first_rule_conflict(&s, &[])
            .unwrap()
            .contains("AID z has no saved allocation"));
        s.rules = vec![r("a"), r("a")];
        assert!(first_rule_conflict(&s, &[])
            .unwrap()
            .contains("appears twice"));
    }

    #[test]
    fn states_without_rules_still_load() {
        let text =
            r#"{"version":1,"config":{"range_lo":1,"range_hi":2,"max_entries":3},"mappings":[]}"#;
        assert!(serde_json::from_str::<State>(text)
            .unwrap()
            .rules
            .is_empty());
    }

    #[test]
    fn round_trips_as_json() {
        let s = state(&[("a", 9000, 20000)]);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), s);
    }

    /// A file as `vpmctl save` writes it (one allocation per protocol
    /// set, a cgroup, rules of each kind).  Files like it must restore,
    /// and `save` must keep writing exactly this.
    const SAVED: &str = r#"{
  "version": 1,
  "config": {
    "range_lo": 20000,
    "range_hi": 20099,
    "max_entries": 100
  },
  "mappings": [
    {
      "aid": "web-blue.v2_1",
      "port": 80,
      "proto": [
        "tcp"
      ],
      "anon_port": 20000,
      "cgroup": "/vpm/a"
    },
    {
      "aid": "dns",
      "port": 53,
      "proto": [
        "udp"
      ],
      "anon_port": 20001
    },
    {
      "aid": "b",
      "port": 9000,
      "proto": [
        "tcp",
        "udp"
      ],
      "anon_port": 20002
    }
  ],
  "rules": [
    {
      "port": 9000,
      "addr": "10.0.0.0",
      "prefix_len": 8,
      "aid": "b"
    },
    {
      "port": 9000,
      "src_port": 5000,
      "aid": "b"
    },
    {
      "port": 80,
      "aid": "web-blue.v2_1"
    }
  ]
}"#;

    #[test]
    fn a_bad_aid_or_proto_in_a_file_is_named() {
        let bad_aid = SAVED.replace(r#""dns""#, r#""d n s""#);
        let e = serde_json::from_str::<State>(&bad_aid).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("'d n s' is not an AID: use 1 to 31"),
            "{e}"
        );
        let bad_proto = SAVED.replace(r#""udp""#, r#""sctp""#);
        let e = serde_json::from_str::<State>(&bad_proto).unwrap_err();
        assert!(e.to_string().contains("unknown protocol 'sctp'"), "{e}");
    }

    #[test]
    fn saved_file_format_is_stable() {
        let st: State = serde_json::from_str(SAVED).unwrap();
        assert_eq!(serde_json::to_string_pretty(&st).unwrap(), SAVED);
        let protos: Vec<_> = st.mappings.iter().map(|m| m.proto).collect();
        assert_eq!(protos, [Proto::Tcp, Proto::Udp, Proto::Both]);
    }
}
