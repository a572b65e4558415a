//! `vpmctl status`.

use neli::types::{Buffer, GenlBuffer};
use serde::Serialize;

use crate::attrs::Attrs;
use crate::connection::Connection;
use crate::error::Result;
use crate::uapi::{Cmd, StatusAttr};

/// The module's status in the caller's network namespace.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Version of the loaded vpm module.
    pub version: String,
    /// Netfilter hooks registered in this namespace.
    pub hooks: u32,
    /// Packets the hooks of this namespace have seen.
    pub pkts_seen: u64,
    /// Packets translated fixed port -> anonymous port.
    pub pkts_xlat_in: u64,
    /// Packets translated anonymous port -> fixed port.
    pub pkts_xlat_out: u64,
    /// Packets for a fixed port that no rule, cgroup or default claimed.
    pub pkts_no_aid: u64,
    /// Packets vpm could not parse safely (passed untouched).
    pub pkts_malformed: u64,
    /// Non-first fragments (passed untouched).
    pub pkts_fragments: u64,
    /// ICMP errors whose quoted packet was translated.
    pub pkts_icmp_xlat: u64,
    /// Flows pinned now, pinned so far, expired, evicted; packets without a pin.
    pub flows_active: u64,
    pub flows_new: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub flows_unpinned: u64,
    /// Packets dropped because they could not be made writable.
    pub pkts_dropped: u64,
    /// Packets with vpm's ports that are not this host's own streams
    /// (forwarded, bridged, other addresses or sockets): passed untouched.
    pub pkts_foreign: u64,
    /// Replies to an allocation's cooperative peers, which keep the
    /// anonymous port: passed untouched.
    pub pkts_peer: u64,
}

impl Status {
    /// Reads a status reply.  Only the version is required: counters a
    /// module does not report read as 0.
    pub fn from_attrs(a: &Attrs<StatusAttr>) -> Result<Self> {
        let count = |ty| a.get(ty).map(Option::unwrap_or_default);
        Ok(Status {
            version: a.require(StatusAttr::Version)?,
            hooks: a.get(StatusAttr::Hooks)?.unwrap_or(0),
            pkts_seen: count(StatusAttr::PktsSeen)?,
            pkts_xlat_in: count(StatusAttr::PktsXlatIn)?,
            pkts_xlat_out: count(StatusAttr::PktsXlatOut)?,
            pkts_no_aid: count(StatusAttr::PktsNoAid)?,
            pkts_malformed: count(StatusAttr::PktsMalformed)?,
            pkts_fragments: count(StatusAttr::PktsFragments)?,
            pkts_icmp_xlat: count(StatusAttr::PktsIcmpXlat)?,
            flows_active: count(StatusAttr::FlowsActive)?,
            flows_new: count(StatusAttr::FlowsNew)?,
            flows_expired: count(StatusAttr::FlowsExpired)?,
            flows_evicted: count(StatusAttr::FlowsEvicted)?,
            flows_unpinned: count(StatusAttr::FlowsUnpinned)?,
            pkts_dropped: count(StatusAttr::PktsDropped)?,
            pkts_foreign: count(StatusAttr::PktsForeign)?,
            pkts_peer: count(StatusAttr::PktsPeer)?,
        })
    }

    /// The human-readable form.
    pub fn render(&self) -> String {
        format!(
            "vpm {}\n  netfilter hooks      {}\n  packets seen         {}\n  translated in        {}\n  \
             translated out       {}\n  no AID (passed)      {}\n  malformed (passed)   {}\n  \
             fragments (passed)   {}\n  foreign (passed)     {}\n  to peers (passed)    {}\n  ICMP errors          {}\n  \
             dropped              {}\n  \
             flows active         {}\n  flows pinned         {}\n  flows expired        {}\n  \
             flows evicted        {}\n  unpinned packets     {}\n",
            self.version,
            self.hooks,
            self.pkts_seen,
            self.pkts_xlat_in,
            self.pkts_xlat_out,
            self.pkts_no_aid,
            self.pkts_malformed,
            self.pkts_fragments,
            self.pkts_foreign,
            self.pkts_peer,
            self.pkts_icmp_xlat,
            self.pkts_dropped,
            self.flows_active,
            self.flows_new,
            self.flows_expired,
            self.flows_evicted,
            self.flows_unpinned
        )
    }
}

/// Asks the module for its status.
pub fn get(conn: &Connection) -> Result<Status> {
    let reply = conn.request_one(
        "get-status",
        Cmd::GetStatus,
        GenlBuffer::<StatusAttr, Buffer>::new(),
    )?;
    Status::from_attrs(&Attrs::of("status", &reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn attrs(pkts: &[u8]) -> Vec<(StatusAttr, Vec<u8>)> {
        vec![
            (StatusAttr::Version, b"0.1.0\0".to_vec()),
            (StatusAttr::Hooks, 4u32.to_ne_bytes().to_vec()),
            (StatusAttr::PktsSeen, pkts.to_vec()),
            (StatusAttr::from(99u16), vec![1, 2, 3]),
        ]
    }

    fn parse(a: &[(StatusAttr, Vec<u8>)]) -> Result<Status> {
        Status::from_attrs(&crate::attrs::tests::attrs("status", a))
    }

    #[test]
    fn parses_small_and_large_uint() {
        let s = parse(&attrs(&7u32.to_ne_bytes())).unwrap();
        assert_eq!(
            s,
            Status {
                version: "0.1.0".into(),
                hooks: 4,
                pkts_seen: 7,
                ..Status::default()
            }
        );
        let big = 1u64 << 40;
        assert_eq!(parse(&attrs(&big.to_ne_bytes())).unwrap().pkts_seen, big);
    }

    #[test]
    fn rejects_bad_uint_length() {
        assert!(matches!(parse(&attrs(&[1, 2, 3])), Err(Error::Protocol(_))));
    }

    #[test]
    fn requires_version() {
        let a = vec![(StatusAttr::Hooks, 4u32.to_ne_bytes().to_vec())];
        assert!(matches!(parse(&a), Err(Error::Protocol(_))));
    }

    #[test]
    fn json_field_names_are_stable() {
        let s = parse(&attrs(&7u32.to_ne_bytes())).unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"version":"0.1.0","hooks":4,"pkts_seen":7,"pkts_xlat_in":0,"pkts_xlat_out":0,"pkts_no_aid":0,"pkts_malformed":0,"pkts_fragments":0,"pkts_icmp_xlat":0,"flows_active":0,"flows_new":0,"flows_expired":0,"flows_evicted":0,"flows_unpinned":0,"pkts_dropped":0,"pkts_foreign":0,"pkts_peer":0}"#
        );
    }
}
