#!/usr/bin/env python3
"""vpm's malformed-packet corpus (tests/vm/96-malformed.sh, issue 11).

Crafted packets, each with its expected outcome written next to it, are
injected into the namespace where vpm runs (NS_VPM):

  pre         from a veth peer (NS_PEER), as Ethernet frames on an
              AF_PACKET socket: they enter at PRE_ROUTING;
  pre-userns  the same frames from an unprivileged user (uid 65534) in a
              user namespace of its own, whose network namespace holds
              the other end of a second veth (what an unprivileged
              container can send to the host);
  out         from a raw socket in NS_VPM towards the peer: they cross
              LOCAL_OUT and POST_ROUTING before any validation.

For every injection the checks are:
  - vpm's counters (netlink GET_STATUS) move exactly as expected: every
    packet is accounted for (seen, and translated, malformed, fragment,
    foreign...), and no other counter moves, flows included (a forged
    ICMP error must not create or change state);
  - the stack's checksum error counters move only where the packet was
    invalid as sent;
  - delivery: which listener got the payload (the anonymous port's, the
    fixed port's, or none);
  - bytes: for "pre", an AF_PACKET tap in NS_VPM holds the frame exactly
    as injected (the tap's clone shares the data vpm may write to: a
    write without unsharing first would show up here); for "out", the
    peer receives the packet byte for byte as sent, or nothing.

Usage: corpus.py NS_VPM NS_PEER ANON  (as root; prints one VPM-REL record
per case and path, exits non-zero if any case failed)
       corpus.py child IFNAME        (the unprivileged injector, internal)
"""
import ctypes
import errno
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nl_adversary import U, Conn  # noqa: E402
from vpmraw import csum, l4_check  # noqa: E402

FIXED = 9000
MAC_PEER, MAC_VPM = bytes.fromhex("020000000601"), bytes.fromhex("020000000602")
MAC_UPEER, MAC_UVPM = bytes.fromhex("020000000603"), bytes.fromhex("020000000604")
VPM4, PEER4, SPOOF4 = "10.206.1.2", "10.206.1.1", "10.206.9.9"
VPM6, PEER6, SPOOF6 = "fd00:206::2", "fd00:206::1", "fd00:206:9::9"
CLONE_NEWNET = 0x40000000
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 3, 0x0800, 0x86DD
PACKET_OUTGOING = 4

# The counters every case asserts: any not in a case's expectation must
# not move.
COUNTERS = ("pkts_seen", "pkts_xlat_in", "pkts_xlat_out", "pkts_no_aid", "pkts_malformed",
            "pkts_fragments", "pkts_icmp_xlat", "flows_new", "flows_expired", "flows_evicted",
            "flows_unpinned", "pkts_dropped", "pkts_foreign", "pkts_peer")


# ---- packet building ---------------------------------------------------------

# The one's-complement sum and the transport checksum (field zeroed) of
# the other crafted-packet tools.
fold, l4sum = csum, l4_check


def addr(a):
    return socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)


def udp(src, dst, sport, dport, payload, check="ok", length=None):
    ln = 8 + len(payload) if length is None else length
    seg = struct.pack("!HHHH", sport, dport, ln, 0) + payload
    if check == "ok":
        c = l4sum(src, dst, 17, seg) or 0xFFFF
    elif check == "seed":
        c = seed(src, dst, 17, len(seg))
    else:
        c = check
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def seed(src, dst, proto, length):
    """What a CHECKSUM_PARTIAL packet carries in its checksum field: the
    pseudo-header's sum, folded, not complemented (the device or the stack
    adds the segment's sum from csum_start on)."""
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, length)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", length, proto)
    return fold(pseudo)


# A virtio-net header (struct virtio_net_hdr, little-endian on x86), which
# a packet socket with PACKET_VNET_HDR takes in front of each frame: the
# sender, unprivileged in its own user namespace, chooses the offload
# state of the skb it makes (CHECKSUM_PARTIAL, GSO).
VNET_NEEDS_CSUM, VNET_GSO_UDP_L4 = 1, 5
SOL_PACKET, PACKET_VNET_HDR = 263, 15


def vnet(gso_type=0, gso_size=0):
    """A builder of the header for an Ethernet frame whose IP header (no
    options, no extension headers) is L3LEN bytes and is followed by UDP:
    checksum from the UDP header on, to its checksum field."""
    def hdr(l3len):
        start = 14 + l3len
        return struct.pack("<BBHHHH", VNET_NEEDS_CSUM, gso_type, start + 8, gso_size, start, 6)
    return hdr


def tcp(src, dst, sport, dport, flags=0x02, doff=5, payload=b"", opts=b""):
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, doff << 4, flags, 65535, 0, 0) + opts + payload
    return seg[:16] + struct.pack("!H", l4sum(src, dst, 6, seg)) + seg[18:]


def ip4(src, dst, proto, body, ident, ihl=5, opts=b"", tot=None, frag=0):
    hdr_len = ihl * 4
    tot = 20 + len(opts) + len(body) if tot is None else tot
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, ident, frag, 64, proto, 0, addr(src), addr(dst)) + opts
    if ihl >= 5 and len(h) >= hdr_len:
        h = h[:10] + struct.pack("!H", (~fold(h[:hdr_len])) & 0xFFFF) + h[12:]
    return h + body


