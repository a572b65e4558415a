#!/usr/bin/env python3
"""A client of a cooperative server (tests/vm/89-coop-path.sh, guest side).

It talks to tests/vm/lib/vpmnet.py's servers and reports what the
application sees, which must always be the fixed port:

ask PROTO ADDR PORT [--connected]
    One exchange; prints "NAME peer=P" where NAME is the server instance
    that answered and P the port the application sees for its peer:
    getpeername for TCP and connected UDP, recvfrom's source for
    unconnected UDP.  A refused connect or send prints "refused ERRNO"
    and exits 3 (within --timeout either way: it never hangs).
asks TARGET...
    One ask per TARGET, PROTO/ADDR/PORT with PROTO tcp, udp (unconnected)
    or udpc (connected UDP), or name (a TCP connection on which the
    server says the port it sees as its own: "NAME sockname=PORT"); one
    line each (one interpreter start for many: TCG is slow).
hold ADDR PORT GO DONE
    A TCP connection in vpmnet's interactive mode: one exchange, prints
    "first NAME peer=P", waits until file GO exists, exchanges again on
    the same connection and writes "second NAME" to file DONE.
"""
import argparse
import errno
import os
import socket
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def name_of(reply, sent):
    if not reply.endswith(b" " + sent):
        raise SystemExit(f"unexpected answer {reply!r}")
    return reply[: -len(sent) - 1].decode()


class Refused(Exception):
    pass


def exchange(proto, addr, port, connected, timeout):
    """The answering instance's name and the peer port the application
    sees; Refused if connect or send fails."""
    token = os.urandom(8).hex().encode()
    if proto == "tcp":
        s = socket.socket(family(addr), socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
        except OSError as e:
            raise Refused(errno.errorcode.get(e.errno, str(e.errno)))
        with s:
            peer = s.getpeername()[1]
            s.sendall(b"L" + token)
            reply = s.recv(1 << 16)
        return name_of(reply, token), peer
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    with s:
        try:
            if connected:
                s.connect((addr, port))
                s.send(token)
            else:
                s.sendto(token, (addr, port))
        except OSError as e:
            raise Refused(errno.errorcode.get(e.errno, str(e.errno)))
        if connected:
            peer = s.getpeername()[1]
            reply = s.recv(1 << 16)
        else:
            reply, src = s.recvfrom(1 << 16)
            peer = src[1]
    return name_of(reply, token), peer


def sockname(addr, port, timeout):
    """What the instance that accepts a TCP connection sees as its own
    port (vpmnet's mode N)."""
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(timeout)
    with s:
        s.connect((addr, port))
        s.sendall(b"N")
        return s.recv(1 << 16).decode()


def line(proto, addr, port, connected, timeout):
    if proto == "name":
        try:
            return sockname(addr, port, timeout), True
        except OSError as e:
            return f"failed {errno.errorcode.get(e.errno, type(e).__name__)}", False
    try:
        name, peer = exchange(proto, addr, port, connected, timeout)
    except Refused as e:
        return f"refused {e}", False
    except OSError as e:
        # No answer (timeout), or an error after the send went out.
        return f"failed {errno.errorcode.get(e.errno, type(e).__name__)}", False
    return f"{name} peer={peer}", True


def ask(args):
    text, ok = line(args.proto, args.addr, args.port, args.connected, args.timeout)
    print(text)
    sys.exit(0 if ok else 3)


def asks(args):
    for t in args.targets:
        proto, addr, port = t.split("/")
        connected = proto == "udpc"
        text, _ = line("udp" if connected else proto, addr, int(port), connected, 10)
        print(f"{t} {text}", flush=True)


def hold(args):
    s = socket.socket(family(args.addr), socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect((args.addr, args.port))
    s.sendall(b"Lfirst")
    name = name_of(s.recv(1 << 16), b"first")
    print(f"first {name} peer={s.getpeername()[1]}", flush=True)
    deadline = time.time() + 300
    while not os.path.exists(args.go):
        if time.time() > deadline:
            raise SystemExit("never told to go on")
        time.sleep(0.1)
    s.sendall(b"second")
    name = name_of(s.recv(1 << 16), b"second")
    with open(args.done, "w") as f:
        f.write(f"second {name}\n")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ask")
    a.add_argument("proto", choices=["tcp", "udp"])
    a.add_argument("addr")
    a.add_argument("port", type=int)
    a.add_argument("--connected", action="store_true")
    a.add_argument("--timeout", type=float, default=10)
    m = sub.add_parser("asks")
    m.add_argument("targets", nargs="+")
    h = sub.add_parser("hold")
    h.add_argument("addr")
    h.add_argument("port", type=int)
    h.add_argument("go")
    h.add_argument("done")
    args = p.parse_args()
    {"ask": ask, "asks": asks, "hold": hold}[args.cmd](args)


if __name__ == "__main__":
    main()
