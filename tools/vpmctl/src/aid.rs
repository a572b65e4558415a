//! Application ids.

use std::fmt;
use std::str::FromStr;

use neli::consts::genl::NlAttrType;
use neli::err::DeError;
use neli::genl::Nlattr;
use neli::types::Buffer;
use serde::{Deserialize, Serialize};

use crate::attrs::Payload;
use crate::uapi::AID_MAX_LEN;

/// An application id: 1 to [`AID_MAX_LEN`] characters of
/// `A-Z a-z 0-9 . _ -`, checked when made (from the command line, a saved
/// state or the kernel), so that vpmctl says precisely what is wrong
/// before the kernel refuses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Aid(String);

impl Aid {
    pub fn new(aid: impl Into<String>) -> Result<Self, String> {
        let aid = aid.into();
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if aid.is_empty() || aid.len() > AID_MAX_LEN || !aid.chars().all(ok) {
            return Err(format!(
                "'{aid}' is not an AID: use 1 to {AID_MAX_LEN} characters of A-Z a-z 0-9 . _ -"
            ));
        }
        Ok(Self(aid))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Aid {
    type Error = String;

    fn try_from(aid: String) -> Result<Self, String> {
        Self::new(aid)
    }
}

impl FromStr for Aid {
    type Err = String;

    fn from_str(aid: &str) -> Result<Self, String> {
        Self::new(aid)
    }
}

/// Honours width and alignment, for tables.
impl fmt::Display for Aid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl Payload for Aid {
    fn decode<T: NlAttrType>(attr: &Nlattr<T, Buffer>) -> Result<Self, DeError> {
        Self::new(String::decode(attr)?).map_err(DeError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(Aid::new("web-blue.v2_1").is_ok());
        assert!(Aid::new("").is_err());
        assert!(Aid::new("has space").is_err());
        assert!(Aid::new("é").is_err());
        assert!(Aid::new("x".repeat(AID_MAX_LEN)).is_ok());
        assert!(Aid::new("x".repeat(AID_MAX_LEN + 1)).is_err());
        assert_eq!(
            Aid::new("a b").unwrap_err(),
            "'a b' is not an AID: use 1 to 31 characters of A-Z a-z 0-9 . _ -"
        );
    }

    #[test]
    fn json_is_a_plain_string_and_is_checked() {
        let a = Aid::new("a.b").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), r#""a.b""#);
        assert_eq!(serde_json::from_str::<Aid>(r#""a.b""#).unwrap(), a);
        let e = serde_json::from_str::<Aid>(r#""a b""#).unwrap_err();
        assert!(e.to_string().starts_with("'a b' is not an AID"), "{e}");
    }

    #[test]
    fn pads_in_tables() {
        assert_eq!(format!("[{:<4}]", Aid::new("ab").unwrap()), "[ab  ]");
    }
}
