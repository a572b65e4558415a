// SPDX-License-Identifier: GPL-2.0

//! The packet path: what vpm's netfilter hooks do with each packet.
//!
//! Called in softirq or process context with RCU held by netfilter.  The
//! rules of this file: no allocation, no sleeping, no lock the control
//! plane can hold, no printing; every packet is accepted unless a stated
//! policy says otherwise, and every outcome is counted.
//!
//! The shape follows `nf_nat_proto.c`: parse the headers (`vpm_parse.rs`,
//! in place in the skb's linear part, or on bytes copied out of it), look
//! the port up in the RCU-published views (`vpm_views.rs`), make the
//! header writable, rewrite the port and update the checksum
//! incrementally (`vpm_csum.rs`).
//!
//! - Inbound (PRE_ROUTING, and LOCAL_OUT for packets routed to this host):
//!   a destination port that is a multiplexed fixed port is rewritten to
//!   the anonymous port of the allocation the packet belongs to.
//! - Replies (POST_ROUTING): a source port that is an allocated anonymous
//!   port is rewritten back to its fixed port.
//!
//! Only this host's own streams are translated.  A host that forwards or
//! bridges (a router, a container or VM host) carries other hosts'
//! traffic to and from the same port numbers, and `ip_local_reserved_ports`
//! only keeps local autobind off the anonymous ports: forwarded packets,
//! a source NAT or UDP tunnels may carry them too.  So:
//!
//! - inbound, at PRE_ROUTING, the destination must be a local unicast
//!   address of the namespace (LOCAL_OUT packets come from local sockets
//!   and are only considered when routed to this host), and when an IPv6
//!   routing header has segments left, its final destination must be
//!   local too (otherwise this host is a waypoint);
//! - outbound, the packet must have been sent by this host (not forwarded
//!   or bridged), and if it carries a socket bound to a port, that port
//!   must be the packet's source port: the instance's own socket, or the
//!   kernel answering for it (a reset, an ICMP error), never a socket
//!   whose source port a NAT rewrote;
//! - ICMP errors: one arriving must be addressed to this host; one leaving
//!   must be sent by this host about a packet addressed to this host.
//!
//! Everything else with one of vpm's ports passes untouched and is
//! counted as foreign.
//!
//! Cooperative peers (hosts whose agent negotiated an allocation's
//! anonymous port, docs/COOPERATIVE.md) address the anonymous port
//! itself.  Their packets to it mark the flow as direct, and the
//! instance's replies on a direct flow keep the anonymous port, which
//! the peer's socket is connected to: both passed untouched and counted
//! as peer.  Everything else, the peers' clients of the fixed port
//! included, is translated as before.
//!
//! Policy for what cannot be translated: packets vpm cannot parse pass
//! untouched (counted as malformed).  This includes an IPv6 extension
//! chain longer than [`vpm_parse::MAX_EXT_HEADERS`] and a first fragment
//! too short to hold the ports and checksum: vpm cannot see their ports,
//! so they reach whatever listens on the port they carry (for a fixed
//! port, its own listener, as unclaimed packets do); RFC 7112 and the
//! kernel's IPv6 reassembly reject such fragments anyway.  Non-first
//! fragments pass untouched (counted), UDP over IPv6 without checksum
//! passes untouched (counted as malformed), and a packet that must be
//! translated but cannot be made writable is dropped (counted):
//! delivering it to the fixed port would hand it to the wrong application.

use kernel::bindings;
use kernel::sync::rcu;

use crate::vpm_counters::{EntryCounters, EntryStat, Stat};
use crate::vpm_csum;
use crate::vpm_flow::{
    peer_keeps_anon, FlowKey, Inserted, Pin, Pinned, Seen, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};
use crate::vpm_parse::{self, Flow, IcmpError, Parsed, Route, IPPROTO_TCP, IPPROTO_UDP};
use crate::vpm_rules::{is_peer, Source};
use crate::vpm_state::NetState;
use crate::vpm_sys::{self, now_secs, CsumState, Sender, Skb};
use crate::vpm_uapi::{vpm_proto_VPM_PROTO_TCP as PROTO_TCP, vpm_proto_VPM_PROTO_UDP as PROTO_UDP};
use crate::vpm_views::{RevView, Target};

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

