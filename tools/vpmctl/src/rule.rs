//! `vpmctl rule add | del | show`: source rules that steer a fixed port's
//! packets to an AID by client address and port.

use std::net::IpAddr;

use neli::genl::Genlmsghdr;
use neli::types::{Buffer, GenlBuffer};
use serde::{Deserialize, Serialize};

use crate::aid::Aid;
use crate::attrs::Attrs;
use crate::connection::{attr, nul_str, Connection};
use crate::error::{Error, Result};
use crate::uapi::{Cmd, RuleAttr};

/// What a rule matches: a source prefix and/or a source port.  Neither
/// means every source: the port's default AID.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Source network address (host bits clear).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub addr: Option<IpAddr>,
    /// Prefix length (with `addr`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prefix_len: Option<u8>,
    /// Source port.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_port: Option<u16>,
}

impl Source {
    /// Parses `ADDR[/LEN][:PORT]`, `[V6ADDR[/LEN]]:PORT`, `V6ADDR[/LEN]` or `:PORT`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| {
            format!("'{s}' is not a source: {why} (e.g. 192.168.1.70, 10.0.0.0/8:5000, [2001:db8::/32]:5000, :5000)")
        };
        let (net, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected ':PORT' after ']'"))?,
                ),
            };
            (inner, port)
        } else if s.matches(':').count() > 1 {
            (s, None) // IPv6 without a port
        } else {
            match s.split_once(':') {
                Some((net, port)) => (net, Some(port)),
                None => (s, None),
            }
        };
        let src_port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be 1-65535")),
                Ok(p) => Some(p),
            },
        };
        let (addr, prefix_len) = if net.is_empty() {
            (None, None)
        } else {
            let (a, len) = match net.split_once('/') {
                Some((a, l)) => (
                    a,
                    Some(l.parse::<u8>().map_err(|_| bad("bad prefix length"))?),
                ),
                None => (net, None),
            };
            (
                Some(a.parse::<IpAddr>().map_err(|_| bad("bad address"))?),
                len,
            )
        };
        if addr.is_none() && src_port.is_none() {
            return Err(bad("give an address, a port or both"));
        }
        Ok(Self {
            addr,
            prefix_len,
            src_port,
        })
    }

    /// The canonical text form (`*` for the default).
    pub fn render(&self) -> String {
        let net = match (self.addr, self.prefix_len) {
            (None, _) => String::new(),
            (Some(IpAddr::V4(a)), Some(l)) if l != 32 => format!("{a}/{l}"),
            (Some(IpAddr::V6(a)), Some(l)) if l != 128 => format!("{a}/{l}"),
            (Some(a), _) => a.to_string(),
        };
        match (self.src_port, self.addr) {
            (None, None) => "*".to_string(),
            (None, Some(_)) => net,
            (Some(p), Some(IpAddr::V6(_))) => format!("[{net}]:{p}"),
            (Some(p), _) => format!("{net}:{p}"),
        }
    }
}

/// One rule as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub port: u16,
    #[serde(flatten)]
    pub from: Source,
    pub aid: Aid,
}

impl Rule {
    /// Reads a rule reply or notification.
    pub fn from_attrs(a: &Attrs<RuleAttr>) -> Result<Self> {
        let r = Rule {
            port: a.require(RuleAttr::Port)?,
            from: Source {
                addr: a.get(RuleAttr::Addr)?,
                prefix_len: a.get(RuleAttr::PrefixLen)?,
                src_port: a.get(RuleAttr::SrcPort)?,
            },
            aid: a.require(RuleAttr::Aid)?,
        };
        if r.port == 0 {
            return Err(Error::Protocol("rule with port 0".into()));
        }
        Ok(r)
    }

    fn from_msg(msg: &Genlmsghdr<Cmd, RuleAttr>) -> Result<Self> {
        Self::from_attrs(&Attrs::of("rule", msg))
    }
}

