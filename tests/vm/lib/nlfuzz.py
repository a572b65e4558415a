#!/usr/bin/env python3
"""Netlink fuzzing of the vpm family (tests/vm/97-nlfuzz.sh, issue 11).

  nlfuzz.py root COUNT SEED
        COUNT messages as root in the current network namespace: mutants
        of well-formed requests (bit flips, cut or stretched lengths,
        attribute types changed, attributes duplicated, wrapped in nests,
        random header flags, versions and commands) and random bytes,
        mixing do requests, dumps left half read, dumps on several sockets
        and sockets closed mid-dump.  Every answer must be a well-formed
        ack or error; afterwards the table must be consistent (see
        `consistent`).
  nlfuzz.py unpriv COUNT SEED
        The same messages from whoever runs it (uid 65534 in a user
        namespace, in the caller's network namespace): every mutating
        command must be refused, and a raw dump of the state (reading
        needs no privilege) must be the same afterwards.
  nlfuzz.py state
        Prints the namespace's mappings, rules and configuration as one
        canonical JSON line (a raw dump, independent of vpmctl).

Prints a VPM-REL record and "allocations N" (a raw dump's count after the
run); exits non-zero on the first surprise.
"""
import errno
import json
import os
import random
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nl_adversary import U, Conn, attr, string, u16, u32  # noqa: E402

NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP = 1, 4, 8, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLA_F_NESTED = 0x8000
NLMSG_ERROR, NLMSG_DONE = 2, 3

CMDS = {k: v for k, v in U.items() if k.startswith("VPM_CMD_")}
MUTATING = {U[c] for c in ("VPM_CMD_ADD_MAPPING", "VPM_CMD_DEL_MAPPING", "VPM_CMD_FLUSH",
                           "VPM_CMD_SET_CONFIG", "VPM_CMD_ADD_RULE", "VPM_CMD_DEL_RULE")}
M, R, C = "VPM_A_MAPPING_", "VPM_A_RULE_", "VPM_A_CONFIG_"


def seeds(rng):
    """Well-formed requests to mutate: (command, attributes)."""
    aid = string(U[M + "AID"], rng.choice(["fa", "fb", "fc", "x" * 31]))
    port = u16(U[M + "PORT"], rng.choice([9000, 9001, 1, 65535, rng.randrange(1, 65536)]))
    proto = u32(U[M + "PROTO"], rng.choice([1, 2, 3]))
    anon = u16(U[M + "ANON_PORT"], rng.randrange(1, 65536))
    raid = string(U[R + "AID"], rng.choice(["fa", "fb"]))
    rport = u16(U[R + "PORT"], rng.choice([9000, 9001]))
    return rng.choice([
        ("VPM_CMD_ADD_MAPPING", aid + port),
        ("VPM_CMD_ADD_MAPPING", aid + port + proto),
        ("VPM_CMD_ADD_MAPPING", aid + port + anon),
        ("VPM_CMD_DEL_MAPPING", aid + port),
        ("VPM_CMD_GET_MAPPING", aid + port),
        ("VPM_CMD_GET_MAPPING", b""),
        ("VPM_CMD_ADD_RULE", rport + raid),
        ("VPM_CMD_DEL_RULE", rport),
        ("VPM_CMD_GET_RULE", b""),
        ("VPM_CMD_GET_STATUS", b""),
        ("VPM_CMD_GET_CONFIG", b""),
        ("VPM_CMD_SET_CONFIG", u16(U[C + "RANGE_LO"], rng.randrange(1024, 40000))
         + u16(U[C + "RANGE_HI"], rng.randrange(40000, 65536))),
        ("VPM_CMD_SET_CONFIG", u32(U[C + "MAX_ENTRIES"], rng.choice([0, 1, 64, 65535, 1 << 31]))),
        ("VPM_CMD_FLUSH", b""),
    ])


def split_attrs(body):
    out, off = [], 0
    while off + 4 <= len(body):
        ln, ty = struct.unpack_from("=HH", body, off)
        if ln < 4:
            break
        out.append((ty, body[off + 4: off + ln]))
        off += (ln + 3) & ~3
    return out


