// SPDX-License-Identifier: GPL-2.0

//! The packet path: what vpm's netfilter hooks do with each packet.
//!
//! Called in softirq or process context with RCU held by netfilter.  The
//! rules of this file: no allocation, no sleeping, no lock the control
//! plane can hold, no printing; every packet is accepted unless a stated
//! policy says otherwise, and every outcome is counted.
//!
//! The shape follows `nf_nat_proto.c`: parse the headers (`vpm_parse.rs`,
//! on bytes copied out of the skb), look the port up in the RCU-published
//! views (`vpm_table.rs`), make the header writable, rewrite the port and
//! update the checksum incrementally (`vpm_csum.rs`).
//!
//! - Inbound (PRE_ROUTING, and LOCAL_OUT for packets routed to this host):
//!   a destination port that is a multiplexed fixed port is rewritten to
//!   the anonymous port of the allocation the packet belongs to.
//! - Replies (POST_ROUTING): a source port that is an allocated anonymous
//!   port is rewritten back to its fixed port.  Anonymous ports are vpm's
//!   alone (reserved in `ip_local_reserved_ports`), so every packet sent
//!   from one belongs to a translated stream.
//!
//! Policy for what cannot be translated: packets vpm cannot parse pass
//! untouched (counted as malformed), non-first fragments pass untouched,
//! and a packet that must be translated but cannot be made writable is
//! dropped (counted): delivering it to the fixed port would hand it to the
//! wrong application.

use kernel::bindings;
use kernel::sync::rcu;

use crate::vpm_csum;
use crate::vpm_parse::{self, Flow, Parsed, IPPROTO_TCP, IPPROTO_UDP};
use crate::vpm_rules::{Family, Source};
use crate::vpm_sys::{CsumState, Skb, CGROUP_DEPTH};
use crate::vpm_table::{EntryCounters, EntryStat, NetState, Stat};
use crate::vpm_uapi::{vpm_proto_VPM_PROTO_TCP as PROTO_TCP, vpm_proto_VPM_PROTO_UDP as PROTO_UDP};

const PRE_ROUTING: u32 = bindings::nf_inet_hooks_NF_INET_PRE_ROUTING;
const LOCAL_OUT: u32 = bindings::nf_inet_hooks_NF_INET_LOCAL_OUT;
const POST_ROUTING: u32 = bindings::nf_inet_hooks_NF_INET_POST_ROUTING;

/// Which way a packet is translated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Destination port: fixed -> anonymous.
    In,
    /// Source port: anonymous -> fixed.
    Out,
}

/// Handles one packet in namespace `state` at hook `hooknum` of family `pf`.
pub(crate) fn hook(state: &NetState, mut skb: Skb<'_>, pf: u8, hooknum: u32) -> u32 {
    state.count(Stat::PktsSeen);
    let parsed = match u32::from(pf) {
        bindings::NFPROTO_IPV4 => vpm_parse::ipv4(&skb),
        bindings::NFPROTO_IPV6 => vpm_parse::ipv6(&skb),
        _ => return bindings::NF_ACCEPT,
    };
    let flow = match parsed {
        Parsed::Flow(f) => f,
        Parsed::Other => return bindings::NF_ACCEPT,
        Parsed::Fragment => {
            state.count(Stat::Fragments);
            return bindings::NF_ACCEPT;
        }
        Parsed::Malformed => {
            state.count(Stat::Malformed);
            return bindings::NF_ACCEPT;
        }
    };
    let dir = match hooknum {
        PRE_ROUTING => Dir::In,
        // Local clients of local servers; traffic leaving the host for a
        // remote fixed port is not ours to steer.
        LOCAL_OUT if skb.dst_is_local() => Dir::In,
        POST_ROUTING => Dir::Out,
        _ => return bindings::NF_ACCEPT,
    };
    let guard = rcu::read_lock();
    let proto = if flow.proto == IPPROTO_TCP { PROTO_TCP } else { PROTO_UDP };
    let (old, new, counters) = match dir {
        Dir::In => {
            let Some(view) = state.views.fwd.get(flow.dport, &guard) else {
                return bindings::NF_ACCEPT;
            };
            let src = Source {
                family: flow.family,
                addr: flow.src,
                port: flow.sport,
            };
            let mut ids = [0u64; CGROUP_DEPTH];
            let n = if hooknum == LOCAL_OUT {
                skb.cgroup_ids(&mut ids)
            } else {
                0
            };
            let Some(target) = view.select(&src, &ids[..n], proto) else {
                state.count(Stat::NoAid);
                return bindings::NF_ACCEPT;
            };
            (flow.dport, target.anon, &target.counters)
        }
        Dir::Out => {
            let Some(rev) = state.views.rev.get(flow.sport, &guard) else {
                return bindings::NF_ACCEPT;
            };
            if rev.protos & proto == 0 {
                return bindings::NF_ACCEPT;
            }
            (flow.sport, rev.fixed, &rev.counters)
        }
    };
    // UDP over IPv6 must carry a checksum (RFC 8200): a zero one is invalid
    // and vpm does not invent one.
    if flow.family == Family::V6 && flow.proto == IPPROTO_UDP && flow.check == 0 {
        state.count(Stat::Malformed);
        return bindings::NF_ACCEPT;
    }
    let len = crate::vpm_parse::Packet::len(&skb) as u64;
    if !rewrite(&mut skb, &flow, dir, old, new) {
        state.count(Stat::Dropped);
        return bindings::NF_DROP;
    }
    count_entry(counters, dir, len);
    state.count(if dir == Dir::In { Stat::XlatIn } else { Stat::XlatOut });
    bindings::NF_ACCEPT
}

/// Rewrites the port of `dir` from `old` to `new` and updates the
/// checksum with the semantics of `inet_proto_csum_replace2(...,
/// pseudohdr=false)`: ports are not in the pseudo-header, so with
/// CHECKSUM_PARTIAL the field (a pseudo-header seed) stays as it is, and
/// `skb->csum` of CHECKSUM_COMPLETE stays valid because the port and the
/// checksum field change by opposite amounts.  Returns false if the header
/// could not be made writable.
fn rewrite(skb: &mut Skb<'_>, flow: &Flow, dir: Dir, old: u16, new: u16) -> bool {
    let csum = skb.csum();
    let Some(hdr) = skb.writable(flow.write_len()) else {
        return false;
    };
    let at = if dir == Dir::In { flow.dport_off() } else { flow.sport_off() };
    hdr[at..at + 2].copy_from_slice(&new.to_be_bytes());
    if csum == CsumState::Final {
        let check = if flow.proto == IPPROTO_UDP && flow.family == Family::V4 {
            vpm_csum::replace2_udp4(flow.check, old, new)
        } else {
            vpm_csum::replace2(flow.check, old, new)
        };
        let c = flow.check_off();
        hdr[c..c + 2].copy_from_slice(&check.to_be_bytes());
    }
    true
}

fn count_entry(counters: &EntryCounters, dir: Dir, len: u64) {
    let (pkts, bytes) = match dir {
        Dir::In => (EntryStat::PktsIn, EntryStat::BytesIn),
        Dir::Out => (EntryStat::PktsOut, EntryStat::BytesOut),
    };
    counters.add(pkts as usize, 1);
    counters.add(bytes as usize, len);
}