def ip6(src, dst, nxt, body, label, plen=None):
    plen = len(body) if plen is None else plen
    return struct.pack("!IHBB16s16s", (6 << 28) | label, plen, nxt, 64, addr(src), addr(dst)) + body


def ext(nxt, units=0, fill=None):
    """A hop-by-hop / routing / destination options header of (units+1)*8
    bytes: PadN options (or FILL)."""
    n = (units + 1) * 8
    body = fill if fill is not None else bytes([1, n - 4]) + bytes(n - 4)
    return struct.pack("!BB", nxt, units) + body[: n - 2]


def frag6(nxt, offset8, more, ident=0x56):
    return struct.pack("!BBHI", nxt, 0, (offset8 << 3) | (1 if more else 0), ident)


def icmp4(typ, code, quote):
    m = struct.pack("!BBHI", typ, code, 0, 0) + quote
    return m[:2] + struct.pack("!H", (~fold(m)) & 0xFFFF) + m[4:]


def icmp6(src, dst, typ, code, quote):
    m = struct.pack("!BBHI", typ, code, 0, 0) + quote
    return m[:2] + struct.pack("!H", l4sum(addr(src), addr(dst), 58, m)) + m[4:]


# ---- the corpus ----------------------------------------------------------------
#
# Each case: name, a builder (family, src, dst, marker, sport) -> IP packet,
# and per path the expected counter deltas (missing: must stay 0), the
# listener that gets it ("anon", "fixed" or None) and the checksum errors
# the stack counts.  A path set to None does not apply.  The marker (IPv4
# identification, IPv6 flow label) tells the case's packets apart on the
# wire.  Sources are spoofed: the vpm namespace has no route back, so
# nothing it answers reaches its hooks and the counts stay exact.

def x(seen, **kw):
    """An expectation: SEEN packets through vpm's hooks, other counters."""
    d = {"pkts_seen": seen}
    d.update({k if k.startswith("flows") else "pkts_" + k: v for k, v in kw.items()})
    return d


XLAT_NEW = x(1, xlat_in=1, flows_new=1)
MAL_IN, MAL_OUT = x(1, malformed=1), x(2, malformed=2)
FRAG_IN, FRAG_OUT = x(1, fragments=1), x(2, fragments=2)
OTHER_IN, OTHER_OUT = x(1), x(2)
STACK_DROP = x(0)
# Refused by the raw socket itself (EINVAL): never reaches vpm.
REFUSED = dict(x(0), refused=True)
PAYLOAD = b"vpm corpus payload"


# The "out" path sends the packet towards the peer: LOCAL_OUT then
# POST_ROUTING see it, twice what PRE_ROUTING sees, and a well-formed flow
# to a remote fixed port is not vpm's (no translation, no flow): OTHER_OUT
# unless a case says otherwise.
def case(name, build, pre, out=OTHER_OUT, deliver=None, csum_err=0, what="", src=None, dst=None, vnet=None,
         copies=1, seg6=False):
    """SRC and DST replace the spoofed source and vpm's address at
    PRE_ROUTING (a case with either has no "out" path).  VNET (see vnet())
    sends the frame behind a virtio-net header (no "out" path either);
    COPIES is how many datagrams of PAYLOAD the listener then gets.  SEG6
    turns segment routing on in vpm's namespace for the case."""
    return {"name": name, "build": build, "pre": pre, "out": None if src or dst or vnet else out,
            "deliver": deliver, "csum_err": csum_err, "what": what, "src": src, "dst": dst, "vnet": vnet,
            "copies": copies, "seg6": seg6}


def builder(make_ip, marker_base, body_fn, ipkw):
    """A case's packet: BODY_FN's (protocol, bytes) behind MAKE_IP's
    header, marked MARKER_BASE + the case's index."""
    def build(src, dst, mark, sport):
        proto, body = body_fn(addr(src), addr(dst), sport)
        return make_ip(src, dst, proto, body, marker_base + mark, **ipkw)
    return build


def v4(body_fn, **ipkw):
    return builder(ip4, 0x5600, body_fn, ipkw)


def v6(chain_fn, **ipkw):
    return builder(ip6, 0x56000, chain_fn, ipkw)


def U4(**kw):
    return lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD, **kw))


def T4(**kw):
    return lambda s, d, sp: (6, tcp(s, d, sp, FIXED, **kw))


def cut(fn, n):
    """The transport segment FN builds, cut to N bytes."""
    return lambda s, d, sp: (lambda p, b: (p, b[:n]))(*fn(s, d, sp))


def srh(last):
    """A segment routing header (type 4) of two segments, vpm's address
    (the packet's destination, the active one) then LAST, with one left
    (RFC 8754: the list runs last first, and Segments Left indexes it)."""
    return (43, lambda n: struct.pack("!BBBBBBH", n, 4, 4, 1, 1, 0, 0) + addr(last) + addr(VPM6))


def udp6_after(*headers):
    """UDP to the fixed port behind extension HEADERS: (next header, bytes)
    pairs, each given the next one's number."""
    def fn(s, d, sp):
        seg = udp(s, d, sp, FIXED, PAYLOAD)
        nxt, out = 17, seg
        for kind, make in reversed(headers):
            out = make(nxt) + out
            nxt = kind
        return nxt, out
    return fn