fn key_attrs(port: u16, from: &Source) -> Result<GenlBuffer<RuleAttr, Buffer>> {
    let mut attrs = GenlBuffer::new();
    attrs.push(attr(RuleAttr::Port, port)?);
    match from.addr {
        Some(IpAddr::V4(a)) => attrs.push(attr(RuleAttr::Addr, a.octets().to_vec())?),
        Some(IpAddr::V6(a)) => attrs.push(attr(RuleAttr::Addr, a.octets().to_vec())?),
        None => {}
    }
    if let Some(l) = from.prefix_len {
        attrs.push(attr(RuleAttr::PrefixLen, l)?);
    }
    if let Some(p) = from.src_port {
        attrs.push(attr(RuleAttr::SrcPort, p)?);
    }
    Ok(attrs)
}

/// Adds a rule; `from: None` sets the port's default AID.
pub fn add(conn: &Connection, port: u16, from: &Source, aid: &Aid) -> Result<()> {
    let mut attrs = key_attrs(port, from)?;
    attrs.push(attr(RuleAttr::Aid, nul_str(aid.as_str()))?);
    conn.request("rule add", Cmd::AddRule, attrs)?;
    Ok(())
}

/// Removes a rule.
pub fn del(conn: &Connection, port: u16, from: &Source) -> Result<()> {
    conn.request("rule del", Cmd::DelRule, key_attrs(port, from)?)?;
    Ok(())
}

/// Every rule, ordered by fixed port, then match.
pub fn list(conn: &Connection) -> Result<Vec<Rule>> {
    conn.dump("rule show", Cmd::GetRule, Rule::from_msg)
}

/// The human-readable table.
pub fn render(rules: &[Rule]) -> String {
    let mut out = format!("{:>5} {:<48} {}\n", "PORT", "FROM", "AID");
    for r in rules {
        out += &format!("{:>5} {:<48} {}\n", r.port, r.from.render(), r.aid);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::tests::attrs;

    fn src(s: &str) -> Source {
        Source::parse(s).unwrap()
    }

    #[test]
    fn parses_sources() {
        assert_eq!(src("192.168.1.70").render(), "192.168.1.70");
        assert_eq!(src("10.0.0.0/8:5000").render(), "10.0.0.0/8:5000");
        assert_eq!(src(":5000").render(), ":5000");
        assert_eq!(src("2001:db8::/32").render(), "2001:db8::/32");
        assert_eq!(src("[2001:db8::1]:5000").render(), "[2001:db8::1]:5000");
        assert_eq!(src("[2001:db8::/32]:5000").src_port, Some(5000));
        assert_eq!(src("10.1.2.3/32").prefix_len, Some(32));
        for bad in [
            "",
            "10.0.0.1:0",
            "10.0.0.1/x",
            "nonsense",
            "[::1",
            "[::1]5000",
            "10.0.0.1:99999",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Source::default().render(), "*");
    }

    #[test]
    fn rule_round_trips_as_json() {
        let r = Rule {
            port: 9000,
            from: src("[2001:db8::/32]:5000"),
            aid: Aid::new("a").unwrap(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"port":9000,"addr":"2001:db8::","prefix_len":32,"src_port":5000,"aid":"a"}"#
        );
        assert_eq!(serde_json::from_str::<Rule>(&text).unwrap(), r);
    }

    #[test]
    fn parses_kernel_attrs() {
        let a = [
            (RuleAttr::Port, 9000u16.to_ne_bytes().to_vec()),
            (RuleAttr::Aid, b"b\0".to_vec()),
            (RuleAttr::Addr, vec![10, 1, 0, 0]),
            (RuleAttr::PrefixLen, vec![16]),
        ];
        let r = Rule::from_attrs(&attrs("rule", &a)).unwrap();
        assert_eq!(r.from.render(), "10.1.0.0/16");
        assert_eq!(r.aid.as_str(), "b");
    }
}
