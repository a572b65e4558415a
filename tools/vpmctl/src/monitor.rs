//! `vpmctl monitor`: print allocation and configuration changes as the
//! kernel announces them on the family's "events" multicast group.

use neli::types::{Buffer, GenlBuffer};
use serde::Serialize;

use crate::attrs::Attrs;
use crate::config::Config;
use crate::connection::{Connection, Incoming};
use crate::error::Result;
use crate::mapping::Mapping;
use crate::rule::Rule;
use crate::uapi::{Cmd, EVENTS_GROUP};

/// One change, as printed.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    New {
        mapping: Mapping,
    },
    Del {
        mapping: Mapping,
    },
    Flush,
    Config {
        config: Config,
    },
    RuleNew {
        rule: Rule,
    },
    RuleDel {
        rule: Rule,
    },
    /// The kernel dropped events because this reader fell behind: the
    /// table may have changed unseen (`vpmctl show` has it as it is).
    Lost,
}

impl Event {
    /// Decodes one notification, whose attributes belong to the set its
    /// command implies; `None` for commands this vpmctl does not know.
    pub fn decode(cmd: Cmd, raw: &GenlBuffer<u16, Buffer>) -> Result<Option<Self>> {
        Ok(Some(match cmd {
            Cmd::MappingNewNtf => Event::New {
                mapping: Mapping::from_attrs(&Attrs::retyped("mapping", raw)?)?,
            },
            Cmd::MappingDelNtf => Event::Del {
                mapping: Mapping::from_attrs(&Attrs::retyped("mapping", raw)?)?,
            },
            Cmd::FlushNtf => Event::Flush,
            Cmd::ConfigNtf => Event::Config {
                config: Config::from_attrs(&Attrs::retyped("config", raw)?)?,
            },
            Cmd::RuleNewNtf => Event::RuleNew {
                rule: Rule::from_attrs(&Attrs::retyped("rule", raw)?)?,
            },
            Cmd::RuleDelNtf => Event::RuleDel {
                rule: Rule::from_attrs(&Attrs::retyped("rule", raw)?)?,
            },
            _ => return Ok(None),
        }))
    }

    /// The human-readable line.
    pub fn render(&self) -> String {
        let map = |m: &Mapping| format!("{} {} {} -> {}", m.aid, m.port, m.proto, m.anon_port);
        match self {
            Event::New { mapping } => format!("new {}", map(mapping)),
            Event::Del { mapping } => format!("del {}", map(mapping)),
            Event::Flush => "flush".to_string(),
            Event::Config { config: c } => format!(
                "config range {}-{} max-entries {} entries {}",
                c.range_lo, c.range_hi, c.max_entries, c.entries
            ),
            Event::RuleNew { rule: r } => format!("rule new {} from {} -> {}", r.port, r.from.render(), r.aid),
            Event::RuleDel { rule: r } => format!("rule del {} from {} -> {}", r.port, r.from.render(), r.aid),
            Event::Lost => "lost: events were dropped (receive buffer full); run 'vpmctl show' for the current table".to_string(),
        }
    }
}

/// Prints events until interrupted.  A reader that falls behind (the
/// kernel drops what its socket cannot hold) is told so with a `lost`
/// event and goes on: a monitor that quit on a burst would see nothing
/// from then on.
pub fn run(conn: &Connection, json: bool) -> Result<()> {
    conn.subscribe(EVENTS_GROUP)?;
    let print = |ev: &Event| {
        if json {
            println!("{}", serde_json::to_string(ev).expect("event serialises"));
        } else {
            println!("{}", ev.render());
        }
    };
    loop {
        match conn.next_events()? {
            Incoming::Overrun => print(&Event::Lost),
            Incoming::Events(msgs) => {
                for msg in msgs {
                    if let Some(ev) = Event::decode(*msg.cmd(), msg.attrs())? {
                        print(&ev);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{attr, nul_str};
    use crate::uapi::MappingAttr;

    #[test]
    fn decodes_and_renders() {
        let mut raw = GenlBuffer::new();
        raw.push(attr(u16::from(MappingAttr::Aid), nul_str("a")).unwrap());
        raw.push(attr(u16::from(MappingAttr::Port), 9000u16).unwrap());
        raw.push(attr(u16::from(MappingAttr::Proto), 1u32).unwrap());
        raw.push(attr(u16::from(MappingAttr::AnonPort), 20000u16).unwrap());
        let ev = Event::decode(Cmd::MappingNewNtf, &raw).unwrap().unwrap();
        assert_eq!(ev.render(), "new a 9000 tcp -> 20000");
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"new","mapping":{"aid":"a","port":9000,"proto":["tcp"],"anon_port":20000,"pkts_in":0,"bytes_in":0,"pkts_out":0,"bytes_out":0}}"#
        );
        let flush = Event::decode(Cmd::FlushNtf, &GenlBuffer::new())
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&flush).unwrap(),
            r#"{"event":"flush"}"#
        );
        assert!(Event::decode(Cmd::GetStatus, &GenlBuffer::new())
            .unwrap()
            .is_none());
        assert_eq!(
            serde_json::to_string(&Event::Lost).unwrap(),
            r#"{"event":"lost"}"#
        );
        assert!(Event::Lost.render().contains("vpmctl show"));
    }

    #[test]
    fn event_tags_are_stable() {
        let config = Config {
            range_lo: 1,
            range_hi: 2,
            max_entries: 3,
            entries: 0,
            rules: 0,
        };
        assert_eq!(
            serde_json::to_string(&Event::Config { config }).unwrap(),
            r#"{"event":"config","config":{"range_lo":1,"range_hi":2,"max_entries":3,"entries":0,"rules":0}}"#
        );
        let rule: Rule =
            serde_json::from_str(r#"{"port":9000,"src_port":5000,"aid":"a"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&Event::RuleNew { rule: rule.clone() }).unwrap(),
            r#"{"event":"rule-new","rule":{"port":9000,"src_port":5000,"aid":"a"}}"#
        );
        assert_eq!(
            serde_json::to_string(&Event::RuleDel { rule }).unwrap(),
            r#"{"event":"rule-del","rule":{"port":9000,"src_port":5000,"aid":"a"}}"#
        );
    }
}
