#!/usr/bin/env python3
"""What a server sees when it binds (guest side, for 65-exec).

bindprobe.py PORT... [--tcp-only] [--v4] [--hold FILE]

Binds TCP (listening) and UDP sockets to each PORT, the first on [::]
(dual-stack), the next on 0.0.0.0, alternating (--v4: all on 0.0.0.0),
and prints what getsockname() says, one "PROTO+FAMILY PORT" pair per
socket on one line, e.g. "tcp6 9000 udp6 9000".  With --hold, it writes
the port each socket really has, from the kernel's socket table
(/proc/net/{tcp,tcp6,udp,udp6}, found by the socket's inode), one per
line, to FILE.  A failed bind prints "bind PORT: errno N (...)" on stderr
and exits 1.
"""
import argparse
import os
import socket
import sys


def bind(proto, v6, port):
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        s.bind(("::" if v6 else "0.0.0.0", port))
    except OSError as e:
        print(f"bind {port}: errno {e.errno} ({e.strerror})", file=sys.stderr)
        sys.exit(1)
    if kind == socket.SOCK_STREAM:
        s.listen(1)
    return s


def real_port(s, proto):
    """The port of socket s in the kernel's socket table."""
    ino = os.fstat(s.fileno()).st_ino
    for table in (proto, proto + "6"):
        with open(f"/proc/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[9]) == ino:
                    return int(cols[1].rsplit(":", 1)[1], 16)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ports", type=int, nargs="+")
    ap.add_argument("--tcp-only", action="store_true")
    ap.add_argument("--v4", action="store_true")
    ap.add_argument("--hold")
    a = ap.parse_args()
    protos = ["tcp"] if a.tcp_only else ["tcp", "udp"]
    said, real, socks = [], [], []
    for i, port in enumerate(a.ports):
        v6 = not a.v4 and i % 2 == 0
        for proto in protos:
            s = bind(proto, v6, port)
            socks.append(s)
            said.append(f"{proto}{6 if v6 else 4} {s.getsockname()[1]}")
            real.append(real_port(s, proto))
    if a.hold:
        with open(a.hold, "w") as f:
            f.writelines(f"{p}\n" for p in real)
    print(" ".join(said))


if __name__ == "__main__":
    main()