/// A translation decided for one packet.
struct Xlat<'g> {
    old: u16,
    new: u16,
    counters: &'g EntryCounters,
}

vpm_sys::nf_hook!(NetState => hook);

/// Handles one packet in namespace `state` at hook `hooknum` of family `pf`.
pub(crate) fn hook(state: &NetState, skb: Skb<'_>, pf: u8, hooknum: u32) -> u32 {
    // Every packet counts as seen; a translated one's two namespace
    // counters are bumped in one call.
    match handle(state, skb, pf, hooknum) {
        Handled::Translated(stat) => {
            state.count2(Stat::PktsSeen, stat);
            bindings::NF_ACCEPT
        }
        Handled::Verdict(v) => {
            state.count(Stat::PktsSeen);
            v
        }
    }
}

/// What [`handle`] did with a packet.
enum Handled {
    /// Translated and accepted; the namespace counter to bump.
    Translated(Stat),
    /// Anything else, with its verdict.
    Verdict(u32),
}

const PASS: Handled = Handled::Verdict(bindings::NF_ACCEPT);

fn handle(state: &NetState, mut skb: Skb<'_>, pf: u8, hooknum: u32) -> Handled {
    if !state.views.active() {
        return PASS;
    }
    let parsed = match u32::from(pf) {
        bindings::NFPROTO_IPV4 => vpm_parse::ipv4(&skb),
        bindings::NFPROTO_IPV6 => vpm_parse::ipv6(&skb),
        _ => return PASS,
    };
    let flow = match parsed {
        Parsed::Flow(f) => f,
        Parsed::IcmpError(e) => return Handled::Verdict(icmp_error(state, &mut skb, &e, hooknum)),
        Parsed::Other => return PASS,
        Parsed::Fragment => {
            state.count(Stat::Fragments);
            return PASS;
        }
        Parsed::Malformed => {
            state.count(Stat::Malformed);
            return PASS;
        }
    };
    let dir = match hooknum {
        PRE_ROUTING => Dir::In,
        // Local clients of local servers; traffic leaving the host for a
        // remote fixed port is not ours to steer.
        LOCAL_OUT if skb.dst_is_local() => Dir::In,
        POST_ROUTING => Dir::Out,
        _ => return PASS,
    };
    let guard = rcu::read_lock();
    let xlat = match dir {
        Dir::In => steer_in(state, &skb, &flow, hooknum, &guard),
        Dir::Out => steer_out(state, &skb, &flow, &guard),
    };
    let Some(x) = xlat else {
        return PASS;
    };
    let len = crate::vpm_parse::Packet::len(&skb) as u64;
    if !rewrite(&mut skb, &flow, dir, x.old, x.new) {
        state.count(Stat::Dropped);
        return Handled::Verdict(bindings::NF_DROP);
    }
    count_entry(x.counters, dir, len);
    Handled::Translated(if dir == Dir::In {
        Stat::XlatIn
    } else {
        Stat::XlatOut
    })
}

/// The translation of a packet addressed to a fixed port, if it is one
/// of this host's streams: the flow's pin, else the current selection
/// (which a flow's first packet pins).
fn steer_in<'g>(
    state: &'g NetState,
    skb: &Skb<'_>,
    flow: &Flow,
    hooknum: u32,
    guard: &'g rcu::Guard,
) -> Option<Xlat<'g>> {
    if state.views.fwd(flow.dport, guard).is_none() {
        if hooknum == PRE_ROUTING {
            mark_direct(state, skb, flow, guard);
        }
        return None;
    }
    // A packet from the wire that claims a loopback source or this host's
    // own is spoofed (the stack drops it, IPv4 only after this hook): it
    // must not pin a flow that a local client with that address and port
    // would then follow, whatever its cgroup or the rules say.
    // With a routing header, the final destination must be this host
    // too: a waypoint passes the packet on (at either hook).
    if !ends_here(skb, flow.route)
        || hooknum == PRE_ROUTING
            && (!skb.addr_is_local(&flow.dst) || skb.src_is_martian(&flow.src))
    {
        state.count(Stat::Foreign);
        return None;
    }
    // UDP over IPv6 must carry a checksum (RFC 8200): a zero one is
    // invalid, vpm does not invent one, and such a packet creates no state.
    if flow.is_udp6_without_checksum() {
        state.count(Stat::Malformed);
        return None;
    }
    let key = flow_key(flow, flow.src, flow.sport, flow.dport);
    let ancestor = |level: u16| skb.cgroup_ancestor(level);
    let local: Option<&dyn Fn(u16) -> u64> = if hooknum == LOCAL_OUT {
        Some(&ancestor)
    } else {
        None
    };
    let now = now_secs();
    let found = pinned_or_selected(state, guard, flow.proto, &key, local, now)?;
    let (anon, counters) = pin(state, guard, flow, &key, found, now);
    Some(Xlat {
        old: flow.dport,
        new: anon,
        counters,
    })
}