def quote4(proto, sport, dport, cut_at=None, ihl=5):
    """An ICMP error's quote: the IPv4 packet vpm sent to the peer from
    SPORT (what went out on the wire, so from the fixed port)."""
    def fn(s, d, sp):
        inner_l4 = udp(d, s, sport, dport, b"q") if proto == 17 else tcp(d, s, sport, dport)
        q = ip4(VPM4, SPOOF4, proto, inner_l4, 0x1234, ihl=5)
        if ihl != 5:
            q = bytes([0x40 | ihl]) + q[1:]
        return 1, icmp4(3, 3, q[:cut_at] if cut_at else q)
    return fn


def quote6(sport, dport, cut_at=None):
    def fn(s, d, sp):
        q = ip6(VPM6, SPOOF6, 17, udp(d, s, sport, dport, b"q"), 0x1234)
        q = q[:cut_at] if cut_at else q
        return 58, icmp6(SPOOF6, VPM6, 1, 4, q)
    return fn


CASES = [
    # -- well-formed references: the corpus's oracle works at all
    case("v4-udp-ok", v4(U4()), XLAT_NEW, deliver="anon", what="well-formed UDP: translated, delivered to the instance"),
    case("v4-tcp-syn-ok", v4(T4()), XLAT_NEW, what="well-formed SYN: translated (checksum verified by TCP)"),
    case("v6-udp-ok", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD))), XLAT_NEW, deliver="anon",
         what="well-formed UDP/IPv6: translated, delivered"),
    case("v6-tcp-syn-ok", v6(lambda s, d, sp: (6, tcp(s, d, sp, FIXED))), XLAT_NEW, what="well-formed SYN/IPv6: translated"),
    # -- truncated transport headers
    case("v4-udp-ports-only", v4(cut(U4(), 4)), MAL_IN, MAL_OUT, what="UDP cut after the ports: untouched, malformed"),
    case("v4-udp-7-bytes", v4(cut(U4(), 7)), MAL_IN, MAL_OUT, what="UDP header 1 byte short"),
    case("v4-tcp-12-bytes", v4(cut(T4(), 12)), MAL_IN, MAL_OUT, what="TCP cut before its checksum"),
    case("v4-tcp-19-bytes", v4(cut(T4(), 19)), MAL_IN, MAL_OUT, what="TCP header 1 byte short"),
    case("v4-no-l4", v4(lambda s, d, sp: (17, b"")), MAL_IN, MAL_OUT, what="UDP with no header at all"),
    case("v6-udp-6-bytes", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD)[:6])), MAL_IN, MAL_OUT,
         what="UDP/IPv6 cut inside the checksum"),
    case("v6-tcp-10-bytes", v6(lambda s, d, sp: (6, tcp(s, d, sp, FIXED)[:10])), MAL_IN, MAL_OUT, what="TCP/IPv6 cut"),
    # -- bad IPv4 header and total lengths
    case("v4-ihl-4", v4(U4(), ihl=4), STACK_DROP, REFUSED,
         what="IHL 4: ip_rcv drops it before PRE_ROUTING; a raw socket refuses to send it"),
    case("v4-ihl-0", v4(U4(), ihl=0), STACK_DROP, REFUSED, what="IHL 0"),
    case("v4-ihl-15-nop-opts", v4(cut(U4(), 4), ihl=15, opts=bytes([1]) * 40), MAL_IN, MAL_OUT,
         what="IHL 15 (40 bytes of NOP options), 4 bytes of UDP: malformed"),
    case("v4-options-udp", v4(U4(), ihl=6, opts=bytes([1, 1, 1, 0])), XLAT_NEW, deliver="anon",
         what="IPv4 options (general parser): translated, delivered"),
    case("v4-tot-beyond-frame", v4(U4(), tot=100), STACK_DROP, None, what="total length past the frame: the stack drops it"),
    case("v4-tot-below-ihl", v4(U4(), tot=16), STACK_DROP, None, what="total length below the header"),
    case("v4-tot-cuts-udp", v4(U4(), tot=24), MAL_IN, None,
         what="total length 24: the stack trims the frame to it, UDP is cut: malformed"),
    case("v4-tcp-doff-3", v4(T4(doff=3)), MAL_IN, MAL_OUT, what="TCP data offset 3: malformed"),
    case("v4-tcp-doff-past-end", v4(T4(doff=15)), XLAT_NEW,
         what="TCP data offset 60 on a 20-byte segment: ports and checksum are there, so translated; TCP then drops it"),
    case("v4-udp-len-past-end", v4(U4(length=200)), XLAT_NEW,
         what="UDP length past the datagram: translated (lossless), the stack drops it"),
    case("v4-udp-len-3", v4(U4(length=3)), XLAT_NEW, what="UDP length 3: translated, the stack drops it"),
    # -- fragments
    case("v4-first-fragment", v4(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD * 4)[:32]), frag=0x2000),
         XLAT_NEW, what="first fragment with the ports: translated, never completed"),
    case("v4-non-first-fragment", v4(lambda s, d, sp: (17, b"\xaa" * 16), frag=0x0003), FRAG_IN, FRAG_OUT,
         what="non-first fragment: untouched"),
    case("v4-tiny-first-fragment", v4(lambda s, d, sp: (6, tcp(s, d, sp, FIXED)[:8]), frag=0x2000), MAL_IN, MAL_OUT,
         what="first fragment holding 8 bytes of TCP: malformed"),
    case("v4-last-fragment-offset-max", v4(lambda s, d, sp: (17, b"\xbb" * 8), frag=0x1FFF), FRAG_IN, FRAG_OUT,
         what="fragment at the largest offset"),
    case("v6-first-fragment", v6(lambda s, d, sp: (44, frag6(17, 0, True) + udp(s, d, sp, FIXED, PAYLOAD * 4)[:32])),
         XLAT_NEW, what="IPv6 first fragment: translated"),
    case("v6-non-first-fragment", v6(lambda s, d, sp: (44, frag6(17, 5, False) + b"\xcc" * 16)), FRAG_IN, FRAG_OUT,
         what="IPv6 non-first fragment: untouched"),
    case("v6-atomic-fragment", v6(lambda s, d, sp: (44, frag6(17, 0, False) + udp(s, d, sp, FIXED, PAYLOAD))),
         XLAT_NEW, deliver="anon", what="atomic fragment (RFC 6946): translated, delivered"),
    case("v6-tiny-first-fragment", v6(lambda s, d, sp: (44, frag6(17, 0, True) + udp(s, d, sp, FIXED, PAYLOAD)[:4])),
         MAL_IN, MAL_OUT, what="IPv6 first fragment with 4 bytes of UDP"),
    # -- IPv6 extension chains
    case("v6-hop-by-hop", v6(udp6_after((0, lambda n: ext(n))),), XLAT_NEW, deliver="anon",
         what="hop-by-hop options: walked, translated, delivered"),
    case("v6-routing-type4-done", v6(udp6_after((43, lambda n: struct.pack("!BBBB", n, 0, 4, 0) + bytes(4)),)),
         XLAT_NEW, what="routing header, no segments left: walked, translated"),
    case("v6-srh-waypoint", v6(udp6_after(srh("2001:db8:ff::1"),)), x(1, foreign=1), out=None,
         what="segment routing header, a segment left, the last one elsewhere: this host is a waypoint, untouched (the stack drops it: seg6 off)"),
    case("v6-srh-ends-here", v6(udp6_after(srh(VPM6),)), XLAT_NEW, out=None, deliver="anon", seg6=True,
         what="segment routing header whose last segment is this host (seg6 on): translated, delivered to the instance"),
    # (Linux refuses more than 7 bytes of padding in a row, RFC 8200
    # section 4.2: an unknown option the receiver skips breaks it up.)
    case("v6-dest-options", v6(udp6_after((60, lambda n: ext(n, 1, bytes([1, 2, 0, 0, 0x1E, 4, 0, 0, 0, 0, 1, 2, 0, 0]))),)),
         XLAT_NEW, deliver="anon", what="destination options (16 bytes, a skippable unknown option): walked, translated, delivered"),
    case("v6-ah", v6(udp6_after((51, lambda n: struct.pack("!BBH", n, 1, 0) + bytes(8)),)), XLAT_NEW,
         what="authentication header: walked, translated; no SA, the stack drops it"),
    case("v6-chain-7", v6(udp6_after(*[(60, lambda n: ext(n))] * 7)), XLAT_NEW, deliver="anon",
         what="7 extension headers: walked"),
    case("v6-chain-8", v6(udp6_after(*[(60, lambda n: ext(n))] * 8)), MAL_IN, MAL_OUT, deliver="fixed",
         what="8 extension headers: over the walk's limit (8 headers read in all), untouched"),
    case("v6-chain-9", v6(udp6_after(*[(60, lambda n: ext(n))] * 9)), MAL_IN, MAL_OUT, deliver="fixed",
         what="9 extension headers: untouched, reaches the fixed port's own listener"),
    case("v6-dest-options-past-end", v6(udp6_after((60, lambda n: struct.pack("!BB", n, 200) + bytes(6)),)),
         MAL_IN, MAL_OUT, what="destination options longer than the packet"),
    case("v6-esp", v6(lambda s, d, sp: (50, struct.pack("!II", 0x100, 1) + bytes(24))), OTHER_IN,
         what="ESP: not vpm's to read"),
    case("v6-no-next-header", v6(lambda s, d, sp: (59, b"")), OTHER_IN, what="no next header"),
    case("v6-payload-beyond-frame", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD)), plen=400), STACK_DROP, None,
         what="payload length past the frame: the stack drops it"),
    case("v6-payload-length-0", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD)), plen=0), MAL_IN, None,
         what="payload length 0: trimmed to the header, UDP missing: malformed"),
    case("v6-hop-by-hop-past-end", v6(lambda s, d, sp: (0, struct.pack("!BB", 17, 100) + bytes(6))), STACK_DROP, MAL_OUT,
         what="hop-by-hop longer than the packet: ip6_rcv drops it; at LOCAL_OUT: malformed"),
    # -- UDP checksum 0
    case("v4-udp-checksum-0", v4(U4(check=0)), XLAT_NEW, deliver="anon", what="UDP/IPv4 without checksum: stays 0, delivered"),
    case("v6-udp-checksum-0", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD, check=0))), MAL_IN,
         csum_err=1, what="UDP/IPv6 without checksum: invalid, untouched, creates no flow (the stack counts the error)"),
    # -- ICMP errors about TCP/UDP, forged or cut
    case("v4-icmp-forged-quote", v4(quote4(17, FIXED, 40001)), x(1, icmp_xlat=1),
         what="port unreachable quoting an unknown flow from the fixed port: quote translated by the rule, no state"),
    case("v4-icmp-quote-ports-only", v4(quote4(17, FIXED, 40001, cut_at=24)), x(1, icmp_xlat=1),
         what="quote cut after the ports"),
    case("v4-icmp-quote-cut-in-ip", v4(quote4(17, FIXED, 40001, cut_at=12)), OTHER_IN, what="quote cut inside its IPv4 header"),
    case("v4-icmp-quote-ihl-3", v4(quote4(17, FIXED, 40001, ihl=3)), OTHER_IN, what="quote with IHL 3"),
    case("v4-icmp-quote-other-port", v4(quote4(6, 7777, 40001)), OTHER_IN, what="quote from a port vpm does not multiplex"),
    case("v4-icmp-echo", v4(lambda s, d, sp: (1, icmp4(8, 0, b"ping"))), OTHER_IN, what="echo request: not an error"),
    case("v4-icmp-4-bytes", v4(lambda s, d, sp: (1, b"\x03\x03\x00\x00")), MAL_IN, MAL_OUT, what="ICMP header cut"),
    case("v6-icmp-forged-quote", v6(quote6(FIXED, 40001)), x(1, icmp_xlat=1), what="ICMPv6 port unreachable, forged"),
    case("v6-icmp-quote-cut-in-ip", v6(quote6(FIXED, 40001, cut_at=30)), OTHER_IN, what="ICMPv6 quote cut inside IPv6"),
    # -- spoofed sources: no pin a local client could later follow
    case("v4-src-loopback", v4(U4()), x(1, foreign=1), src="127.0.0.1",
         what="from 127.0.0.1 off the wire: not this host's stream (the stack drops the martian), no flow"),
    case("v4-src-self", v4(U4()), x(1, foreign=1), src=VPM4,
         what="from this host's own address off the wire: the same"),
    case("v6-src-self", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD))), x(1, foreign=1), src=VPM6,
         deliver="fixed", what="IPv6 from this host's own address: not translated, no flow (IPv6 takes it in: the fixed port's listener gets it)"),
    # -- to the fixed port, but not addressed to this host alone
    case("v4-subnet-broadcast", v4(U4()), x(1, foreign=1), dst="10.206.1.255", deliver="fixed",
         what="subnet broadcast: not vpm's (one host's instance must not take it), delivered untouched"),
    case("v4-limited-broadcast", v4(U4()), x(1, foreign=1), dst="255.255.255.255", deliver="fixed",
         what="limited broadcast: the same"),
    # (The test kernel has no CONFIG_IP_MULTICAST: the stack drops IPv4
    # multicast after the hook, so nobody gets it.)
    case("v4-multicast", v4(U4()), x(1, foreign=1), dst="224.0.0.1",
         what="all-hosts multicast: not vpm's (the test kernel then drops it: no IP_MULTICAST)"),
    case("v6-multicast", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD))), x(1, foreign=1), dst="ff02::1",
         deliver="fixed", what="IPv6 all-nodes multicast: the same"),
    case("v4-other-host", v4(U4()), x(1, foreign=1), dst="10.206.1.77",
         what="unicast to another host (this one does not forward): not vpm's, dropped by the stack"),
    # -- other protocols to the fixed port
    case("v4-sctp", v4(lambda s, d, sp: (132, struct.pack("!HHII", sp, FIXED, 0, 0))), OTHER_IN, what="SCTP: untouched"),
    case("v4-udplite", v4(lambda s, d, sp: (136, udp(s, d, sp, FIXED, PAYLOAD, check=0))), OTHER_IN, what="UDP-Lite"),
    case("v4-gre", v4(lambda s, d, sp: (47, b"\x00\x00\x08\x00" + bytes(20))), OTHER_IN, what="GRE"),
    # -- offloads a packet socket's sender chooses (PACKET_VNET_HDR)
    case("v4-vnet-partial", v4(U4(check="seed")), XLAT_NEW, deliver="anon", vnet=vnet(),
         what="CHECKSUM_PARTIAL from a virtio-net header: translated, its seed left as it is, delivered"),
    case("v6-vnet-partial", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD, check="seed"))), XLAT_NEW,
         deliver="anon", vnet=vnet(), what="the same over IPv6"),
    case("v4-vnet-gso-udp", v4(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD * 3, check="seed"))), XLAT_NEW,
         deliver="anon", copies=3, vnet=vnet(VNET_GSO_UDP_L4, len(PAYLOAD)),
         what="UDP GSO of 3 datagrams from a virtio-net header: translated once, the stack segments it, 3 delivered"),
    case("v6-vnet-gso-udp", v6(lambda s, d, sp: (17, udp(s, d, sp, FIXED, PAYLOAD * 3, check="seed"))), XLAT_NEW,
         deliver="anon", copies=3, vnet=vnet(VNET_GSO_UDP_L4, len(PAYLOAD)), what="the same over IPv6"),
]


