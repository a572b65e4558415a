#!/usr/bin/env python3
"""Load generators for vpm's churn and teardown tests (issue 11).

churn SECONDS PORT COUNT
        As fast as it can for SECONDS: adds COUNT allocations (AIDs c0...)
        on fixed ports PORT..PORT+7, a rule for each, deletes the rules,
        deletes the allocations, again and again.  Every command must
        succeed (nothing else changes these AIDs and ports).  Prints a
        VPM-REL record with the number of commands.
traffic ADDR PORT SECONDS NAME
        Until SECONDS have passed: a TCP transfer of 64 KiB (hash checked
        by the server) and a UDP exchange of 4 datagrams (echo checked),
        both answered by server NAME.  Any failure ends it with an error.
refused ADDR PORT SECONDS
        Until SECONDS have passed: TCP connections to PORT..PORT+7, which
        no one serves: each must be refused (a reset), never time out,
        never reach a server.
responsive STOPFILE BOUND
        Until STOPFILE exists: control-plane round trips (status, add,
        del), the slowest of which must take less than BOUND seconds, and
        the kernel's slab memory, sampled (peak reported).
noise NETNS STOPFILE
        Until STOPFILE exists, in network namespace NETNS: UDP datagrams
        to 127.0.0.1:9000 and netlink requests (status, add, dump, del)
        to the vpm family, reconnecting whenever the family is gone (the
        module is being unloaded and loaded).  Errors are expected; what
        counts is that the kernel survives them.  Prints what it did.
unload-cycles COUNT KO NETNS
        COUNT times: load KO, add an allocation and a rule in NETNS,
        attach two `vpmctl monitor`s (once they have joined their
        groups), unload: each monitor must exit with code 3 and say the
        module went away.
netns-storm COUNT
        COUNT network namespaces, one after the other, each with 32
        allocations, a rule and a translated UDP flow in its table,
        destroyed populated (its last process exits).
"""
import ctypes
import errno
import fcntl
import json
import os
import socket
import subprocess
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nl_adversary import U, Conn, string, u16  # noqa: E402
import vpmnet  # noqa: E402

M, R = "VPM_A_MAPPING_", "VPM_A_RULE_"
CLONE_NEWNET = 0x40000000


def rel(rec):
    print("VPM-REL " + json.dumps(rec), flush=True)


def anon_of(msgs):
    return struct.unpack("=H", Conn.attrs(msgs[0])[U[M + "ANON_PORT"]])[0]


def churn(seconds, port, count):
    c = Conn()
    ops, rounds, end = 0, 0, time.time() + seconds

    def do(cmd, attrs):
        nonlocal ops
        code, tlvs, msgs = c.vpm(cmd, attrs)
        ops += 1
        if code:
            sys.exit(f"churn: {cmd} failed: {os.strerror(code)} {tlvs.get(1, b'')!r}")
        return msgs

    while time.time() < end:
        for i in range(count):
            do("VPM_CMD_ADD_MAPPING", string(U[M + "AID"], f"c{i}") + u16(U[M + "PORT"], port + i % 8))
        for i in range(8):
            do("VPM_CMD_ADD_RULE", u16(U[R + "PORT"], port + i) + string(U[R + "AID"], f"c{i}"))
        for i in range(8):
            do("VPM_CMD_DEL_RULE", u16(U[R + "PORT"], port + i))
        for i in range(count):
            do("VPM_CMD_DEL_MAPPING", string(U[M + "AID"], f"c{i}") + u16(U[M + "PORT"], port + i % 8))
        rounds += 1
    rel({"suite": "churn", "case": "control-plane", "inputs": ops,
         "expect": "every command succeeds", "what": f"{rounds} rounds of add/rule/del", "result": "pass"})


def traffic(addr, port, seconds, name):
    n, end = 0, time.time() + seconds
    while time.time() < end:
        for proto, size, count in (("tcp", 65536, 1), ("udp", 512, 4)):
            got = vpmnet.ask_one(proto, addr, port, size, count)
            if got != name:
                sys.exit(f"{proto} exchange answered by {got}, not {name}")
            n += 1
    print(f"{n} exchanges, all with {name}")
    rel({"suite": "churn", "case": "stable-flows", "inputs": n,
         "expect": f"every exchange byte-identical, answered by {name}", "what": "64 KiB TCP + 4 UDP datagrams each",
         "result": "pass"})


