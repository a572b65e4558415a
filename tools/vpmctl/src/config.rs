//! `vpmctl config`: the namespace's anonymous port range and entry limit.

use neli::types::{Buffer, GenlBuffer};
use serde::Serialize;

use crate::attrs::Attrs;
use crate::connection::{attr, Connection};
use crate::error::{Error, Result};
use crate::uapi::{Cmd, ConfigAttr};

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Config {
    pub range_lo: u16,
    pub range_hi: u16,
    pub max_entries: u32,
    pub entries: u32,
    pub rules: u32,
}

impl Config {
    /// Reads a config reply or notification.  Only the range is required;
    /// counts a module does not report read as 0.
    pub fn from_attrs(a: &Attrs<ConfigAttr>) -> Result<Self> {
        let c = Config {
            range_lo: a.require(ConfigAttr::RangeLo)?,
            range_hi: a.get(ConfigAttr::RangeHi)?.unwrap_or(0),
            max_entries: a.get(ConfigAttr::MaxEntries)?.unwrap_or(0),
            entries: a.get(ConfigAttr::Entries)?.unwrap_or(0),
            rules: a.get(ConfigAttr::Rules)?.unwrap_or(0),
        };
        if c.range_lo == 0 {
            return Err(Error::Protocol("config without a range".into()));
        }
        Ok(c)
    }

    pub fn render(&self) -> String {
        format!(
            "anonymous port range  {}-{}\nentries               {} of at most {}\nrules                 {} of at most {}\n",
            self.range_lo, self.range_hi, self.entries, self.max_entries, self.rules, self.max_entries
        )
    }
}

/// Parses `LO-HI`.
pub fn parse_range(s: &str) -> std::result::Result<(u16, u16), String> {
    let bad = || format!("'{s}' is not a port range: use LO-HI, e.g. 20000-29999");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

pub fn get(conn: &Connection) -> Result<Config> {
    let reply = conn.request_one(
        "config",
        Cmd::GetConfig,
        GenlBuffer::<ConfigAttr, Buffer>::new(),
    )?;
    Config::from_attrs(&Attrs::of("config", &reply))
}

pub fn set(conn: &Connection, range: Option<(u16, u16)>, max_entries: Option<u32>) -> Result<()> {
    let mut attrs = GenlBuffer::<ConfigAttr, Buffer>::new();
    if let Some((lo, hi)) = range {
        attrs.push(attr(ConfigAttr::RangeLo, lo)?);
        attrs.push(attr(ConfigAttr::RangeHi, hi)?);
    }
    if let Some(m) = max_entries {
        attrs.push(attr(ConfigAttr::MaxEntries, m)?);
    }
    conn.request("config", Cmd::SetConfig, attrs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field_names_are_stable() {
        let c = Config {
            range_lo: 20000,
            range_hi: 29999,
            max_entries: 10000,
            entries: 2,
            rules: 1,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"range_lo":20000,"range_hi":29999,"max_entries":10000,"entries":2,"rules":1}"#
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("20000-29999"), Ok((20000, 29999)));
        assert!(parse_range("0-10").is_err());
        assert!(parse_range("10-9").is_err());
        assert!(parse_range("10").is_err());
        assert!(parse_range("1-70000").is_err());
    }
}
