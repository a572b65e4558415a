// SPDX-License-Identifier: GPL-2.0

//! Source rules: which application a packet for a fixed port belongs to,
//! chosen by the client's address and port (the patent's "source IP
//! address/port pairs that should be routed to this AID").
//!
//! Pure `core`, like `vpm_csum.rs`: the module and the host tests compile
//! this same file.
//!
//! A rule matches a source prefix (IPv4 or IPv6) and optionally a source
//! port.  The most specific matching rule wins: the longer prefix, then a
//! rule that names a port over one that does not.  Two rules of equal
//! specificity that can match the same packet are necessarily the same
//! [`Match`] (same family, same length, same masked prefix, same port),
//! so refusing duplicate keys at insert time is exactly "ties are
//! rejected"; selection never has to break a tie.  The catch-all
//! [`Match::ANY`] is a port's default AID.

/// Address family a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Family {
    /// Every source (the default rule, or a port-only rule).
    Any,
    /// IPv4 sources.
    V4,
    /// IPv6 sources.
    V6,
}

impl Family {
    /// The family's one number, wherever vpm stores or hashes a family:
    /// 0 for any, 4 for IPv4, 6 for IPv6.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Family::Any => 0,
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// The family of [`Family::code`] `code`, if it is one.
    pub(crate) const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Family::Any),
            4 => Some(Family::V4),
            6 => Some(Family::V6),
            _ => None,
        }
    }

    /// Address length in bits.
    pub(crate) const fn bits(self) -> u8 {
        match self {
            Family::Any => 0,
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// A packet's source as the packet path sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    /// `V4` or `V6`.
    pub(crate) family: Family,
    /// The address; an IPv4 address fills the first 4 bytes, the rest zero.
    pub(crate) addr: [u8; 16],
    /// The source port.
    pub(crate) port: u16,
}

/// Why a rule is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleError {
    /// The prefix length exceeds the family's address length.
    PrefixTooLong { max: u8 },
    /// Bits beyond the prefix length are set (like `ip route`, vpm wants
    /// the network address, not a host address with a length).
    HostBits,
}

/// What a rule matches.
///
/// # Invariants
///
/// `plen <= family.bits()`; every address bit at or beyond `plen` is zero
/// (for [`Family::Any`], the whole address).  A `port` of 0 matches any
/// source port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Match {
    family: Family,
    plen: u8,
    addr: [u8; 16],
    port: u16,
}

impl Match {
    /// Matches every packet: the port's default AID.
    pub(crate) const ANY: Match = Match {
        family: Family::Any,
        plen: 0,
        addr: [0; 16],
        port: 0,
    };

    /// Validates a rule for `addr/plen` and source `port` (0: any).
    ///
    /// For [`Family::Any`], `plen` and `addr` must be zero.
    pub(crate) fn new(
        family: Family,
        addr: [u8; 16],
        plen: u8,
        port: u16,
    ) -> Result<Self, RuleError> {
        if plen > family.bits() {
            return Err(RuleError::PrefixTooLong { max: family.bits() });
        }
        if masked(&addr, plen) != addr {
            return Err(RuleError::HostBits);
        }
        // INVARIANT: checked just above.
        Ok(Self {
            family,
            plen,
            addr,
            port,
        })
    }

    /// The family.
    pub(crate) fn family(&self) -> Family {
        self.family
    }

    /// The prefix address.
    pub(crate) fn addr(&self) -> &[u8; 16] {
        &self.addr
    }

    /// The prefix length.
    pub(crate) fn plen(&self) -> u8 {
        self.plen
    }

    /// The source port, 0 for any.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is the catch-all default rule.
    pub(crate) fn is_default(&self) -> bool {
        *self == Self::ANY
    }