/// Records a packet a cooperative peer sent to an anonymous port itself
/// (the port its agent negotiated, docs/COOPERATIVE.md) as the flow's
/// direct mark: keyed by the anonymous port where a pin is keyed by the
/// fixed port, so neither can stand for the other.  The instance's
/// replies on that flow then keep the anonymous port ([`steer_out`]).
/// Any packet of the flow but a reset makes or refreshes the mark, so a
/// flow whose mark was lost (evicted, or a module reload) gets it back
/// with its peer's next packet.  Packets not for this host are left
/// alone (counted as foreign).
fn mark_direct(state: &NetState, skb: &Skb<'_>, flow: &Flow, guard: &rcu::Guard) {
    let Some(rev) = state.views.rev(flow.dport, guard) else {
        return;
    };
    if rev.protos & proto_bit(flow.proto) == 0 || !is_peer(&rev.peers, flow.family, &flow.src) {
        return;
    }
    if !ends_here(skb, flow.route) || !skb.addr_is_local(&flow.dst) || skb.src_is_martian(&flow.src)
    {
        state.count(Stat::Foreign);
        return;
    }
    if flow.is_udp6_without_checksum() {
        state.count(Stat::Malformed);
        return;
    }
    state.count(Stat::Peer);
    let Some(f) = state.views.flows(guard) else {
        return;
    };
    let tcp = flow.proto == IPPROTO_TCP;
    let key = flow_key(flow, flow.src, flow.sport, flow.dport);
    let mark = Pin {
        anon: flow.dport,
        id: rev.id,
    };
    let now = now_secs();
    match f.pinned(&key, now) {
        // Once the instance confirmed it, the peer's packets keep the
        // mark alive as the instance's do (a mark lost costs the whole
        // flow, not one packet), but never end it.
        Some(p) if p.pin == mark && tcp && p.confirmed() => {
            p.touch(
                now,
                Seen::Instance {
                    tcp,
                    flags: flow.tcp_flags & !(TCP_FIN | TCP_RST | TCP_SYN),
                    pin: mark,
                    established: true,
                },
            );
        }
        Some(p) if p.pin == mark => {
            p.touch(
                now,
                Seen::Client {
                    tcp,
                    flags: flow.tcp_flags,
                },
            );
        }
        // A reset opens nothing.
        _ if tcp && flow.tcp_flags & TCP_RST != 0 => {}
        other => count_insert(state, f.insert(&key, mark, other.map(|p| p.pin), now, tcp)),
    }
}

/// Records a client's packet of `flow` (keyed `key`) in the flow table:
/// a pinned flow's pin is refreshed; a flow's first packet (a TCP SYN,
/// any UDP datagram) pins it to its selection.  Returns where the packet
/// goes: the anonymous port and its counters.
fn pin<'g>(
    state: &'g NetState,
    guard: &'g rcu::Guard,
    flow: &Flow,
    key: &FlowKey,
    found: Found<'g>,
    now: u32,
) -> (u16, &'g EntryCounters) {
    let tcp = flow.proto == IPPROTO_TCP;
    match found {
        Found::Pinned(anon, rev, p) => {
            p.touch(
                now,
                Seen::Client {
                    tcp,
                    flags: flow.tcp_flags,
                },
            );
            (anon, &rev.counters)
        }
        Found::Selected(target, dead) => {
            // UDP flows start with any packet, TCP ones with a SYN.
            let opens = !tcp || flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
            match state.views.flows(guard) {
                Some(f) if opens => {
                    let pin = Pin {
                        anon: target.anon,
                        id: target.id,
                    };
                    count_insert(state, f.insert(key, pin, dead, now, tcp));
                }
                _ => state.count(Stat::FlowsUnpinned),
            }
            (target.anon, &target.counters)
        }
    }
}

