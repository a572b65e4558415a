// SPDX-License-Identifier: GPL-2.0

//! Why a control-plane change fails: [`TableError`], with the message the
//! requester reads and the errno it gets.

use core::fmt;

use kernel::alloc::AllocError;
use kernel::prelude::*;

use crate::vpm_keys::Aid;
use crate::vpm_table::RULES_PER_PORT;

/// Why a table operation failed.
///
/// Each error has a message for the extended ack ([`fmt::Display`]) and an
/// errno ([`From<TableError>`] for [`Error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// No port free in the range (`in_use`, `lo`, `hi`).
    RangeExhausted { in_use: u32, lo: u16, hi: u16 },
    /// The namespace holds `max` allocations already.
    TooManyEntries { max: u32 },
    /// Every port of the range not allocated (`in_use` are) is bound by a
    /// socket of the namespace.
    RangeBound { in_use: u32, lo: u16, hi: u16 },
    /// The requested anonymous port is outside the range.
    PortOutOfRange { lo: u16, hi: u16 },
    /// The requested anonymous port is allocated to someone else.
    PortTaken,
    /// The pair already has a different anonymous port.
    OtherAnonPort { anon: u16 },
    /// No such allocation.
    NotFound,
    /// A new range would not hold the current allocations.
    RangeInUse,
    /// A range with lo > hi.
    BadRange,
    /// A limit below the current number of allocations or rules.
    LimitBelowUse { entries: u32 },
    /// A rule names an (AID, port) without an allocation.
    RuleWithoutMapping,
    /// A rule with the same match exists (pointing to `aid`).
    RuleExists { aid: Aid },
    /// No such rule.
    RuleNotFound,
    /// The namespace holds `max` rules already.
    TooManyRules { max: u32 },
    /// The port holds [`RULES_PER_PORT`] rules already.
    PortFullOfRules,
    /// The port holds [`RULES_PER_PORT`] allocations with a cgroup already.
    PortFullOfCgroups,
    /// The allocation holds `max` cooperative peers already.
    TooManyPeers { max: u32 },
    /// The address is not a cooperative peer of the allocation.
    PeerNotFound,
    /// Out of memory.
    NoMemory,
}

impl From<AllocError> for TableError {
    fn from(_: AllocError) -> Self {
        TableError::NoMemory
    }
}

impl From<TableError> for Error {
    fn from(e: TableError) -> Self {
        use TableError::*;
        match e {
            RangeExhausted { .. }
            | RangeBound { .. }
            | TooManyEntries { .. }
            | TooManyRules { .. }
            | PortFullOfRules
            | PortFullOfCgroups
            | TooManyPeers { .. } => ENOSPC,
            PortOutOfRange { .. } => ERANGE,
            PortTaken => EADDRINUSE,
            OtherAnonPort { .. } | RuleExists { .. } => EEXIST,
            NotFound | RuleWithoutMapping | RuleNotFound | PeerNotFound => ENOENT,
            RangeInUse | LimitBelowUse { .. } => EBUSY,
            BadRange => EINVAL,
            NoMemory => ENOMEM,
        }
    }
}

/// The extended-ack message: what was wrong and, where it helps, what to
/// do (at most 79 bytes, the ack's buffer).
impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TableError::*;
        match *self {
            RangeExhausted { in_use, lo, hi } => write!(
                f,
                "no free port in range {lo}-{hi} ({in_use} in use); widen the range"
            ),
            RangeBound { in_use, lo, hi } => write!(
                f,
                "range {lo}-{hi}: {in_use} allocated, sockets hold the rest; widen the range"
            ),
            TooManyEntries { max } => write!(
                f,
                "entry limit {max} reached; raise max-entries or delete entries"
            ),
            PortOutOfRange { lo, hi } => write!(f, "anon-port is outside the range {lo}-{hi}"),
            PortTaken => f.write_str("anon-port is allocated to another AID or port"),
            OtherAnonPort { anon } => write!(
                f,
                "this AID and port already hold anonymous port {anon}"
            ),
            NotFound => f.write_str("no allocation for this AID and port"),
            RangeInUse => f.write_str("allocations lie outside the new range; delete them first"),
            BadRange => f.write_str("range-lo is above range-hi"),
            LimitBelowUse { entries } => write!(
                f,
                "max-entries is below the {entries} allocations (or rules) held"
            ),
            RuleWithoutMapping => f.write_str(
                "no allocation for this AID and port: add it (vpmctl add) before its rules",
            ),
            RuleExists { aid } => {
                let aid = core::str::from_utf8(aid.as_bytes()).unwrap_or("?");
                write!(f, "a rule for this source exists (AID {aid}); delete it")
            }
            RuleNotFound => f.write_str("no rule with this port and source"),
            PortFullOfRules => write!(
                f,
                "this port already has {RULES_PER_PORT} rules, the most a port may hold"
            ),
            PortFullOfCgroups => write!(
                f,
                "this port already has {RULES_PER_PORT} allocations with a cgroup, the most a port may hold"
            ),
            TooManyRules { max } => write!(
                f,
                "rule limit {max} reached; raise max-entries or delete rules"
            ),
            TooManyPeers { max } => write!(
                f,
                "the allocation has {max} peers, the most it may hold; delete one first"
            ),
            PeerNotFound => f.write_str("this address is not a cooperative peer of this allocation"),
            NoMemory => f.write_str(
                "out of memory (or the memory cgroup's limit) while changing the table",
            ),
        }
    }
}
