//! The protocols an allocation covers, in each of its forms: the command
//! line's `tcp | udp | both`, the kernel's `proto` flag bits and the JSON
//! list `["tcp", "udp"]` of `show --json`, `monitor --json` and saved
//! state files.

use std::fmt;

use neli::consts::genl::NlAttrType;
use neli::err::DeError;
use neli::genl::Nlattr;
use neli::types::Buffer;
use serde::{Deserialize, Serialize};

use crate::attrs::Payload;

use crate::uapi::{PROTO_TCP, PROTO_UDP};

/// One or both of TCP and UDP (never neither: the kernel refuses that).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(into = "Vec<&'static str>", try_from = "Vec<String>")]
pub enum Proto {
    Tcp,
    Udp,
    // What add-mapping covers when not told.  (A plain comment: a doc
    // comment would show in --help.)
    #[default]
    Both,
}

impl Proto {
    /// The kernel's `proto` flags.
    pub fn bits(self) -> u32 {
        match self {
            Proto::Tcp => PROTO_TCP,
            Proto::Udp => PROTO_UDP,
            Proto::Both => PROTO_TCP | PROTO_UDP,
        }
    }

    /// From the kernel's `proto` flags.  Bits of protocols a newer module
    /// may know are ignored, as unknown attributes are; `None` when
    /// neither TCP nor UDP is set.
    pub fn from_bits(bits: u32) -> Option<Self> {
        Self::from_flags(bits & PROTO_TCP != 0, bits & PROTO_UDP != 0)
    }

    fn from_flags(tcp: bool, udp: bool) -> Option<Self> {
        match (tcp, udp) {
            (true, true) => Some(Proto::Both),
            (true, false) => Some(Proto::Tcp),
            (false, true) => Some(Proto::Udp),
            (false, false) => None,
        }
    }

    /// The IP protocol numbers (IPPROTO_TCP, IPPROTO_UDP) covered.
    pub fn ip_protocols(self) -> &'static [u8] {
        match self {
            Proto::Tcp => &[6],
            Proto::Udp => &[17],
            Proto::Both => &[6, 17],
        }
    }

    /// The protocol names, in the JSON list's order.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Proto::Tcp => &["tcp"],
            Proto::Udp => &["udp"],
            Proto::Both => &["tcp", "udp"],
        }
    }
}

/// The text form of `show` and `monitor`: `tcp`, `udp` or `tcp,udp`.
impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad, not write_str: the table in `show` gives it a width.
        f.pad(&self.names().join(","))
    }
}

/// The kernel's `proto` flags, of which TCP, UDP or both must be set.
impl Payload for Proto {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        Self::from_bits(u32::decode(attr)?).ok_or_else(|| DeError::new("proto without tcp or udp"))
    }
}

impl From<Proto> for Vec<&'static str> {
    fn from(p: Proto) -> Self {
        p.names().to_vec()
    }
}

impl TryFrom<Vec<String>> for Proto {
    type Error = String;

    /// From the JSON list, in any order.
    fn try_from(names: Vec<String>) -> Result<Self, String> {
        let bad = || format!("proto must list tcp and/or udp, not {names:?}");
        if let Some(other) = names.iter().find(|n| *n != "tcp" && *n != "udp") {
            return Err(format!(
                "proto: unknown protocol '{other}': list tcp and/or udp"
            ));
        }
        let has = |name: &str| names.iter().any(|n| n == name);
        Self::from_flags(has("tcp"), has("udp")).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Both];

    #[test]
    fn json_forms_are_stable() {
        let json: Vec<_> = ALL
            .iter()
            .map(|p| serde_json::to_string(p).unwrap())
            .collect();
        assert_eq!(json, [r#"["tcp"]"#, r#"["udp"]"#, r#"["tcp","udp"]"#]);
        for (p, text) in ALL.iter().zip(&json) {
            assert_eq!(serde_json::from_str::<Proto>(text).unwrap(), *p);
        }
        assert_eq!(
            serde_json::from_str::<Proto>(r#"["udp","tcp"]"#).unwrap(),
            Proto::Both
        );
    }

    #[test]
    fn json_must_name_a_known_protocol() {
        for bad in ["[]", r#"["sctp"]"#, r#"["tcp","sctp"]"#, r#""tcp""#] {
            assert!(serde_json::from_str::<Proto>(bad).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<Proto>("[]").unwrap_err();
        assert!(
            e.to_string().starts_with("proto must list tcp and/or udp"),
            "{e}"
        );
    }

    #[test]
    fn wire_bits_round_trip() {
        for p in ALL {
            assert_eq!(Proto::from_bits(p.bits()), Some(p));
        }
        assert_eq!(Proto::Both.bits(), 3);
        assert_eq!(Proto::from_bits(0), None);
        assert_eq!(Proto::from_bits(PROTO_TCP | 0x100), Some(Proto::Tcp));
    }

    #[test]
    fn text_form() {
        let text: Vec<_> = ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(text, ["tcp", "udp", "tcp,udp"]);
    }
}
