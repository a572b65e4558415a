#!/usr/bin/env python3
"""Test servers and clients for vpm's packet-path tests (guest side).

serve NAME PORT...   TCP and UDP, IPv4 and IPv6, on each PORT (anonymous
                     ports of one AID).  TCP: reads to EOF, answers
                     "NAME <sha256> <len>".  UDP: answers each datagram with
                     b"NAME " + datagram.
ask PROTO ADDR PORT [--size N] [--count N]
                     Sends N random bytes (COUNT times for UDP), checks the
                     answer (hash for TCP, echo for UDP, and that UDP replies
                     come from ADDR:PORT), prints the server's NAME.
asks PORT PROTO/ADDR...
                     One small ask per target, names on one line (one
                     interpreter start for many asks: TCG is slow).
"""
import argparse
import hashlib
import os
import socket
import sys
import threading


def dual_stack(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s


def serve_tcp(name, port):
    srv = dual_stack(socket.SOCK_STREAM, port)
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=tcp_session, args=(name, conn), daemon=True).start()


def tcp_session(name, conn):
    with conn:
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        conn.sendall(f"{name} {h.hexdigest()} {n}\n".encode())


def serve_udp(name, port):
    s = dual_stack(socket.SOCK_DGRAM, port)
    while True:
        data, peer = s.recvfrom(1 << 16)
        s.sendto(name.encode() + b" " + data, peer)


def serve(args):
    threads = []
    for port in args.ports:
        for fn in (serve_tcp, serve_udp):
            t = threading.Thread(target=fn, args=(args.name, port), daemon=True)
            t.start()
            threads.append(t)
    print("ready", flush=True)
    for t in threads:
        t.join()


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def ask(args):
    print(ask_one(args.proto, args.addr, args.port, args.size, args.count))


def asks(args):
    names = []
    for target in args.targets:
        proto, addr = target.split("/", 1)
        names.append(ask_one(proto, addr, args.port, 32, 1))
    print(" ".join(names))


def ask_one(proto, addr, port, size, count):
    fam = family(addr)
    payload = os.urandom(size)
    if proto == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect((addr, port))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        name, digest, n = answer.decode().split()
        if digest != hashlib.sha256(payload).hexdigest() or int(n) != len(payload):
            sys.exit(f"tcp: server {name} got {n} bytes with another hash")
        return name
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    names = set()
    for _ in range(count):
        s.sendto(payload, (addr, port))
        data, peer = s.recvfrom(1 << 17)
        if peer[1] != port:
            sys.exit(f"udp: reply came from port {peer[1]}, not {port}")
        name, _, echo = data.partition(b" ")
        if echo != payload:
            sys.exit(f"udp: server {name.decode()} echoed {len(echo)} other bytes")
        names.add(name.decode())
    if len(names) != 1:
        sys.exit(f"udp: answers from several servers: {sorted(names)}")
    return names.pop()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve")
    sp.add_argument("name")
    sp.add_argument("ports", type=int, nargs="+")
    ap = sub.add_parser("ask")
    ap.add_argument("proto", choices=["tcp", "udp"])
    ap.add_argument("addr")
    ap.add_argument("port", type=int)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--count", type=int, default=1)
    mp = sub.add_parser("asks")
    mp.add_argument("port", type=int)
    mp.add_argument("targets", nargs="+", help="PROTO/ADDR")
    args = p.parse_args()
    {"serve": serve, "ask": ask, "asks": asks}[args.cmd](args)


if __name__ == "__main__":
    main()
