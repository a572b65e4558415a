#!/usr/bin/env python3
"""An independent, deliberately rude generic netlink client for vpm.

vpmctl only sends well-formed requests; this script sends what a buggy or
hostile program could: unknown attributes, missing ones, out-of-range
values, unknown commands and random bytes.  It checks the errno and the
extended-ack text of each answer, and after fuzzing that the family still
answers.  Exits non-zero on the first surprise.  Numbers come from the
generated uapi header, so they cannot drift from the module.
"""
import errno
import os
import random
import re
import socket
import struct
import sys

NETLINK_GENERIC = 16
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 16, 3, 1, 2
NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK, SOL_NETLINK = 11, 12, 270
NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_MISS_TYPE = 1, 5


def uapi():
    """Enum values from uapi/linux/vpm.h, by name."""
    text = open(os.path.join(os.environ["VPM_ROOT"], "uapi/linux/vpm.h")).read()
    vals = {}
    for body in re.findall(r"enum[^{]*\{([^}]*)\}", text):
        n = 0
        for item in body.split(","):
            name, _, val = (part.strip() for part in item.strip().partition("="))
            # The __X_MAX sentinel and its X_MAX alias are not values (but
            # an attribute whose name merely contains _MAX, like
            # MAX_ENTRIES, is).
            if not name or name.startswith("__") or name.endswith("_MAX"):
                continue
            n = int(val, 0) if val else n
            vals[name] = n
            n += 1
    return vals


U = uapi()


def attr(ty, payload):
    hdr = struct.pack("=HH", 4 + len(payload), ty)
    return hdr + payload + b"\0" * ((4 - len(payload) % 4) % 4)


def u16(ty, v):
    return attr(ty, struct.pack("=H", v))


def u32(ty, v):
    return attr(ty, struct.pack("=I", v))


def string(ty, s):
    return attr(ty, s.encode() + b"\0")


class Conn:
    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.s.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self.s.bind((0, 0))
        self.seq = 0
        err, _, msgs = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, string(CTRL_ATTR_FAMILY_NAME, "vpm"), version=2)
        assert err == 0, f"cannot resolve vpm: {err}"
        self.family = struct.unpack("=H", self.attrs(msgs[0])[CTRL_ATTR_FAMILY_ID])[0]

    @staticmethod
    def attrs(payload):
        out, off = {}, 4  # skip genlmsghdr
        while off + 4 <= len(payload):
            ln, ty = struct.unpack_from("=HH", payload, off)
            if ln < 4:
                break
            out[ty & 0x3FFF] = payload[off + 4: off + ln]
            off += (ln + 3) & ~3
        return out

    def raw(self, nl_type, body, flags=NLM_F_REQUEST | NLM_F_ACK):
        """Sends raw bytes after an nlmsghdr; returns (errno, extack, payloads)."""
        self.seq += 1
        self.s.send(struct.pack("=IHHII", 16 + len(body), nl_type, flags, self.seq, 0) + body)
        payloads = []
        while True:
            data = self.s.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                ln, ty, fl, seq, _ = struct.unpack_from("=IHHII", data, off)
                msg = data[off + 16: off + ln]
                off += (ln + 3) & ~3
                if seq != self.seq:
                    continue
                if ty == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", msg)[0]
                    # The request is echoed whole, or its header only when
                    # NLM_F_CAPPED (0x100) is set.
                    inner_len = 16 if fl & 0x100 else struct.unpack_from("=I", msg, 4)[0]
                    tlvs = self.attrs(b"\0" * 4 + msg[4 + ((inner_len + 3) & ~3):]) if fl & 0x200 else {}
                    return code, tlvs, payloads
                if ty == NLMSG_DONE:
                    return 0, {}, payloads
                payloads.append(msg)

    def request(self, nl_type, cmd, attrs=b"", version=1, flags=NLM_F_REQUEST | NLM_F_ACK):
        return self.raw(nl_type, struct.pack("=BBH", cmd, version, 0) + attrs, flags)

    def vpm(self, cmd, attrs=b"", flags=NLM_F_REQUEST | NLM_F_ACK):
        return self.request(self.family, U[cmd], attrs, flags=flags)


