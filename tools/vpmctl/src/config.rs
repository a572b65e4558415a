//! `vpmctl config`: the namespace's anonymous port range and entry limit.

use neli::types::{Buffer, GenlBuffer};
use serde::Serialize;

use crate::attrs;
use crate::connection::{attr, parse_attrs, Connection};
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
    pub fn from_attrs<'a>(attrs: impl IntoIterator<Item = (u16, &'a [u8])>) -> Result<Self> {
        let mut c = Config::default();
        for (ty, p) in attrs {
            match ConfigAttr::from(ty) {
                ConfigAttr::RangeLo => c.range_lo = attrs::u16(p)?,
                ConfigAttr::RangeHi => c.range_hi = attrs::u16(p)?,
                ConfigAttr::MaxEntries => c.max_entries = attrs::u32(p)?,
                ConfigAttr::Entries => c.entries = attrs::u32(p)?,
                ConfigAttr::Rules => c.rules = attrs::u32(p)?,
                ConfigAttr::UnrecognizedConst(_) => {}
            }
        }
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
    parse_attrs(&reply, |attrs| Config::from_attrs(attrs))
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