# ---- namespaces, sockets, counters ------------------------------------------------

libc = ctypes.CDLL(None, use_errno=True)


def enter(ns):
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)


def csum_errors():
    """The namespace's UDP and TCP checksum error counters, summed."""
    total = 0
    with open("/proc/thread-self/net/snmp") as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        keys, vals = lines[i].split()[1:], lines[i + 1].split()[1:]
        if lines[i].startswith(("Tcp:", "Udp:")):
            total += int(dict(zip(keys, vals)).get("InCsumErrors", 0))
    with open("/proc/thread-self/net/snmp6") as f:
        for line in f:
            k, v = line.split()
            if k in ("Udp6InCsumErrors",):
                total += int(v)
    return total


class Status:
    def __init__(self):
        self.conn = Conn()
        self.ids = {v: k[len("VPM_A_STATUS_"):].lower() for k, v in U.items() if k.startswith("VPM_A_STATUS_")}

    def read(self):
        code, _, msgs = self.conn.vpm("VPM_CMD_GET_STATUS")
        if code:
            sys.exit(f"GET_STATUS failed: {os.strerror(code)}")
        out = {}
        for ty, val in Conn.attrs(msgs[0]).items():
            name = self.ids.get(ty)
            if name and name != "version" and len(val) in (4, 8):
                out[name] = int.from_bytes(val, sys.byteorder)
        return out