def expect(conn, what, cmd, attrs, want_errno, want_msg=None, want_miss=None):
    code, tlvs, _ = conn.vpm(cmd, attrs)
    msg = tlvs.get(NLMSGERR_ATTR_MSG, b"").rstrip(b"\0").decode()
    miss = tlvs.get(NLMSGERR_ATTR_MISS_TYPE)
    miss = struct.unpack("=I", miss)[0] if miss else None
    ok = code == want_errno and (want_msg is None or want_msg in msg) and (want_miss is None or miss == want_miss)
    print(f"{'ok ' if ok else 'BAD'} {what}: errno {errno.errorcode.get(code, code)} msg {msg!r} miss {miss}")
    if not ok:
        sys.exit(f"{what}: wanted {errno.errorcode.get(want_errno)} {want_msg!r} miss {want_miss}")


NLM_F_DUMP_INTR = 0x10


def dump_flags(conn, cmd, meanwhile):
    """Starts a dump of `cmd` on `conn` and, before reading anything, runs
    `meanwhile`; then reads the dump to its end.  The first dumpit call
    runs when the request is sent, so its messages predate `meanwhile`.
    Returns (the OR of every message's flags, the entries received)."""
    conn.seq += 1
    body = struct.pack("=BBH", U[cmd], 1, 0)
    conn.s.send(struct.pack("=IHHII", 16 + len(body), conn.family, NLM_F_REQUEST | NLM_F_DUMP, conn.seq, 0) + body)
    meanwhile()
    flags, entries = 0, []
    while True:
        data = conn.s.recv(1 << 20)
        off = 0
        while off + 16 <= len(data):
            ln, ty, fl, seq, _ = struct.unpack_from("=IHHII", data, off)
            msg = data[off + 16: off + ln]
            off += (ln + 3) & ~3
            if seq != conn.seq:
                continue
            flags |= fl
            if ty == NLMSG_ERROR:
                sys.exit(f"dump of {cmd} failed: {-struct.unpack_from('=i', msg)[0]}")
            if ty == NLMSG_DONE:
                return flags, entries
            entries.append(conn.attrs(msg))


def dump_consistency(c):
    """A change after a dump's last entry was sent, before the dump ends,
    must still flag the dump as interrupted (on NLMSG_DONE at the latest):
    else a reader (vpmctl save) keeps a state that never existed."""
    A, R = "VPM_A_MAPPING_", "VPM_A_RULE_"
    other = Conn()
    for cmd, setup in (("VPM_CMD_GET_MAPPING", []),
                       ("VPM_CMD_GET_RULE", [("VPM_CMD_ADD_RULE", u16(U[R + "PORT"], 9000) + string(U[R + "AID"], "d9000"))])):
        expect(c, "flush before the dump test", "VPM_CMD_FLUSH", b"", 0)
        expect(c, "the dump's one mapping", "VPM_CMD_ADD_MAPPING", string(U[A + "AID"], "d9000") + u16(U[A + "PORT"], 9000), 0)
        for op, attrs in setup:
            expect(c, "the dump's one rule", op, attrs, 0)

        def meanwhile():
            # A lower port: before the dump's cursor, so the dump cannot see it.
            code, _, _ = other.vpm("VPM_CMD_ADD_MAPPING", string(U[A + "AID"], "d100") + u16(U[A + "PORT"], 100))
            assert code == 0, f"add during the dump: {code}"

        flags, entries = dump_flags(c, cmd, meanwhile)
        ok = len(entries) == 1 and flags & NLM_F_DUMP_INTR
        print(f"{'ok ' if ok else 'BAD'} {cmd} dump with a change before its end: "
              f"{len(entries)} entries, flags {flags:#x}")
        if not ok:
            sys.exit(f"{cmd}: a change during the dump did not set NLM_F_DUMP_INTR")
    expect(c, "flush after the dump test", "VPM_CMD_FLUSH", b"", 0)


