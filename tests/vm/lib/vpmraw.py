#!/usr/bin/env python3
"""Crafted packets and long-lived clients for vpm's real-host tests.

udp6-zero SRC DST PORT ANON SPORT DIR
        Sends one UDP/IPv6 datagram from SRC:SPORT to DST:PORT through an
        ordinary socket, with a payload chosen so that the checksum becomes
        zero when vpm translates it: DIR "in" for the client's datagram
        (PORT -> ANON), "out" for the instance's reply (ANON -> PORT; the
        reply is b"NAME " + payload, NAME given by the server, 1 byte "a").
        Prints the name of the server that answered.
synflood SRC_NET DST PORT COUNT
        COUNT TCP SYNs to DST:PORT from spoofed addresses in SRC_NET (a /16,
        e.g. 10.250) and random ports, through a raw socket (valid checksums).
hold ADDR PORT N WAITFILE
        Opens N TCP connections to ADDR:PORT (server mode L), exchanges a
        line on each, prints "ready NAMES"; once WAITFILE exists, exchanges
        another line on each and prints "after NAMES".
ext6 SRC DST PORT HEADERS
        A UDP/IPv6 datagram to DST:PORT behind HEADERS destination-options
        headers (raw socket); prints who answered (the server echoes).
tinyfrag SRC DST PORT
        A TCP SYN to DST:PORT whose first IPv4 fragment holds only 16 bytes
        of the TCP header (the checksum is in the second fragment).
"""
import os
import random
import socket
import struct
import sys
import time


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def l4_check(src, dst, proto, seg):
    """The transport checksum field for segment SEG (its field zeroed)."""
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), proto)
    return (~csum(pseudo + seg)) & 0xFFFF


def udp6_zero(args):
    src, dst = socket.inet_pton(socket.AF_INET6, args[0]), socket.inet_pton(socket.AF_INET6, args[1])
    port, anon, sport, direction = int(args[2]), int(args[3]), int(args[4]), args[5]
    # The pad is one 16-bit word of the sum: pick it so that the sum of
    # the translated segment (checksum field zero) is 0xffff, i.e. the
    # checksum computes to zero.
    def translated(pad):
        payload = b"vpm-zero" + struct.pack("!H", pad)
        if direction == "in":
            # The client's datagram after translation: SPORT -> ANON.
            seg_src, seg_dst, a, b, body = src, dst, sport, anon, payload
        else:
            # The instance's reply after translation: PORT -> SPORT.
            seg_src, seg_dst, a, b, body = dst, src, port, sport, b"a " + payload
        return payload, seg_src, seg_dst, struct.pack("!HHHH", a, b, 8 + len(body), 0) + body

    _, seg_src, seg_dst, seg = translated(0)
    base = (~l4_check(seg_src, seg_dst, 17, seg)) & 0xFFFF  # folded sum with pad 0
    pad = (0xFFFF - base) & 0xFFFF
    payload, seg_src, seg_dst, seg = translated(pad)
    if l4_check(seg_src, seg_dst, 17, seg) != 0:
        sys.exit("could not make the checksum zero")
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args[0], sport))
    s.settimeout(3)
    s.sendto(payload, (args[1], port))
    data, peer = s.recvfrom(4096)
    name, _, echo = data.partition(b" ")
    if peer[1] != port or echo != payload:
        sys.exit(f"bad answer from port {peer[1]}: {data!r}")
    print(name.decode())


def synflood(args):
    net, dst, port, count = args[0], socket.inet_aton(args[1]), int(args[2]), int(args[3])
    a, b = (int(x) for x in net.split("."))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    rnd = random.Random(8)
    sent = 0
    for _ in range(count):
        src = bytes([a, b, rnd.randrange(256), rnd.randrange(1, 255)])
        sport = rnd.randrange(1024, 65536)
        tcp = struct.pack("!HHIIBBHHH", sport, port, rnd.getrandbits(32), 0, 5 << 4, 0x02, 65535, 0, 0)
        tcp = tcp[:16] + struct.pack("!H", l4_check(src, dst, 6, tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst)
        try:
            s.sendto(ip + tcp, (args[1], 0))
            sent += 1
        except OSError:
            time.sleep(0.01)
    print(sent)


def hold(args):
    addr, port, n, waitfile = args[0], int(args[1]), int(args[2]), args[3]
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    conns = []
    for _ in range(n):
        c = socket.socket(fam, socket.SOCK_STREAM)
        c.settimeout(20)
        c.connect((addr, port))
        conns.append(c)

    def exchange(first):
        names = []
        for i, c in enumerate(conns):
            line = f"{'L' if first else ''}line {i}\n".encode()
            try:
                c.sendall(line)
                data = c.recv(4096)
            except OSError as e:
                names.append(f"error:{e.__class__.__name__}")
                continue
            name, _, rest = data.partition(b" ")
            names.append(name.decode() if rest == line.lstrip(b"L") else f"bad:{data!r}")
        return " ".join(names)

    print("ready", exchange(True), flush=True)
    while not os.path.exists(waitfile):
        time.sleep(0.1)
    print("after", exchange(False), flush=True)


def ext6(args):
    src, dst = socket.inet_pton(socket.AF_INET6, args[0]), socket.inet_pton(socket.AF_INET6, args[1])
    port, headers = int(args[2]), int(args[3])
    sport = 47000
    payload = b"vpm-ext"
    udp = struct.pack("!HHHH", sport, port, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack("!H", l4_check(src, dst, 17, udp) or 0xFFFF) + udp[8:]
    chain = b""
    for i in range(headers):
        nxt = 60 if i + 1 < headers else 17
        chain += bytes([nxt, 0, 1, 4, 0, 0, 0, 0])  # PadN filling the 8 bytes
    ip6 = struct.pack("!IHBB", 0x60000000, len(chain) + len(udp), 60 if headers else 17, 64) + src + dst
    r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u.bind((args[0], sport))
    u.settimeout(3)
    r.sendto(ip6 + chain + udp, (args[1], 0))
    data, peer = u.recvfrom(4096)
    print(data.partition(b" ")[0].decode())


def tinyfrag(args):
    src, dst, port = socket.inet_aton(args[0]), socket.inet_aton(args[1]), int(args[2])
    tcp = struct.pack("!HHIIBBHHH", 47001, port, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", l4_check(src, dst, 6, tcp)) + tcp[18:]
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for off, part, more in ((0, tcp[:16], 1), (2, tcp[16:], 0)):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(part), 77, more << 13 | off, 64, 6, 0, src, dst)
        r.sendto(ip + part, (args[1], 0))
    print("sent")


if __name__ == "__main__":
    cmd = {"udp6-zero": udp6_zero, "synflood": synflood, "hold": hold, "ext6": ext6, "tinyfrag": tinyfrag}
    cmd[sys.argv[1]](sys.argv[2:])
