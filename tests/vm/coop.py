#!/usr/bin/env python3
"""Crafts cooperative-protocol messages for tests/vm/88-coop.sh, from the
spec in docs/COOPERATIVE.md (an implementation independent of vpmctl's),
sends them to an agent and prints what it answered.

  coop.py send --to ADDR --from ADDR --key HEX --key-id N --aid A --port P
               [--lifetime S] [--client ADDR] [--times N] [--seq N]
      sends one request (N times, the same bytes: a replay) and prints
      one line per answer: "result=R negotiated=P lifetime=S signed=0|1"
  coop.py fuzz --to ADDR --from ADDR --key HEX --key-id N --count N
      sends N random, mutated, truncated, badly signed and validly signed
      (but refused) messages, prints how many got answers
"""
import argparse
import hashlib
import hmac
import ipaddress
import os
import random
import socket
import struct
import time

PORT = 9478


def addr16(a):
    ip = ipaddress.ip_address(a)
    if ip.version == 4:
        ip = ipaddress.IPv6Address("::ffff:" + a)
    return ip.packed


def body(key_id, seq, nonce, lifetime, port, aid, client, protos=3, epoch=1, t=None):
    t = int(time.time() * 1000) if t is None else t
    aid = aid.encode()
    b = struct.pack(">BBBBIIQQ12sIHHBB", 1, 1, 0, 0, key_id, epoch, seq, t, nonce,
                    lifetime, port, 0, protos, len(aid))
    b += aid.ljust(32, b"\0") + addr16(client) + b"\0\0"
    assert len(b) == 100
    return b


def seal(key, b):
    return b + hmac.new(key, b, hashlib.sha256).digest()


def sock(frm, to):
    fam = socket.AF_INET6 if ":" in to else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((frm, 0))
    s.settimeout(3)
    return s


def parse_answer(key, b):
    result, = struct.unpack(">B", b[2:3])
    negotiated, = struct.unpack(">H", b[46:48])
    lifetime, = struct.unpack(">I", b[40:44])
    signed = hmac.compare_digest(hmac.new(key, b[:100], hashlib.sha256).digest(), b[100:132])
    return f"result={result} negotiated={negotiated} lifetime={lifetime} signed={int(signed)}"


def cmd_send(a):
    key = bytes.fromhex(a.key)
    seq = a.seq or int(time.time() * 1e6) + 1000
    msg = seal(key, body(a.key_id, seq, os.urandom(12), a.lifetime, a.port, a.aid,
                         a.client or a.frm))
    s = sock(a.frm, a.to)
    for _ in range(a.times):
        s.sendto(msg, (a.to, PORT))
        try:
            ans, _ = s.recvfrom(2048)
            print(parse_answer(key, ans), flush=True)
        except socket.timeout:
            print("no-answer", flush=True)


def cmd_fuzz(a):
    key = bytes.fromhex(a.key)
    rnd = random.Random(a.seed)
    s = sock(a.frm, a.to)
    s.setblocking(False)
    answered = 0
    base = seal(key, body(a.key_id, 1, b"\1" * 12, 60, 9000, "a", a.frm))
    for i in range(a.count):
        kind = i % 5
        if kind == 0:
            m = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 200)))
        elif kind == 1:
            m = bytearray(base)
            for _ in range(rnd.randrange(1, 6)):
                m[rnd.randrange(len(m))] ^= 1 << rnd.randrange(8)
            m = bytes(m)
        elif kind == 2:
            m = base[:rnd.randrange(0, len(base))]
        elif kind == 4:
            # Signed, fresh: past authentication, into the server's
            # decisions, but for AIDs or ports S does not export (z...),
            # any lifetime (0: a delete of nothing), any protocol bits,
            # sometimes the wrong client address.  Must change nothing.
            aid = "z" + "".join(rnd.choice("abc.-_09") for _ in range(rnd.randrange(0, 30)))
            port = rnd.choice([9000, 9001, rnd.randrange(1, 65536)])
            lifetime = rnd.choice([0, 1, 60, 2**32 - 1, rnd.getrandbits(32)])
            client = a.frm if rnd.random() < 0.8 else "10.203.0.9"
            seq = int(time.time() * 1e6) + i
            m = seal(key, body(a.key_id, seq, os.urandom(12), lifetime, port, aid, client,
                               protos=rnd.choice([1, 2, 3, rnd.randrange(0, 256)])))
        else:
            # Well-formed fields, random values, a bad MAC.
            b = bytearray(body(rnd.getrandbits(32), rnd.getrandbits(64), os.urandom(12),
                               rnd.getrandbits(32), rnd.randrange(1, 65536), "z" * rnd.randrange(1, 32),
                               a.frm, protos=rnd.randrange(0, 256)))
            m = bytes(b) + os.urandom(32)
        s.sendto(m, (a.to, PORT))
        answered += drain(s)
    time.sleep(1)
    answered += drain(s)
    print(f"sent={a.count} answered={answered}")


def drain(s):
    n = 0
    try:
        while True:
            s.recvfrom(2048)
            n += 1
    except (socket.timeout, BlockingIOError):
        return n


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("send", "fuzz"):
        q = sub.add_parser(name)
        q.add_argument("--to", required=True)
        q.add_argument("--from", dest="frm", required=True)
        q.add_argument("--key", required=True)
        q.add_argument("--key-id", type=int, required=True)
        if name == "send":
            q.add_argument("--aid", required=True)
            q.add_argument("--port", type=int, required=True)
            q.add_argument("--lifetime", type=int, default=60)
            q.add_argument("--client")
            q.add_argument("--times", type=int, default=1)
            q.add_argument("--seq", type=int)
        else:
            q.add_argument("--count", type=int, required=True)
            q.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    {"send": cmd_send, "fuzz": cmd_fuzz}[a.cmd](a)


if __name__ == "__main__":
    main()