def mutate(rng, cmd, body):
    """One mutant of request CMD with attributes BODY: (cmd, version,
    genl reserved, attribute bytes, nlmsg flags)."""
    version, reserved = 1, 0
    flags = NLM_F_REQUEST | NLM_F_ACK
    attrs = split_attrs(body)
    for _ in range(rng.randrange(1, 4)):
        m = rng.randrange(12)
        if m == 0 and attrs:  # change an attribute's type
            i = rng.randrange(len(attrs))
            attrs[i] = (rng.randrange(0, 20) | rng.choice([0, NLA_F_NESTED]), attrs[i][1])
        elif m == 1 and attrs:  # cut or stretch a payload
            i = rng.randrange(len(attrs))
            p = attrs[i][1]
            attrs[i] = (attrs[i][0], p[: rng.randrange(len(p) + 1)] if rng.random() < 0.5 else p + rng.randbytes(rng.randrange(1, 9)))
        elif m == 2 and attrs:  # duplicate
            attrs.append(rng.choice(attrs))
        elif m == 3 and attrs:  # wrap in a nest
            i = rng.randrange(len(attrs))
            inner = attr(attrs[i][0], attrs[i][1])
            attrs[i] = (rng.randrange(0, 12) | NLA_F_NESTED, inner)
        elif m == 4:  # a random attribute
            attrs.append((rng.randrange(0, 0x10000), rng.randbytes(rng.randrange(0, 40))))
        elif m == 5:
            flags = NLM_F_REQUEST | rng.choice([0, NLM_F_ACK]) | rng.choice(
                [0, NLM_F_DUMP, NLM_F_ECHO, NLM_F_REPLACE, NLM_F_EXCL | NLM_F_CREATE, rng.randrange(0x10000)])
        elif m == 6:
            version = rng.randrange(256)
        elif m == 7:
            reserved = rng.randrange(0x10000)
        elif m == 8:
            cmd = rng.randrange(256) if rng.random() < 0.3 else rng.choice(list(CMDS.values()))
        elif m == 9 and attrs:  # flip bits in a payload
            i = rng.randrange(len(attrs))
            p = bytearray(attrs[i][1])
            for _ in range(rng.randrange(1, 4)):
                if p:
                    p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
            attrs[i] = (attrs[i][0], bytes(p))
        elif m == 10 and attrs:  # drop one
            attrs.pop(rng.randrange(len(attrs)))
        elif m == 11:
            rng.shuffle(attrs)
    raw = b"".join(attr(t & 0xFFFF, p) for t, p in attrs)
    if rng.random() < 0.05:  # a lying attribute length
        raw = bytearray(raw)
        if len(raw) >= 4:
            struct.pack_into("=H", raw, 0, rng.randrange(0, 0x10000))
        raw = bytes(raw)
    return cmd, version, reserved, raw, flags


