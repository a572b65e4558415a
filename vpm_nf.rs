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
use crate::vpm_flow::{FlowKey, Inserted, TCP_ACK, TCP_SYN, TCP_TIMEOUT, UDP_TIMEOUT};
use crate::vpm_parse::{self, Flow, IcmpError, Parsed, IPPROTO_TCP, IPPROTO_UDP};
use crate::vpm_rules::{Family, Source};
use crate::vpm_sys::{now_secs, CsumState, Skb, CGROUP_DEPTH};
use crate::vpm_table::{EntryCounters, EntryStat, NetState, RevView, Stat};
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
        Parsed::IcmpError(e) => return icmp_error(state, &mut skb, &e, hooknum),
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
    let timeout = if flow.proto == IPPROTO_TCP { TCP_TIMEOUT } else { UDP_TIMEOUT };
    let now = now_secs();
    let flows = state.views.flows.get(&guard);
    let (old, new, counters) = match dir {
        Dir::In => {
            let Some(view) = state.views.fwd.get(flow.dport, &guard) else {
                return bindings::NF_ACCEPT;
            };
            let key = flow_key(&flow, flow.src, flow.sport, flow.dport);
            // A pinned flow keeps its allocation, whatever the rules say
            // now, for as long as that allocation exists.
            let pinned = flows
                .and_then(|f| f.lookup(&key, now))
                .and_then(|p| alive(state, &guard, p.anon, p.id, flow.dport, proto));
            match pinned {
                Some((anon, rev)) => {
                    if let Some(f) = flows {
                        f.touch(&key, now, timeout, flow.tcp_flags);
                    }
                    (flow.dport, anon, &rev.counters)
                }
                None => {
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
                    // UDP flows start with any packet, TCP ones with a SYN.
                    let opens = flow.proto == IPPROTO_UDP || flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
                    match flows {
                        Some(f) if opens => {
                            let pin = crate::vpm_flow::Pin {
                                anon: target.anon,
                                id: target.id,
                            };
                            match f.insert(&key, pin, now, timeout) {
                                Inserted::Free => state.count(Stat::FlowsNew),
                                Inserted::Expired => {
                                    state.count(Stat::FlowsNew);
                                    state.count(Stat::FlowsExpired);
                                }
                                Inserted::Evicted => {
                                    state.count(Stat::FlowsNew);
                                    state.count(Stat::FlowsEvicted);
                                }
                                Inserted::Raced => state.count(Stat::FlowsUnpinned),
                            }
                        }
                        _ => state.count(Stat::FlowsUnpinned),
                    }
                    (flow.dport, target.anon, &target.counters)
                }
            }
        }
        Dir::Out => {
            let Some(rev) = state.views.rev.get(flow.sport, &guard) else {
                return bindings::NF_ACCEPT;
            };
            if rev.protos & proto == 0 {
                return bindings::NF_ACCEPT;
            }
            // Replies keep their flow alive (and a FIN or RST from the
            // instance ends it).
            if let Some(f) = flows {
                f.touch(&flow_key(&flow, flow.dst, flow.dport, rev.fixed), now, timeout, flow.tcp_flags);
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

/// Translates the packet quoted by an ICMP/ICMPv6 error, so that the
/// error reaches the socket (and PMTU discovery works) on each side:
///
/// - PRE_ROUTING: an error from the network about a packet this host sent
///   quotes the wire's view, source port = fixed port; the quote gets the
///   anonymous port of the allocation that packets from the quoted
///   destination are steered to (the selection of [`hook`]).
/// - POST_ROUTING: an error this host sends about a packet it received
///   quotes the translated packet, destination port = anonymous port; the
///   quote gets the fixed port back.
///
/// The quoted transport checksum (when quoted at all) and the ICMP
/// checksum are updated incrementally; the ports sit at even offsets of
/// the ICMP message, so RFC 1624 arithmetic applies to both.
fn icmp_error(state: &NetState, skb: &mut Skb<'_>, e: &IcmpError, hooknum: u32) -> u32 {
    let inner = &e.inner;
    let proto = if inner.proto == IPPROTO_TCP { PROTO_TCP } else { PROTO_UDP };
    let guard = rcu::read_lock();
    let (at, old, new) = match hooknum {
        PRE_ROUTING => {
            let Some(view) = state.views.fwd.get(inner.sport, &guard) else {
                return bindings::NF_ACCEPT;
            };
            // The quoted packet went to the quoted destination: steer as a
            // packet coming from there would be steered.
            let peer = Source {
                family: inner.family,
                addr: inner.dst,
                port: inner.dport,
            };
            // The flow's pin if it has one, else the rules.
            let key = flow_key(inner, inner.dst, inner.dport, inner.sport);
            let pinned = state
                .views
                .flows
                .get(&guard)
                .and_then(|f| f.lookup(&key, now_secs()))
                .and_then(|p| alive(state, &guard, p.anon, p.id, inner.sport, proto));
            let anon = match pinned {
                Some((anon, _)) => anon,
                None => match view.select(&peer, &[], proto) {
                    Some(target) => target.anon,
                    None => return bindings::NF_ACCEPT,
                },
            };
            (inner.sport_off(), inner.sport, anon)
        }
        POST_ROUTING => {
            let Some(rev) = state.views.rev.get(inner.dport, &guard) else {
                return bindings::NF_ACCEPT;
            };
            if rev.protos & proto == 0 {
                return bindings::NF_ACCEPT;
            }
            (inner.dport_off(), inner.dport, rev.fixed)
        }
        _ => return bindings::NF_ACCEPT,
    };
    let csum = skb.csum();
    let Some(hdr) = skb.writable(e.write_len()) else {
        state.count(Stat::Dropped);
        return bindings::NF_DROP;
    };
    let mut outer = e.check;
    hdr[at..at + 2].copy_from_slice(&new.to_be_bytes());
    outer = vpm_csum::replace2(outer, old, new);
    let zero_udp = inner.proto == IPPROTO_UDP && inner.check == 0;
    if e.inner_check && !zero_udp {
        let check = vpm_csum::replace2(inner.check, old, new);
        let check = if inner.proto == IPPROTO_UDP && check == 0 { 0xffff } else { check };
        let c = inner.check_off();
        hdr[c..c + 2].copy_from_slice(&check.to_be_bytes());
        outer = vpm_csum::replace2(outer, inner.check, check);
    }
    // An ICMP checksum is computed in software; a partial one (never seen
    // in practice) would be completed later over the new bytes anyway.
    if csum == CsumState::Final {
        hdr[e.check_off..e.check_off + 2].copy_from_slice(&outer.to_be_bytes());
    }
    state.count(Stat::IcmpXlat);
    bindings::NF_ACCEPT
}

/// The flow of a packet between client `addr`:`port` and fixed port `fixed`.
fn flow_key(flow: &Flow, addr: [u8; 16], port: u16, fixed: u16) -> FlowKey {
    FlowKey {
        proto: flow.proto,
        family: if flow.family == Family::V4 { 4 } else { 6 },
        fixed,
        port,
        addr,
    }
}

/// The allocation a pin names, if it still exists (same anonymous port,
/// same allocation, same fixed port, the packet's protocol).
fn alive<'a>(
    state: &'a NetState,
    guard: &'a rcu::Guard,
    anon: u16,
    id: u16,
    fixed: u16,
    proto: u32,
) -> Option<(u16, &'a RevView)> {
    let rev = state.views.rev.get(anon, guard)?;
    (rev.id == id && rev.fixed == fixed && rev.protos & proto != 0).then_some((anon, rev))
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
    counters.add(pkts, 1);
    counters.add(bytes, len);
}