    /// Rank of the rule: a higher rank wins.  Equal ranks never match the
    /// same packet unless the rules are equal (see the module comment).
    pub(crate) fn specificity(&self) -> u16 {
        let prefix = match self.family {
            Family::Any => 0,
            _ => (u16::from(self.plen) + 1) * 2,
        };
        prefix + u16::from(self.port != 0)
    }

    /// Whether a packet from `src` matches.
    pub(crate) fn matches(&self, src: &Source) -> bool {
        if self.port != 0 && self.port != src.port {
            return false;
        }
        match self.family {
            Family::Any => true,
            f => f == src.family && masked(&src.addr, self.plen) == self.addr,
        }
    }
}

/// `addr` with every bit at or beyond `plen` cleared.
fn masked(addr: &[u8; 16], plen: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    let full = usize::from(plen / 8);
    out[..full].copy_from_slice(&addr[..full]);
    let rem = plen % 8;
    if rem != 0 {
        out[full] = addr[full] & (0xff << (8 - rem));
    }
    out
}

/// Orders rules for [`select`]: most specific first.
pub(crate) fn sort<T>(rules: &mut [(Match, T)]) {
    rules.sort_unstable_by(|a, b| {
        b.0.specificity()
            .cmp(&a.0.specificity())
            .then(a.0.cmp(&b.0))
    });
}

/// The value of the most specific rule matching `src` among those whose
/// value is `usable` (e.g. covers the packet's protocol).
///
/// `rules` must be ordered by [`sort`]; the cost is linear in the rules
/// of one fixed port, independent of how many allocations exist.
pub(crate) fn select<'a, T>(
    rules: &'a [(Match, T)],
    src: &Source,
    usable: impl Fn(&T) -> bool,
) -> Option<&'a T> {
    rules
        .iter()
        .find(|(m, t)| usable(t) && m.matches(src))
        .map(|(_, t)| t)
}

/// Most cooperative peers one allocation holds: the reply path scans
/// them for every reply from the anonymous port, so the scan is bounded.
pub(crate) const PEERS_PER_MAPPING: usize = 16;

/// A cooperative peer of an allocation (docs/COOPERATIVE.md): a host
/// whose agent negotiated the anonymous port, so that its sockets are
/// connected to that port and replies to it must keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// `V4` or `V6`.
    family: Family,
    /// An IPv4 address fills the first 4 bytes, the rest zero.
    addr: [u8; 16],
}

impl Peer {
    /// The peer of a 4-byte (IPv4) or 16-byte (IPv6) address.  An
    /// IPv4-mapped IPv6 address is its IPv4 address: a dual-stack socket
    /// talks to such a peer in IPv4 packets.  The unspecified address is
    /// no peer.
    pub(crate) fn new(raw: &[u8]) -> Option<Self> {
        let mut addr = [0u8; 16];
        let family = match raw.len() {
            4 => {
                addr[..4].copy_from_slice(raw);
                Family::V4
            }
            16 if raw[..10].iter().all(|&b| b == 0) && raw[10..12] == [0xff, 0xff] => {
                addr[..4].copy_from_slice(&raw[12..]);
                Family::V4
            }
            16 => {
                addr.copy_from_slice(raw);
                Family::V6
            }
            _ => return None,
        };
        if addr == [0; 16] {
            return None;
        }
        Some(Self { family, addr })
    }

    /// The address as 4 or 16 bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self.family {
            Family::V4 => &self.addr[..4],
            _ => &self.addr,
        }
    }

    /// Whether this is `addr` of `family` (as the packet path holds it).
    #[inline]
    pub(crate) fn is(&self, family: Family, addr: &[u8; 16]) -> bool {
        self.family == family && self.addr == *addr
    }
}

/// Whether `peers` holds `addr` of `family`; at most
/// [`PEERS_PER_MAPPING`] comparisons.
#[inline]
pub(crate) fn is_peer(peers: &[Peer], family: Family, addr: &[u8; 16]) -> bool {
    peers.iter().any(|p| p.is(family, addr))
}
