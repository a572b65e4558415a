//! The numbers of the vpm netlink API, from the header generated from
//! `uapi/vpm.yaml` (never typed by hand), as typed neli enums.

// Generated: formatted by its generator, not by this crate's rustfmt.
#[rustfmt::skip]
#[path = "../../../gen/vpm_uapi.rs"]
#[allow(dead_code, non_camel_case_types, non_upper_case_globals, clippy::all)]
mod raw;

/// Generic netlink family name.
pub const FAMILY_NAME: &str = "vpm";

// The name in the generated header, without its NUL.
const _: () = {
    let raw = raw::VPM_FAMILY_NAME;
    let ours = FAMILY_NAME.as_bytes();
    assert!(raw.len() == ours.len() + 1);
    let mut i = 0;
    while i < ours.len() {
        assert!(raw[i] == ours[i]);
        i += 1;
    }
};

/// Family version this vpmctl speaks.
pub const FAMILY_VERSION: u8 = raw::VPM_FAMILY_VERSION as u8;

/// Commands (`operations` in the spec).
#[neli::neli_enum(serialized_type = "u8")]
pub enum Cmd {
    GetStatus = raw::VPM_CMD_GET_STATUS as u8,
    AddMapping = raw::VPM_CMD_ADD_MAPPING as u8,
    DelMapping = raw::VPM_CMD_DEL_MAPPING as u8,
    GetMapping = raw::VPM_CMD_GET_MAPPING as u8,
    Flush = raw::VPM_CMD_FLUSH as u8,
    GetConfig = raw::VPM_CMD_GET_CONFIG as u8,
    SetConfig = raw::VPM_CMD_SET_CONFIG as u8,
    MappingNewNtf = raw::VPM_CMD_MAPPING_NEW_NTF as u8,
    MappingDelNtf = raw::VPM_CMD_MAPPING_DEL_NTF as u8,
    FlushNtf = raw::VPM_CMD_FLUSH_NTF as u8,
    ConfigNtf = raw::VPM_CMD_CONFIG_NTF as u8,
    AddRule = raw::VPM_CMD_ADD_RULE as u8,
    DelRule = raw::VPM_CMD_DEL_RULE as u8,
    GetRule = raw::VPM_CMD_GET_RULE as u8,
    RuleNewNtf = raw::VPM_CMD_RULE_NEW_NTF as u8,
    RuleDelNtf = raw::VPM_CMD_RULE_DEL_NTF as u8,
    AddPeer = raw::VPM_CMD_ADD_PEER as u8,
    DelPeer = raw::VPM_CMD_DEL_PEER as u8,
}

/// The multicast group of change events (`mcast-groups` in the spec).
pub const EVENTS_GROUP: &str = "events";
impl neli::consts::genl::Cmd for Cmd {}

/// The `status` attribute set.
#[neli::neli_enum(serialized_type = "u16")]
pub enum StatusAttr {
    Version = raw::VPM_A_STATUS_VERSION as u16,
    Hooks = raw::VPM_A_STATUS_HOOKS as u16,
    PktsSeen = raw::VPM_A_STATUS_PKTS_SEEN as u16,
    PktsXlatIn = raw::VPM_A_STATUS_PKTS_XLAT_IN as u16,
    PktsXlatOut = raw::VPM_A_STATUS_PKTS_XLAT_OUT as u16,
    PktsNoAid = raw::VPM_A_STATUS_PKTS_NO_AID as u16,
    PktsMalformed = raw::VPM_A_STATUS_PKTS_MALFORMED as u16,
    PktsFragments = raw::VPM_A_STATUS_PKTS_FRAGMENTS as u16,
    PktsIcmpXlat = raw::VPM_A_STATUS_PKTS_ICMP_XLAT as u16,
    FlowsActive = raw::VPM_A_STATUS_FLOWS_ACTIVE as u16,
    FlowsNew = raw::VPM_A_STATUS_FLOWS_NEW as u16,
    FlowsExpired = raw::VPM_A_STATUS_FLOWS_EXPIRED as u16,
    FlowsEvicted = raw::VPM_A_STATUS_FLOWS_EVICTED as u16,
    FlowsUnpinned = raw::VPM_A_STATUS_FLOWS_UNPINNED as u16,
    PktsDropped = raw::VPM_A_STATUS_PKTS_DROPPED as u16,
    PktsForeign = raw::VPM_A_STATUS_PKTS_FOREIGN as u16,
    PktsPeer = raw::VPM_A_STATUS_PKTS_PEER as u16,
}
impl neli::consts::genl::NlAttrType for StatusAttr {}

/// The `mapping` attribute set.
#[neli::neli_enum(serialized_type = "u16")]
pub enum MappingAttr {
    Aid = raw::VPM_A_MAPPING_AID as u16,
    Port = raw::VPM_A_MAPPING_PORT as u16,
    Proto = raw::VPM_A_MAPPING_PROTO as u16,
    AnonPort = raw::VPM_A_MAPPING_ANON_PORT as u16,
    WaitMs = raw::VPM_A_MAPPING_WAIT_MS as u16,
    Cgroup = raw::VPM_A_MAPPING_CGROUP as u16,
    CgroupId = raw::VPM_A_MAPPING_CGROUP_ID as u16,
    PktsIn = raw::VPM_A_MAPPING_PKTS_IN as u16,
    BytesIn = raw::VPM_A_MAPPING_BYTES_IN as u16,
    PktsOut = raw::VPM_A_MAPPING_PKTS_OUT as u16,
    BytesOut = raw::VPM_A_MAPPING_BYTES_OUT as u16,
    Peer = raw::VPM_A_MAPPING_PEER as u16,
}
impl neli::consts::genl::NlAttrType for MappingAttr {}

/// The `config` attribute set.
#[neli::neli_enum(serialized_type = "u16")]
pub enum ConfigAttr {
    RangeLo = raw::VPM_A_CONFIG_RANGE_LO as u16,
    RangeHi = raw::VPM_A_CONFIG_RANGE_HI as u16,
    MaxEntries = raw::VPM_A_CONFIG_MAX_ENTRIES as u16,
    Entries = raw::VPM_A_CONFIG_ENTRIES as u16,
    Rules = raw::VPM_A_CONFIG_RULES as u16,
}
impl neli::consts::genl::NlAttrType for ConfigAttr {}

/// The `rule` attribute set.
#[neli::neli_enum(serialized_type = "u16")]
pub enum RuleAttr {
    Port = raw::VPM_A_RULE_PORT as u16,
    Aid = raw::VPM_A_RULE_AID as u16,
    Addr = raw::VPM_A_RULE_ADDR as u16,
    PrefixLen = raw::VPM_A_RULE_PREFIX_LEN as u16,
    SrcPort = raw::VPM_A_RULE_SRC_PORT as u16,
}
impl neli::consts::genl::NlAttrType for RuleAttr {}

/// `proto` flag bits.
pub const PROTO_TCP: u32 = raw::vpm_proto_VPM_PROTO_TCP;
pub const PROTO_UDP: u32 = raw::vpm_proto_VPM_PROTO_UDP;

/// Longest AID in bytes.
pub const AID_MAX_LEN: usize = raw::VPM_AID_MAX_LEN as usize;