class Fuzzer:
    def __init__(self, seed, unpriv):
        self.rng = random.Random(seed)
        self.unpriv = unpriv
        self.conns = [Conn() for _ in range(3)]
        self.sent = self.mut_ok = self.answers = self.silent = 0

    def send(self, conn, cmd, version, reserved, raw, flags, read=True):
        if self.unpriv and (cmd & 0xFF) in MUTATING:
            # Without an ack, a success would pass unseen (errors are
            # always answered).
            flags |= NLM_F_ACK
        conn.seq += 1
        hdr_body = struct.pack("=BBH", cmd & 0xFF, version, reserved) + raw
        ln = 16 + len(hdr_body)
        if self.rng.random() < 0.03:  # a lying message length (the kernel checks it)
            ln = self.rng.randrange(16, ln + 1)
        try:
            conn.s.send(struct.pack("=IHHII", ln, conn.family, flags & 0xFFFF, conn.seq, 0) + hdr_body)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOBUFS, errno.EPERM, errno.ECONNREFUSED):
                raise
            return
        self.sent += 1
        if read:
            # An ack, an error or a dump's end closes the answer to a
            # request that asked for an ack or a dump; without either, a
            # success may say nothing, so a barrier follows it.
            answered = flags & NLM_F_ACK or flags & NLM_F_DUMP == NLM_F_DUMP
            self.read_answers(conn, cmd, barrier=not answered)

    def read_answers(self, conn, cmd, barrier):
        """Reads what the last request caused: up to its ack, error or
        dump end, or (BARRIER) up to the answer to a barrier sent right
        after it, a GET_STATUS with an ack, which the kernel handles after
        the request.  An answer that does not come within 5 s is waited
        for through a barrier after all."""
        fuzz_seq = conn.seq
        end_seq = fuzz_seq

        def send_barrier():
            conn.seq += 1
            body = struct.pack("=BBH", U["VPM_CMD_GET_STATUS"], 1, 0)
            conn.s.send(struct.pack("=IHHII", 16 + len(body), conn.family, NLM_F_REQUEST | NLM_F_ACK, conn.seq, 0)
                        + body)
            return conn.seq

        if barrier:
            end_seq = send_barrier()
        conn.s.settimeout(5)
        try:
            while True:
                try:
                    data = conn.s.recv(1 << 20)
                except socket.timeout:
                    if end_seq != fuzz_seq:
                        raise
                    self.silent += 1
                    end_seq = send_barrier()
                    continue
                off = 0
                while off + 16 <= len(data):
                    ln, ty, fl, seq, _ = struct.unpack_from("=IHHII", data, off)
                    if ln < 16 or off + ln > len(data):
                        sys.exit(f"malformed answer from the kernel: {data[off:off + 32].hex()}")
                    if ty == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, off + 16)[0]
                        if code < 0 or code > 4095:
                            sys.exit(f"error code out of range: {code}")
                        if seq == fuzz_seq:
                            self.answers += 1
                            if code == 0 and cmd in MUTATING:
                                self.mut_ok += 1
                                if self.unpriv:
                                    sys.exit(f"an unprivileged sender's command {cmd} succeeded")
                            if end_seq == fuzz_seq:
                                return
                        elif seq == end_seq:
                            if code:
                                sys.exit(f"the barrier GET_STATUS failed: errno {code}")
                            return
                    elif ty == NLMSG_DONE and seq == fuzz_seq == end_seq:
                        return
                    off += (ln + 3) & ~3
        except socket.timeout:
            sys.exit("no answer to the barrier within 5 s")
        except OSError as e:
            # A dump left unread while more requests were sent can overrun
            # the socket (ENOBUFS): the kernel says so, the socket lives;
            # the barrier's answer may be among what was dropped.
            if e.errno != errno.ENOBUFS:
                raise
        finally:
            conn.s.settimeout(None)

    def run(self, count):
        rng = self.rng
        while self.sent < count:
            r = rng.random()
            conn = rng.choice(self.conns)
            if r < 0.15:
                # Random bytes after a valid genl header for the family.
                self.send(conn, rng.randrange(256), rng.randrange(256), 0,
                          rng.randbytes(rng.randrange(0, 96)), NLM_F_REQUEST | NLM_F_ACK)
            elif r < 0.2:
                # A dump started and left half read, then a do request on
                # the same socket.
                self.send(conn, U["VPM_CMD_GET_MAPPING"], 1, 0, b"", NLM_F_REQUEST | NLM_F_DUMP, read=False)
                cmd, body = seeds(rng)
                self.send(conn, *mutate(rng, U[cmd], body))
            elif r < 0.21:
                # A socket closed in the middle of a dump.
                i = self.conns.index(conn)
                self.send(conn, U["VPM_CMD_GET_MAPPING"], 1, 0, b"", NLM_F_REQUEST | NLM_F_DUMP, read=False)
                conn.s.close()
                self.conns[i] = Conn()
            else:
                cmd, body = seeds(rng)
                if rng.random() < 0.2:
                    # Unmutated: keeps the table populated and changing.
                    self.send(conn, U[cmd], 1, 0, body, NLM_F_REQUEST | NLM_F_ACK)
                else:
                    self.send(conn, *mutate(rng, U[cmd], body))