def drain(sock):
    got = []
    while True:
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return got
        got.append(sock.recvfrom(65535))


# ---- the unprivileged injector ------------------------------------------------

def child(ifname):
    """Runs as uid 65534 in its own user and network namespaces: waits for
    IFNAME to be moved in, brings it up, then sends each hex frame read
    from stdin and acknowledges it."""
    print("ready", flush=True)
    for _ in range(200):
        try:
            socket.if_nametoindex(ifname)
            break
        except OSError:
            time.sleep(0.05)
    # No link-local address: its DAD, router solicitations and MLD reports
    # would reach vpm's hooks and blur the counts.
    subprocess.run(["ip", "link", "set", ifname, "addrgenmode", "none"], check=True)
    subprocess.run(["ip", "link", "set", ifname, "up"], check=True)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    sv = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sv.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sv.bind((ifname, 0))
    print("up", flush=True)
    # A line is a frame in hex, or "v" and a virtio-net header and frame.
    for line in sys.stdin:
        line = line.strip()
        try:
            if line.startswith("v"):
                sv.send(bytes.fromhex(line[1:]))
            else:
                s.send(bytes.fromhex(line))
            print("sent", flush=True)
        except OSError as e:
            print(f"send: {e.strerror}", flush=True)


# ---- the run ----------------------------------------------------------------------