def main():
    c = Conn()
    A = "VPM_A_MAPPING_"
    aid, port = string(U[A + "AID"], "api"), u16(U[A + "PORT"], 9000)
    expect(c, "well-formed add", "VPM_CMD_ADD_MAPPING", aid + port, 0)
    expect(c, "duplicate add with another anon-port", "VPM_CMD_ADD_MAPPING",
           aid + port + u16(U[A + "ANON_PORT"], 65000), errno.EEXIST, "already hold")
    expect(c, "missing port", "VPM_CMD_ADD_MAPPING", aid, errno.EINVAL, "missing attribute: port", U[A + "PORT"])
    expect(c, "missing aid", "VPM_CMD_DEL_MAPPING", port, errno.EINVAL, "missing attribute: aid", U[A + "AID"])
    expect(c, "port 0 (policy min 1)", "VPM_CMD_ADD_MAPPING", aid + u16(U[A + "PORT"], 0),
           errno.ERANGE, "integer out of range")
    expect(c, "unknown attribute (strict)", "VPM_CMD_ADD_MAPPING", aid + port + u32(60, 1), errno.EINVAL)
    expect(c, "aid too long (policy max-len 31)", "VPM_CMD_ADD_MAPPING",
           string(U[A + "AID"], "x" * 32) + port, errno.EINVAL)
    expect(c, "aid with a space", "VPM_CMD_ADD_MAPPING", string(U[A + "AID"], "a b") + port,
           errno.EINVAL, "aid must be")
    expect(c, "u16 attribute of 4 bytes", "VPM_CMD_ADD_MAPPING", aid + u32(U[A + "PORT"], 9000), errno.EINVAL)
    expect(c, "proto 0", "VPM_CMD_ADD_MAPPING", aid + port + u32(U[A + "PROTO"], 0), errno.EINVAL, "proto")
    expect(c, "proto bit outside the mask", "VPM_CMD_ADD_MAPPING", aid + port + u32(U[A + "PROTO"], 4),
           errno.EINVAL, "reserved bit set")
    # Any non-zero wait is refused the same way, whatever its size.
    expect(c, "wait-ms over 60 s: waiting is the client's job", "VPM_CMD_ADD_MAPPING",
           aid + port + u32(U[A + "WAIT_MS"], 60001), errno.EOPNOTSUPP, "the client's job")
    expect(c, "wait-ms 0 (reserved, accepted)", "VPM_CMD_ADD_MAPPING", aid + port + u32(U[A + "WAIT_MS"], 0), 0)
    expect(c, "wait-ms: waiting is the client's job", "VPM_CMD_ADD_MAPPING",
           aid + port + u32(U[A + "WAIT_MS"], 1000), errno.EOPNOTSUPP, "the client's job")
    expect(c, "range half given", "VPM_CMD_SET_CONFIG", u16(U["VPM_A_CONFIG_RANGE_LO"], 100), errno.EINVAL, "together")
    expect(c, "reversed range", "VPM_CMD_SET_CONFIG",
           u16(U["VPM_A_CONFIG_RANGE_LO"], 200) + u16(U["VPM_A_CONFIG_RANGE_HI"], 100), errno.EINVAL, "above")
    dump_consistency(c)
    code, _, _ = c.request(c.family, 200)
    print(f"ok  unknown command: errno {errno.errorcode.get(code, code)}")
    if code != errno.EOPNOTSUPP:
        sys.exit("unknown command not refused with EOPNOTSUPP")

    # Fuzz: random commands, attribute types, lengths and bytes.
    rng = random.Random(int(os.environ.get("VPM_FUZZ_SEED", "1")))
    n = int(os.environ.get("VPM_FUZZ_COUNT", "3000"))
    for _ in range(n):
        body = b"".join(attr(rng.randrange(0, 12), rng.randbytes(rng.randrange(0, 40))) for _ in range(rng.randrange(0, 6)))
        if rng.random() < 0.2:
            body = rng.randbytes(rng.randrange(0, 64))
        c.raw(c.family, struct.pack("=BBH", rng.randrange(0, 10), 1, 0) + body,
              NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if rng.random() < 0.1 else 0))
    expect(c, f"family still answers after {n} fuzzed messages", "VPM_CMD_GET_STATUS", b"", 0)
    # The fuzz may well have sent flush or del itself: clean up with flush.
    expect(c, "flush after fuzzing", "VPM_CMD_FLUSH", b"", 0)


if __name__ == "__main__":
    main()