def refused(addr, port, seconds):
    n, end = 0, time.time() + seconds
    fam = vpmnet.family(addr)
    while time.time() < end:
        for p in range(port, port + 8):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect((addr, p))
                sys.exit(f"a connection to churned port {p} was accepted")
            except ConnectionRefusedError:
                n += 1
            except OSError as e:
                sys.exit(f"a connection to churned port {p} ended with {e!r}, not a refusal")
            finally:
                s.close()
    print(f"{n} connections refused")
    rel({"suite": "churn", "case": "churned-ports", "inputs": n,
         "expect": "every connection refused cleanly", "what": "TCP connects to ports under churn", "result": "pass"})


def responsive(stopfile, bound):
    """Until STOPFILE exists: control-plane round trips (status, an add
    and a del) timed one after the other, and the kernel's slab memory
    sampled; the slowest round trip must stay under BOUND seconds."""
    c = Conn()
    worst, n, slab_peak, slab0 = 0.0, 0, 0, None
    while not os.path.exists(stopfile):
        t = time.monotonic()
        for cmd, attrs in (("VPM_CMD_GET_STATUS", b""),
                           ("VPM_CMD_ADD_MAPPING", string(U[M + "AID"], "probe") + u16(U[M + "PORT"], 9300)),
                           ("VPM_CMD_DEL_MAPPING", string(U[M + "AID"], "probe") + u16(U[M + "PORT"], 9300))):
            code, _, _ = c.vpm(cmd, attrs)
            if code:
                sys.exit(f"{cmd} failed during the flood: {os.strerror(code)}")
        worst = max(worst, time.monotonic() - t)
        n += 1
        with open("/proc/meminfo") as f:
            slab = next(int(line.split()[1]) for line in f if line.startswith("Slab:"))
        slab0 = slab if slab0 is None else slab0
        slab_peak = max(slab_peak, slab)
        time.sleep(0.05)
    ok = worst < bound
    print(f"{n} round trips during the flood, the slowest {worst * 1000:.0f} ms; slab {slab0} kB, peak {slab_peak} kB")
    rel({"suite": "churn", "case": "control-plane-under-flood", "inputs": n,
         "expect": f"every round trip (status, add, del) answers, the slowest under {bound:g} s",
         "what": f"slowest {worst * 1000:.0f} ms; kernel slab {slab0} kB at the start, peak {slab_peak} kB",
         "result": "pass" if ok else "fail"})
    if not ok:
        sys.exit(f"a round trip took {worst:.1f} s")


def enter(ns):
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET):
        sys.exit(f"setns {ns} failed")
    os.close(fd)


def noise(ns, stopfile):
    enter(ns)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = answered = errors = 0
    conn = None
    i = 0
    while not os.path.exists(stopfile):
        i += 1
        try:
            udp.sendto(b"noise", ("127.0.0.1", 9000))
            sent += 1
        except OSError:
            pass
        try:
            if conn is None:
                conn = Conn()
            cmd = ("VPM_CMD_GET_STATUS", "VPM_CMD_ADD_MAPPING", "VPM_CMD_GET_MAPPING", "VPM_CMD_DEL_MAPPING")[i % 4]
            attrs = b"" if cmd in ("VPM_CMD_GET_STATUS", "VPM_CMD_GET_MAPPING") else \
                string(U[M + "AID"], "noise") + u16(U[M + "PORT"], 9100)
            code, _, _ = conn.vpm(cmd, attrs)
            answered += 1
            errors += code != 0
        except (AssertionError, OSError, KeyError, IndexError):
            # The family is gone (or going): start over with a new socket.
            conn = None
            time.sleep(0.02)
    print(f"noise: {sent} datagrams, {answered} netlink answers ({errors} errors)")


def subscribed(pid):
    """Whether process PID has a generic netlink socket in this network
    namespace that joined the genetlink controller's "notify" group (id
    16: bit 15 of the first word of groups in /proc/net/netlink), which
    vpmctl monitor joins first and which announces the module's unload."""
    with open("/proc/thread-self/net/netlink") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "16" and fields[2] == str(pid) and int(fields[3], 16) & 0x8000:
                return True
    return False