/// The translation of a packet from an anonymous port, if this host's
/// instance sent it; it refreshes (and confirms) the flow's pin.
fn steer_out<'g>(
    state: &'g NetState,
    skb: &Skb<'_>,
    flow: &Flow,
    guard: &'g rcu::Guard,
) -> Option<Xlat<'g>> {
    let rev = state.views.rev(flow.sport, guard)?;
    if rev.protos & proto_bit(flow.proto) == 0 {
        return None;
    }
    let tcp = flow.proto == IPPROTO_TCP;
    let (own, established) = match skb.sender() {
        // The instance's own socket (or its request or time-wait socket).
        Sender::Socket { port, connected } => (port == flow.sport, connected),
        // The kernel answering for a port nobody holds (a reset): only
        // TCP, and only from this host's own address.  UDP from the
        // instance always carries its socket; a socketless UDP packet
        // is, say, a tunnel's outer header.
        Sender::Control | Sender::None => (tcp && skb.addr_is_local(&flow.src), false),
    };
    if skb.received() || !own {
        state.count(Stat::Foreign);
        return None;
    }
    if flow.is_udp6_without_checksum() {
        state.count(Stat::Malformed);
        return None;
    }
    let this = Pin {
        anon: flow.sport,
        id: rev.id,
    };
    let seen = Seen::Instance {
        tcp,
        flags: flow.tcp_flags,
        pin: this,
        established,
    };
    let now = now_secs();
    let flows = state.views.flows(guard);
    let pinned =
        flows.and_then(|f| f.pinned(&flow_key(flow, flow.peer(), flow.dport, rev.fixed), now));
    // A cooperative peer's socket is connected to the anonymous port its
    // agent negotiated: on a flow that came to that port directly, the
    // reply keeps it (docs/COOPERATIVE.md).
    if is_peer(&rev.peers, flow.family, &flow.peer()) {
        let direct =
            flows.and_then(|f| f.pinned(&flow_key(flow, flow.peer(), flow.dport, flow.sport), now));
        if peer_keeps_anon(
            direct.as_ref().map(|d| d.pin),
            pinned.as_ref().map(|p| p.pin),
            this,
        ) {
            if let Some(d) = direct {
                d.touch(now, seen);
            }
            state.count(Stat::Peer);
            return None;
        }
    }
    if let Some(p) = pinned {
        p.touch(now, seen);
    }
    Some(Xlat {
        old: flow.sport,
        new: rev.fixed,
        counters: &rev.counters,
    })
}

/// Where a packet for a fixed port goes.
enum Found<'g> {
    /// Its flow's pin, whose allocation still exists (the anonymous
    /// port, its reply view and the pin's slot, to refresh it).
    Pinned(u16, &'g RevView, Pinned<'g>),
    /// The current rules, cgroups and default; with the flow's pin if it
    /// has one whose allocation is gone.
    Selected(&'g Target, Option<Pin>),
}

/// The allocation a packet of flow `key` (protocol `proto`) goes to: the
/// flow's pin if it has a live one whose allocation exists, whatever the
/// rules say now; else the selection of the fixed port's view, counted
/// as "no AID" when nothing claims the packet.  `ancestor` gives the
/// sending local socket's cgroup ancestors.  Never changes a pin.
fn pinned_or_selected<'g>(
    state: &'g NetState,
    guard: &'g rcu::Guard,
    proto: u8,
    key: &FlowKey,
    ancestor: Option<&dyn Fn(u16) -> u64>,
    now: u32,
) -> Option<Found<'g>> {
    let view = state.views.fwd(key.fixed, guard)?;
    let bit = proto_bit(proto);
    let pinned = state.views.flows(guard).and_then(|f| f.pinned(key, now));
    let pin = pinned.as_ref().map(|p| p.pin);
    if let Some(p) = pinned {
        if let Some((anon, rev)) = alive(state, guard, p.pin, key.fixed, bit) {
            return Some(Found::Pinned(anon, rev, p));
        }
    }
    let src = Source {
        family: key.family,
        addr: key.addr,
        port: key.port,
    };
    match view.select(&src, ancestor, bit) {
        Some(t) => Some(Found::Selected(t, pin)),
        None => {
            state.count(Stat::NoAid);
            None
        }
    }
}

