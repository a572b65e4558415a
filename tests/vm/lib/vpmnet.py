#!/usr/bin/env python3
"""Test servers and clients for vpm's packet-path tests (guest side).

serve NAME PORT...   TCP and UDP, IPv4 and IPv6, on each PORT (anonymous
                     ports of one AID).  TCP: a mode byte, then data to EOF
                     (mode L: each chunk is answered at once with
                     b"NAME " + chunk, until EOF; mode N: answers
                     "NAME sockname=PORT", the accepted socket's
                     getsockname port);
                     answers "NAME <sha256> <len>\n", followed in mode E by
                     the data itself; in mode D the data is a byte count
                     and the server sends that many random bytes.  UDP: answers each datagram with
                     b"NAME " + datagram.
serves NAME:PORT[,PORT...]...
                     Several such servers in one process (one interpreter
                     start for many servers: TCG is slow).
ask PROTO ADDR PORT [--size N] [--count N] [--echo | --download | --slow]
    [--sport P] [--src ADDR]
                     Sends N random bytes (COUNT times for UDP), checks the
                     answer (hash for TCP, and with --echo the data sent
                     back; echo for UDP, and that UDP replies come from
                     ADDR:PORT), prints the server's NAME.
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
import time


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
        data = bytearray(conn.recv(1 << 16))
        if data[:1] == b"N":  # the port the instance sees as its own
            conn.sendall(f"{name} sockname={conn.getsockname()[1]}".encode())
            return
        if data[:1] == b"L":  # interactive: answer each chunk at once
            chunk = bytes(data[1:]) or conn.recv(1 << 16)
            while chunk:
                conn.sendall(name.encode() + b" " + chunk)
                chunk = conn.recv(1 << 16)
            return
        while data:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        mode, payload = data[:1], bytes(data[1:])
        if mode in (b"D", b"S"):  # download: the payload is a byte count
            payload = os.urandom(int(payload))
        digest = hashlib.sha256(payload).hexdigest()
        conn.sendall(f"{name} {digest} {len(payload)}\n".encode())
        if mode in (b"E", b"D"):
            conn.sendall(payload)
        elif mode == b"S":  # slow download: 64 KiB every 0.2 s
            for at in range(0, len(payload), 1 << 16):
                conn.sendall(payload[at:at + (1 << 16)])
                time.sleep(0.2)


def serve_udp(name, port):
    s = dual_stack(socket.SOCK_DGRAM, port)
    while True:
        data, peer = s.recvfrom(1 << 16)
        s.sendto(name.encode() + b" " + data, peer)


def serve(args):
    run_servers([(args.name, port) for port in args.ports])


def serves(args):
    servers = []
    for spec in args.servers:
        name, sep, ports = spec.partition(":")
        if not name or not sep:
            sys.exit(f"serves: {spec!r} is not NAME:PORT[,PORT...]")
        servers += [(name, int(port)) for port in ports.split(",")]
    run_servers(servers)


def run_servers(servers):
    threads = []
    for name, port in servers:
        for fn in (serve_tcp, serve_udp):
            t = threading.Thread(target=fn, args=(name, port), daemon=True)
            t.start()
            threads.append(t)
    print("ready", flush=True)
    for t in threads:
        t.join()


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def ask(args):
    mode = "E" if args.echo else "D" if args.download else "S" if args.slow else "H"
    print(ask_one(args.proto, args.addr, args.port, args.size, args.count, mode, args.sport, args.src))


def asks(args):
    names = []
    for target in args.targets:
        proto, addr = target.split("/", 1)
        names.append(ask_one(proto, addr, args.port, 32, 1))
    print(" ".join(names))


def send_all(s, data, chunk=1 << 20):
    """sendall() that fails only when a chunk makes no progress within the
    socket's timeout.  A plain sendall()'s timeout bounds the whole call
    (Python >= 3.5), so a slow but healthy 64 MiB transfer on a loaded
    machine would look like a stall."""
    view = memoryview(data)
    for at in range(0, len(view), chunk):
        s.sendall(view[at:at + chunk])


def ask_one(proto, addr, port, size, count, mode="H", sport=0, src=None):
    fam = family(addr)
    payload = os.urandom(size)
    local = (src or ("::" if fam == socket.AF_INET6 else "0.0.0.0"), sport)
    if proto == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(20)
        if sport or src:
            s.bind(local)
        s.connect((addr, port))
        send_all(s, mode.encode() + (str(size).encode() if mode in "DS" else payload))
        s.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            answer += chunk
        line, _, back = bytes(answer).partition(b"\n")
        name, digest, n = line.decode().split()
        if mode in "DS":
            if hashlib.sha256(back).hexdigest() != digest or len(back) != size:
                sys.exit(f"tcp: {len(back)} bytes from server {name} do not match its hash")
            return name
        if digest != hashlib.sha256(payload).hexdigest() or int(n) != len(payload):
            sys.exit(f"tcp: server {name} got {n} bytes with another hash")
        if mode == "E" and back != payload:
            sys.exit(f"tcp: server {name} sent back {len(back)} other bytes")
        return name
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    if sport or src:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(local)
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
    ssp = sub.add_parser("serves")
    ssp.add_argument("servers", nargs="+", help="NAME:PORT[,PORT...]")
    ap = sub.add_parser("ask")
    ap.add_argument("proto", choices=["tcp", "udp"])
    ap.add_argument("addr")
    ap.add_argument("port", type=int)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--echo", action="store_true")
    ap.add_argument("--download", action="store_true")
    ap.add_argument("--slow", action="store_true", help="download 64 KiB every 0.2 s")
    ap.add_argument("--sport", type=int, default=0, help="bind to this source port")
    ap.add_argument("--src", help="bind to this source address")
    mp = sub.add_parser("asks")
    mp.add_argument("port", type=int)
    mp.add_argument("targets", nargs="+", help="PROTO/ADDR")
    args = p.parse_args()
    {"serve": serve, "serves": serves, "ask": ask, "asks": asks}[args.cmd](args)


if __name__ == "__main__":
    main()