def unload_cycles(count, ko, ns):
    """COUNT times: load vpm, populate NS, attach two `vpmctl monitor`s,
    unload; each monitor must then exit 3 saying the module went away."""
    enter(ns)
    for i in range(1, count + 1):
        subprocess.run(["insmod", ko], check=True)
        c = Conn()
        for cmd, attrs in (("VPM_CMD_ADD_MAPPING", string(U[M + "AID"], "a") + u16(U[M + "PORT"], 9000)),
                           ("VPM_CMD_ADD_RULE", u16(U[R + "PORT"], 9000) + string(U[R + "AID"], "a"))):
            code, _, _ = c.vpm(cmd, attrs)
            if code:
                sys.exit(f"cycle {i}: {cmd}: {os.strerror(code)}")
        c.s.close()
        mons = [subprocess.Popen(["vpmctl", "monitor"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
        deadline = time.time() + 30
        while not all(subscribed(m.pid) for m in mons):
            if time.time() > deadline:
                sys.exit(f"cycle {i}: the monitors never joined their groups")
            time.sleep(0.05)
        # A dump in flight holds a module reference: "in use" for a moment.
        for _ in range(100):
            if subprocess.run(["rmmod", "vpm"], stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.05)
        else:
            sys.exit(f"cycle {i}: rmmod kept failing")
        for m in mons:
            try:
                out, _ = m.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                m.kill()
                sys.exit(f"cycle {i}: a monitor did not notice the unload")
            if m.returncode != 3 or "not loaded any more" not in out:
                sys.exit(f"cycle {i}: a monitor exited {m.returncode}: {out!r}")
    print(f"{count} unloads, each with 2 monitors attached")


def lo_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flags = 0x1 | 0x8 | 0x40  # IFF_UP | IFF_LOOPBACK | IFF_RUNNING
    fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags))  # SIOCSIFFLAGS
    s.close()


def one_netns():
    """In a child: a new network namespace, populated, with a flow."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET):
        os._exit(10)
    lo_up()
    c = Conn()
    anon = None
    for j in range(32):
        code, _, msgs = c.vpm("VPM_CMD_ADD_MAPPING", string(U[M + "AID"], f"n{j}") + u16(U[M + "PORT"], 9000 + j % 4))
        if code:
            os._exit(11)
        if j == 0:
            anon = anon_of(msgs)
    if c.vpm("VPM_CMD_ADD_RULE", u16(U[R + "PORT"], 9000) + string(U[R + "AID"], "n0"))[0]:
        os._exit(12)
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", anon))
    srv.settimeout(5)
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.sendto(b"storm", ("127.0.0.1", 9000))
    try:
        data, _ = srv.recvfrom(64)
    except socket.timeout:
        os._exit(13)
    # Exit with everything in place: the namespace goes with its table.
    os._exit(0 if data == b"storm" else 14)


def netns_storm(count):
    bad = {}
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            try:
                one_netns()
            finally:
                os._exit(15)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code:
            bad[code] = bad.get(code, 0) + 1
    if bad:
        sys.exit(f"namespaces that did not come up as expected (exit code: count): {bad}")
    print(f"{count} namespaces populated and destroyed")
    rel({"suite": "teardown", "case": "netns-storm", "inputs": count,
         "expect": "each namespace translates, then goes with its table; no leak, no splat",
         "what": "32 allocations, a rule and a pinned UDP flow each", "result": "pass"})


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "churn":
        churn(float(args[0]), int(args[1]), int(args[2]))
    elif mode == "traffic":
        traffic(args[0], int(args[1]), float(args[2]), args[3])
    elif mode == "refused":
        refused(args[0], int(args[1]), float(args[2]))
    elif mode == "responsive":
        responsive(args[0], float(args[1]))
    elif mode == "noise":
        noise(args[0], args[1])
    elif mode == "unload-cycles":
        unload_cycles(int(args[0]), args[1], args[2])
    elif mode == "netns-storm":
        netns_storm(int(args[0]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