fn count_insert(state: &NetState, r: Inserted) {
    match r {
        Inserted::Free => state.count(Stat::FlowsNew),
        Inserted::Expired => {
            state.count(Stat::FlowsNew);
            state.count(Stat::FlowsExpired);
        }
        Inserted::Evicted => {
            state.count(Stat::FlowsNew);
            state.count(Stat::FlowsEvicted);
        }
        Inserted::Full | Inserted::Raced => state.count(Stat::FlowsUnpinned),
    }
}

fn proto_bit(proto: u8) -> u32 {
    if proto == IPPROTO_TCP {
        PROTO_TCP
    } else {
        PROTO_UDP
    }
}

/// Translates the packet quoted by an ICMP/ICMPv6 error, so that the
/// error reaches the socket (and PMTU discovery works) on each side:
///
/// - PRE_ROUTING: an error from the network, addressed to this host,
///   about a packet this host sent quotes the wire's view, source port =
///   fixed port; the quote gets the anonymous port the flow is pinned (or
///   steered) to.  Looking up never creates or changes a pin, so a forged
///   error changes no state.
/// - POST_ROUTING: an error this host sends about a packet addressed to
///   it quotes the translated packet, destination port = anonymous port;
///   the quote gets the fixed port back.
///
/// The quoted transport checksum (when quoted at all) and the ICMP
/// checksum are updated incrementally; the ports sit at even offsets of
/// the ICMP message, so RFC 1624 arithmetic applies to both.
fn icmp_error(state: &NetState, skb: &mut Skb<'_>, e: &IcmpError, hooknum: u32) -> u32 {
    let guard = rcu::read_lock();
    let xlat = match hooknum {
        PRE_ROUTING => icmp_in(state, skb, e, &guard),
        POST_ROUTING => icmp_out(state, skb, e, &guard),
        _ => None,
    };
    let Some((at, old, new)) = xlat else {
        return bindings::NF_ACCEPT;
    };
    if !rewrite_icmp(skb, e, at, old, new) {
        state.count(Stat::Dropped);
        return bindings::NF_DROP;
    }
    state.count(Stat::IcmpXlat);
    bindings::NF_ACCEPT
}

/// The translation of the quote of an error arriving from the network
/// (PRE_ROUTING), if it is about one of this host's streams: the offset
/// of the quoted source port in the message, the fixed port and the
/// anonymous port the flow is pinned (or steered) to.
fn icmp_in(
    state: &NetState,
    skb: &Skb<'_>,
    e: &IcmpError,
    guard: &rcu::Guard,
) -> Option<(usize, u16, u16)> {
    let inner = &e.inner;
    state.views.fwd(inner.sport, guard)?;
    if !skb.addr_is_local(&e.dst) || !ends_here(skb, e.route) {
        state.count(Stat::Foreign);
        return None;
    }
    // The quoted packet went to the quoted destination: its flow is keyed
    // by that peer.
    let key = flow_key(inner, inner.peer(), inner.dport, inner.sport);
    let anon = match pinned_or_selected(state, guard, inner.proto, &key, None, now_secs())? {
        Found::Pinned(anon, _, _) => anon,
        Found::Selected(t, _) => t.anon,
    };
    Some((inner.sport_off(), inner.sport, anon))
}