def dump(conn, cmd):
    code, _, msgs = conn.vpm(cmd, flags=NLM_F_REQUEST | NLM_F_DUMP)
    if code:
        sys.exit(f"dump {cmd}: errno {code}")
    return [{str(k): v.hex() for k, v in sorted(Conn.attrs(m).items())} for m in msgs]


def state():
    c = Conn()
    code, _, cfg = c.vpm("VPM_CMD_GET_CONFIG")
    if code:
        sys.exit(f"GET_CONFIG: errno {code}")
    return {"mappings": dump(c, "VPM_CMD_GET_MAPPING"), "rules": dump(c, "VPM_CMD_GET_RULE"),
            "config": {str(k): v.hex() for k, v in sorted(Conn.attrs(cfg[0]).items())}}


def consistent(st):
    """The table's own invariants, from a raw dump: one allocation per
    (AID, fixed port), anonymous ports unique, no more of them than the
    cap, and as many as the kernel's own count.  (An allocation outside
    the configured range is legal: an explicit anon-port, or a range
    changed since.)"""
    def names(prefix):
        # Attribute numbers restart in every set: name them per set.
        return {v: k for k, v in U.items() if k.startswith(prefix)}

    cfg_names, map_names = names(C), names(M)
    problems = []
    seen_keys, seen_anon = set(), set()
    cfg = {cfg_names.get(int(k)): int.from_bytes(bytes.fromhex(v), sys.byteorder)
           for k, v in st["config"].items()}
    for m in st["mappings"]:
        f = {map_names.get(int(k)): bytes.fromhex(v) for k, v in m.items()}
        key = (f.get(M + "AID"), f.get(M + "PORT"))
        anon = int.from_bytes(f.get(M + "ANON_PORT", b"\0\0"), sys.byteorder)
        if key in seen_keys:
            problems.append(f"two allocations for {key}")
        if anon in seen_anon:
            problems.append(f"anonymous port {anon} twice")
        seen_keys.add(key)
        seen_anon.add(anon)
    cap = cfg.get(C + "MAX_ENTRIES")
    if cap and len(st["mappings"]) > cap:
        problems.append(f"{len(st['mappings'])} allocations over the cap {cap}")
    if cfg.get(C + "ENTRIES", 0) != len(st["mappings"]):
        problems.append(f"the kernel counts {cfg.get(C + 'ENTRIES')} allocations, its dump holds {len(st['mappings'])}")
    return problems


def main():
    mode = sys.argv[1]
    if mode == "state":
        print(json.dumps(state(), sort_keys=True))
        return
    count, seed = int(sys.argv[2]), int(sys.argv[3])
    unpriv = mode == "unpriv"
    # Reading is allowed to anyone: an unprivileged run compares the
    # state before and after itself.
    start = state() if unpriv else None
    f = Fuzzer(seed, unpriv=unpriv)
    f.run(count)
    # The family still answers, and (as root) the table is consistent.
    code, _, _ = Conn().vpm("VPM_CMD_GET_STATUS")
    if code:
        sys.exit(f"the family no longer answers GET_STATUS: errno {code}")
    end = state()
    if unpriv:
        problems = [] if end == start else ["the state changed under the unprivileged fuzz"]
    else:
        problems = consistent(end)
    # For the caller: how many allocations a raw dump sees now.
    print(f"allocations {len(end['mappings'])}")
    rec = {"suite": "netlink-fuzz", "case": f"{mode}-seed-{seed}", "inputs": f.sent,
           "expect": "no mutating command succeeds" if f.unpriv else "answers well-formed; the table consistent",
           "what": f"{f.answers} answered, {f.mut_ok} mutating commands accepted, "
                   f"{f.silent} expected answers that did not come within 5 s",
           "result": "fail" if problems else "pass"}
    if problems:
        rec["problems"] = problems
    print("VPM-REL " + json.dumps(rec), flush=True)
    if problems:
        sys.exit("; ".join(problems))


if __name__ == "__main__":
    main()
