// SPDX-License-Identifier: GPL-2.0

//! The control plane's keys: application ids, allocation keys and rule keys.

use core::cmp::Ordering;

use crate::vpm_rules::Match;

/// Longest application id, in bytes (uapi `VPM_AID_MAX_LEN`).
pub(crate) const AID_MAX_LEN: usize = 31;

/// An application id: 1 to [`AID_MAX_LEN`] bytes of `[A-Za-z0-9._-]`.
///
/// # Invariants
///
/// `bytes[..len]` is a valid id and `bytes[len..]` is zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Aid {
    len: u8,
    bytes: [u8; AID_MAX_LEN],
}

impl Aid {
    /// Validates `s`.
    pub(crate) fn new(s: &[u8]) -> Option<Self> {
        let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if s.is_empty() || s.len() > AID_MAX_LEN || !s.iter().all(ok) {
            return None;
        }
        let mut bytes = [0; AID_MAX_LEN];
        bytes[..s.len()].copy_from_slice(s);
        // INVARIANT: validated above; the tail stays zero.
        Some(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The smallest valid id, `-` (dump cursors start below every AID).
    pub(crate) const MIN: Aid = {
        let mut bytes = [0; AID_MAX_LEN];
        bytes[0] = b'-';
        // INVARIANT: "-" is a valid id; the tail is zero.
        Aid { len: 1, bytes }
    };

    /// The id's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl PartialEq for Aid {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Aid {}
impl PartialOrd for Aid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Aid {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Key of an allocation; ordered by fixed port, then AID (dump order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) port: u16,
    pub(crate) aid: Aid,
}

impl Key {
    /// The first possible key of `port`.
    pub(crate) fn first_of(port: u16) -> Self {
        Self {
            port,
            aid: Aid::MIN,
        }
    }
}

/// Key of a source rule: fixed port, then what the rule matches.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RuleKey {
    pub(crate) port: u16,
    pub(crate) m: Match,
}