/// The translation of the quote of an error this host sends
/// (POST_ROUTING) about a packet addressed to it: the offset of the
/// quoted destination port, the anonymous port and the fixed port.
fn icmp_out(
    state: &NetState,
    skb: &Skb<'_>,
    e: &IcmpError,
    guard: &rcu::Guard,
) -> Option<(usize, u16, u16)> {
    let inner = &e.inner;
    let rev = state.views.rev(inner.dport, guard)?;
    if rev.protos & proto_bit(inner.proto) == 0 {
        return None;
    }
    if skb.received() || !skb.addr_is_local(&inner.dst) {
        state.count(Stat::Foreign);
        return None;
    }
    // About a packet a cooperative peer sent to the anonymous port itself
    // (see steer_out): left as it is, which its socket knows.
    if is_peer(&rev.peers, inner.family, &inner.src) {
        let now = now_secs();
        let flows = state.views.flows(guard);
        let pin_of = |fixed| {
            flows
                .and_then(|f| f.pinned(&flow_key(inner, inner.src, inner.sport, fixed), now))
                .map(|p| p.pin)
        };
        let this = Pin {
            anon: inner.dport,
            id: rev.id,
        };
        if peer_keeps_anon(pin_of(inner.dport), pin_of(rev.fixed), this) {
            state.count(Stat::Peer);
            return None;
        }
    }
    Some((inner.dport_off(), inner.dport, rev.fixed))
}

/// Writes `new` over the quoted port `old` at offset `at` of the ICMP
/// message and updates the quoted transport checksum (when quoted at all)
/// and the ICMP checksum.  Returns false if the message could not be made
/// writable.
fn rewrite_icmp(skb: &mut Skb<'_>, e: &IcmpError, at: usize, old: u16, new: u16) -> bool {
    let inner = &e.inner;
    let csum = skb.csum();
    let Some(hdr) = skb.writable(e.write_len()) else {
        return false;
    };
    let mut outer = e.check;
    hdr[at..at + 2].copy_from_slice(&new.to_be_bytes());
    outer = vpm_csum::replace2(outer, old, new);
    let zero_udp = inner.proto == IPPROTO_UDP && inner.check == 0;
    if e.inner_check && !zero_udp {
        let check = inner.port_check(old, new);
        let c = inner.check_off();
        hdr[c..c + 2].copy_from_slice(&check.to_be_bytes());
        outer = vpm_csum::replace2(outer, inner.check, check);
    }
    // An ICMP checksum is computed in software; a partial one (never seen
    // in practice) would be completed later over the new bytes anyway.
    if csum == CsumState::Final {
        hdr[e.check_off..e.check_off + 2].copy_from_slice(&outer.to_be_bytes());
    }
    true
}

/// Whether a packet whose header's destination is this host ends here:
/// with a routing header that has segments left, only if its final
/// destination is local too (and known).  Linux delivers such a packet
/// only then (a Mobile IPv6 home address, the last segment of an SRv6
/// path when `seg6_enabled`), and forwards or drops it otherwise.
fn ends_here(skb: &Skb<'_>, route: Route) -> bool {
    match route {
        Route::Direct => true,
        Route::To(a) => skb.addr_is_local(&a),
        Route::Unknown => false,
    }
}

/// The flow of a packet between client `addr`:`port` and fixed port `fixed`.
fn flow_key(flow: &Flow, addr: [u8; 16], port: u16, fixed: u16) -> FlowKey {
    FlowKey {
        proto: flow.proto,
        family: flow.family,
        fixed,
        port,
        addr,
    }
}

/// The allocation pin `p` names, if it still exists (same anonymous
/// port, same allocation, same fixed port, the packet's protocol).
fn alive<'a>(
    state: &'a NetState,
    guard: &'a rcu::Guard,
    p: Pin,
    fixed: u16,
    proto: u32,
) -> Option<(u16, &'a RevView)> {
    let rev = state.views.rev(p.anon, guard)?;
    (rev.id == p.id && rev.fixed == fixed && rev.protos & proto != 0).then_some((p.anon, rev))
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
    let at = if dir == Dir::In {
        flow.dport_off()
    } else {
        flow.sport_off()
    };
    hdr[at..at + 2].copy_from_slice(&new.to_be_bytes());
    if csum == CsumState::Final {
        let check = flow.port_check(old, new);
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
    counters.add_packet(pkts, bytes, len);
}