def main(ns_vpm, ns_peer, anon):
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    enter(ns_peer)
    peer_tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    peer_tx.bind(("veth-mc", ETH_P_ALL))
    # Sends only (protocol 0: it receives nothing).
    peer_vtx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    peer_vtx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    peer_vtx.bind(("veth-mc", 0))
    enter(ns_vpm)
    st = Status()
    tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    tap.bind(("veth-mr", ETH_P_ALL))
    utap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    utap.bind(("veth-mu", ETH_P_ALL))
    raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    listeners = {}
    for name, port in (("anon", anon), ("fixed", FIXED)):
        l6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        l6.bind(("::", port))
        listeners[name] = l6
    libc.setns(here, CLONE_NEWNET)

    # The unprivileged injector: its own user and network namespaces.
    kid = subprocess.Popen(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
         "unshare", "-Urn", sys.executable, os.path.abspath(__file__), "child", "veth-mup"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if kid.stdout.readline().strip() != "ready":
        sys.exit("the unprivileged injector did not start")
    subprocess.run(["ip", "-n", ns_peer, "link", "set", "veth-mup", "netns", str(kid.pid)], check=True)
    up = kid.stdout.readline().strip()
    if up != "up":
        sys.exit(f"the unprivileged injector did not bring its link up: {up!r}")
    # Seen from here, the injector is uid 65534 (root only in its own
    # user namespace).
    with open(f"/proc/{kid.pid}/status") as f:
        uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
    if uid != "65534":
        sys.exit(f"the injector runs as uid {uid}, not 65534")
    # Quiet first: links that just came up may still send their own
    # packets (MLD reports for the addresses); wait until vpm's hooks have
    # seen nothing new for 1.5 s.
    enter(ns_vpm)
    last, still = st.read()["pkts_seen"], time.time()
    give_up = time.time() + 20
    while time.time() - still < 1.5:
        if time.time() > give_up:
            sys.exit("the vpm namespace never went quiet")
        time.sleep(0.1)
        now = st.read()["pkts_seen"]
        if now != last:
            last, still = now, time.time()
    enter(ns_peer)
    drain(peer_tx)

    def seg6(on):
        """Segment routing on or off in vpm's namespace (entered): for all
        devices and the two the frames arrive on (both must allow it)."""
        for dev in ("all", "veth-mr", "veth-mu"):
            with open(f"/proc/sys/net/ipv6/conf/{dev}/seg6_enabled", "w") as f:
                f.write("1" if on else "0")

    def kid_send(frame, vhdr=None):
        """The injector's verdict: True when sent, or the send's error."""
        kid.stdin.write(("v" + (vhdr + frame).hex() if vhdr else frame.hex()) + "\n")
        kid.stdin.flush()
        said = kid.stdout.readline().strip()
        if not said:
            sys.exit("the unprivileged injector stopped")
        return True if said == "sent" else said

    failures = 0
    sport = 41000

    def run_one(c, path, mark):
        nonlocal sport
        want = c[path.split("-")[0]]
        if want is None:
            return None
        sport += 1
        fam6 = c["name"].startswith("v6")
        if path == "out":
            src, dst = (VPM6, PEER6) if fam6 else (VPM4, PEER4)
        else:
            src, dst = (SPOOF6, VPM6) if fam6 else (SPOOF4, VPM4)
            src, dst = c["src"] or src, c["dst"] or dst
        pkt = c["build"](src, dst, mark, sport)
        enter(ns_vpm)
        for s in listeners.values():
            drain(s)
        drain(tap), drain(utap)
        seg6(c["seg6"])
        before, errs0 = st.read(), csum_errors()
        sent_ok = True
        if path == "out":
            sock = raw6 if fam6 else raw4
            try:
                sock.sendto(pkt, (dst, 0))
            except OSError as e:
                sent_ok = f"send: {e.strerror}"
        else:
            dmac, smac = (MAC_VPM, MAC_PEER) if path == "pre" else (MAC_UVPM, MAC_UPEER)
            frame = dmac + smac + struct.pack("!H", ETH_P_IPV6 if fam6 else ETH_P_IP) + pkt
            if len(frame) < 60:
                frame += bytes(60 - len(frame))
            vhdr = c["vnet"](40 if fam6 else 20) if c["vnet"] else None
            if path == "pre":
                enter(ns_peer)
                try:
                    if vhdr:
                        peer_vtx.send(vhdr + frame)
                    else:
                        peer_tx.send(frame)
                except OSError as e:
                    sent_ok = f"send: {e.strerror}"
                enter(ns_vpm)
            else:
                sent_ok = kid_send(frame, vhdr)
        # Wait for the hooks to have seen what they will see (the packet
        # may still sit in the backlog when the send returns), then a
        # little longer for anything they should not have seen.
        deadline = time.time() + (3 if want["pkts_seen"] else 0.1)
        while True:
            now = st.read()
            if now["pkts_seen"] - before["pkts_seen"] >= want["pkts_seen"] and want["pkts_seen"]:
                time.sleep(0.02)
                now = st.read()
                break
            if time.time() > deadline:
                break
            time.sleep(0.01)
        problems = []
        if want.get("refused"):
            if sent_ok != "send: Invalid argument":
                problems.append(f"the raw socket did not refuse it ({sent_ok})")
        elif sent_ok is not True:
            problems.append(sent_ok)
        for k in COUNTERS:
            d = now.get(k, 0) - before.get(k, 0)
            if d != want.get(k, 0):
                problems.append(f"{k} moved by {d}, expected {want.get(k, 0)}")
        got_err = csum_errors() - errs0
        exp_err = c["csum_err"] if path != "out" else 0
        if got_err != exp_err:
            problems.append(f"checksum errors moved by {got_err}, expected {exp_err}")
        if path != "out":
            if c["deliver"]:
                select.select([listeners[c["deliver"]]], [], [], 1)
            delivered = [n for n, s in listeners.items() for data, _ in drain(s) if data == PAYLOAD]
            if c["deliver"] and c["copies"] > 1:
                deadline = time.time() + 1
                while len(delivered) < c["copies"] and time.time() < deadline:
                    select.select([listeners[c["deliver"]]], [], [], 0.1)
                    delivered += [n for n, s in listeners.items() for data, _ in drain(s) if data == PAYLOAD]
            want_d = [c["deliver"]] * c["copies"] if c["deliver"] else []
            if delivered != want_d:
                problems.append(f"delivered to {delivered or 'nobody'}, expected {want_d or 'nobody'}")
            # The tap's copy of the frame must be the frame as injected.
            frames = [f for f, a in drain(tap if path == "pre" else utap) if a[2] != PACKET_OUTGOING]
            if frame not in frames:
                problems.append(f"the tap did not hold the injected frame unchanged ({len(frames)} frames)")
        else:
            enter(ns_peer)
            if sent_ok is True and want["pkts_seen"]:
                select.select([peer_tx], [], [], 1)
            frames = [f[14:] for f, a in drain(peer_tx) if a[2] != PACKET_OUTGOING]
            enter(ns_vpm)
            if sent_ok is True and want["pkts_seen"] and pkt not in [f[: len(pkt)] for f in frames]:
                problems.append(f"the peer did not receive the packet unchanged ({len(frames)} frames)")
        enter(ns_vpm)
        seg6(False)
        enter(ns_peer)
        return problems

    # The long form (make stress) injects every case on every path it
    # applies to; the short form (make check) every case once, the paths
    # taking turns.
    long_form = os.environ.get("VPM_LONG") == "1"
    results = []
    for mark, c in enumerate(CASES):
        paths = [p for p in ("pre", "pre-userns", "out") if c[p.split("-")[0]] is not None]
        if not long_form:
            paths = [paths[mark % len(paths)]]
        for path in paths:
            problems = run_one(c, path, mark)
            if problems is None:
                continue
            want = c[path.split("-")[0]]
            outcome = ", ".join(f"{k.replace('pkts_', '')} +{v}" for k, v in want.items() if k in COUNTERS and v)
            if want.get("refused"):
                outcome = "refused by the raw socket (EINVAL)"
            outcome = outcome or "dropped by the stack before vpm's hook"
            if c["deliver"] and path != "out":
                outcome += f"; delivered to the {c['deliver']} port"
            elif path == "out" and want["pkts_seen"]:
                outcome += "; the peer gets it unchanged"
            rec = {"suite": "malformed", "case": c["name"], "path": path, "inputs": 1,
                   "expect": outcome, "what": c["what"], "result": "fail" if problems else "pass"}
            if problems:
                rec["problems"] = problems
                failures += 1
            print("VPM-REL " + json.dumps(rec), flush=True)
            results.append(rec)
    # A UDP GSO send from the instance's own socket (UDP_SEGMENT): one
    # 8,000-byte skb through the hooks, translated once at POST_ROUTING;
    # the device (checksum offload off: software segmentation) then cuts
    # it into 8 datagrams, each of which must leave from the fixed port
    # with a valid checksum.
    data = bytes(range(256)) * 31 + bytes(64)

    def gso_send(sock, sport, alt_sport=0, v6=False):
        """Sends DATA as one UDP GSO skb from SOCK (to the peer over IPv4,
        or IPv6 with V6); returns the problems with the segments the peer
        gets (from SPORT, to port 40999)."""
        enter(ns_vpm)
        sock.setsockopt(socket.IPPROTO_UDP, 103, 1000)  # UDP_SEGMENT
        sock.sendto(data, (PEER6 if v6 else "::ffff:" + PEER4, 40999))
        sock.setsockopt(socket.IPPROTO_UDP, 103, 0)
        enter(ns_peer)
        segs, deadline = [], time.time() + 3
        etype = b"\x86\xdd" if v6 else b"\x08\x00"
        while len(segs) < 8 and time.time() < deadline:
            select.select([peer_tx], [], [], 0.2)
            for f, a in drain(peer_tx):
                ip = f[14:]
                if a[2] != PACKET_OUTGOING and f[12:14] == etype and ip[6 if v6 else 9] == 17:
                    segs.append(ip)
        enter(ns_vpm)
        problems, got = [], b""
        for ip in segs:
            if v6:
                seg, saddr, daddr = ip[40:40 + struct.unpack("!H", ip[4:6])[0]], ip[8:24], ip[24:40]
            else:
                ihl = (ip[0] & 0xF) * 4
                seg, saddr, daddr = ip[ihl:struct.unpack("!H", ip[2:4])[0]], ip[12:16], ip[16:20]
            sp, dp, ln, ck = struct.unpack("!HHHH", seg[:8])
            if sp != sport or dp != 40999:
                problems.append(f"a segment from port {sp} to {dp}")
            # A checksum that computes to 0 is sent as 0xffff.
            want_ck = l4sum(saddr, daddr, 17, seg[:6] + b"\0\0" + seg[8:]) or 0xFFFF
            if ck != want_ck:
                seg_old = seg[:0] + struct.pack("!H", alt_sport) + seg[2:6] + b"\0\0" + seg[8:]
                as_old = l4sum(saddr, daddr, 17, seg_old) or 0xFFFF
                problems.append(f"a segment with checksum {ck:#06x}, not {want_ck:#06x}"
                                + (f" (it is the checksum with source port {alt_sport})" if ck == as_old else ""))
            got += seg[8:]
        if got != data:
            problems.append(f"the peer got {len(segs)} segments, {len(got)} bytes, not the 8 of {len(data)} sent")
        return problems

    # The control: the same send from a port vpm does not multiplex,
    # which shows the setup itself delivers valid segments.
    enter(ns_vpm)
    control = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    control.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    control.bind(("::", 7000))
    control_problems = gso_send(control, 7000) + gso_send(control, 7000, v6=True)
    drain(listeners["anon"])
    before = st.read()
    problems = gso_send(listeners["anon"], FIXED, anon) + gso_send(listeners["anon"], FIXED, anon, v6=True)
    time.sleep(0.05)
    now = st.read()
    want = x(4, xlat_out=2)
    for k in COUNTERS:
        d = now.get(k, 0) - before.get(k, 0)
        if d != want.get(k, 0):
            problems.append(f"{k} moved by {d}, expected {want.get(k, 0)}")
    if control_problems:
        problems.append("the control send (port 7000, not translated) failed too: " + "; ".join(control_problems))
    rec = {"suite": "malformed", "case": "udp-gso-reply", "path": "out", "inputs": 1,
           "expect": "seen +4, xlat_out +2; 8 segments each from the fixed port, checksums valid",
           "what": "UDP GSO (8 x 1,000 bytes, IPv4 then IPv6) from the instance's socket, no checksum offload: translated once, segmented after",
           "result": "fail" if problems else "pass"}
    if problems:
        rec["problems"] = problems
        failures += 1
    print("VPM-REL " + json.dumps(rec), flush=True)
    results.append(rec)

    kid.stdin.close()
    kid.wait(timeout=10)
    n = len(results)
    print(f"{n - failures} of {n} injections as expected ({len(CASES)} cases)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
