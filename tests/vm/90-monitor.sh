#!/usr/bin/env bash
# vpm-timeout: 180
# vpm-timeout-long: 240
# vpmctl monitor sees every event of a scripted sequence, in order, and
# only those of its own namespace.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmev vpmother
load
e() { ip netns exec vpmev vpmctl "$@"; }

ip netns exec vpmev vpmctl monitor --json >$work/vpm-events.json 2>&1 &
sleep 2 # let it subscribe

e add --aid a --port 9000 --proto tcp >/dev/null
e add --aid a --port 9000 --proto tcp >/dev/null # no change: no event
e add --aid a --port 9000 --proto both >/dev/null # widened: event
e add --aid b --port 9000 >/dev/null
e config --range 20000-20999 >/dev/null
e rule add --port 9000 --from 10.0.0.0/8:5000 --aid b
e rule del --port 9000 --from 10.0.0.0/8:5000
e rule add --port 9000 --from 192.168.0.0/16 --aid a
e rule add --port 9000 --aid a # a is the port's default
e del --aid a --port 9000 # takes both rules with it: a rule-del event each, first
e flush
ip netns exec vpmother vpmctl add --aid elsewhere --port 1 >/dev/null
sleep 2

python3 - $work/vpm-events.json <<'PY'
import json, sys
got = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
kinds = [(e["event"], e.get("mapping", e.get("rule", {})).get("aid"), tuple(e.get("mapping", {}).get("proto", [])))
         for e in got]
want = [("new", "a", ("tcp",)), ("new", "a", ("tcp", "udp")), ("new", "b", ("tcp", "udp")),
        ("config", None, ()), ("rule-new", "b", ()), ("rule-del", "b", ()),
        ("rule-new", "a", ()), ("rule-new", "a", ()), ("rule-del", "a", ()), ("rule-del", "a", ()),
        ("del", "a", ("tcp", "udp")), ("flush", None, ())]
assert kinds == want, f"events {kinds}\n  wanted {want}"
assert got[3]["config"]["range_hi"] == 20999, got[3]
assert got[0]["mapping"]["anon_port"] == got[10]["mapping"]["anon_port"], "del names the port new gave"
assert got[4]["rule"] == {"port": 9000, "addr": "10.0.0.0", "prefix_len": 8, "src_port": 5000, "aid": "b"}, got[4]
cascade = sorted((json.dumps(e["rule"], sort_keys=True) for e in got[8:10]))
added = sorted((json.dumps(e["rule"], sort_keys=True) for e in got[6:8]))
assert cascade == added, f"the del's rule-del events {cascade}\n  name the rules added {added}"
PY
subtest PASS event-sequence

# vpmctl's netlink socket takes unicast messages from the kernel only.
# The kernel already refuses unicast from unprivileged senders to any
# netlink port (EPERM); vpmctl's socket, connected to the kernel, refuses
# the others too (ECONNREFUSED), so no other process of the namespace can
# pass a forged message for the kernel's answer (to a dump that `save`
# writes out and `restore` applies).  The monitor goes on undisturbed.  A
# socket that is not connected, the control, takes the same message.
ip netns exec vpmev vpmctl monitor --json >$work/vpm-forged.json 2>&1 &
victim=$!
ip netns exec vpmev python3 - "$victim" <<'PY'
import os, socket, struct, sys, time
victim = int(sys.argv[1])

def generic_netlink_ports():
    inodes = {os.stat(f"/proc/{victim}/fd/{fd}").st_ino for fd in os.listdir(f"/proc/{victim}/fd")
              if os.readlink(f"/proc/{victim}/fd/{fd}").startswith("socket:")}
    lines = open("/proc/net/netlink").read().split("\n")[1:]
    return [int(l.split()[2]) for l in lines if l.split() and int(l.split()[1]) == 16
            and int(l.split()[-1]) in inodes]

# Until the monitor has its socket (and has subscribed: it prints nothing,
# so give it a moment more).
for _ in range(100):
    ports = generic_netlink_ports()
    if ports:
        break
    time.sleep(0.1)
assert ports, f"no generic netlink socket of pid {victim} within 10 s"
time.sleep(1)
# An NLMSG_DONE for sequence 1: what ends a dump.
forged = struct.pack("=IHHIIi", 20, 3, 0x2, 1, 0, 0)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
for port in ports:
    try:
        s.sendto(forged, (port, 0))
        sys.exit(f"a forged message from root reached vpmctl's socket {port}")
    except ConnectionRefusedError:
        pass
control = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
control.bind((0, 0))
s.sendto(forged, (control.getsockname()[0], 0))
assert control.recv(64) == forged, "the control socket got the message"
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
try:
    s.sendto(forged, (control.getsockname()[0], 0))
    sys.exit("an unprivileged sender reached a netlink port")
except PermissionError:
    pass
PY
e add --aid forged --port 9100 >/dev/null
sleep 1
kill "$victim"
wait "$victim" 2>/dev/null || true
python3 - $work/vpm-forged.json <<'PY'
import json, sys
got = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
assert [(e["event"], e["mapping"]["aid"]) for e in got] == [("new", "forged")], got
PY
e del --aid forged --port 9100
subtest PASS forged-unicast-refused

# A monitor that falls behind is told so, and goes on: 600 events (1,500
# in the long form) while it is stopped are more than its socket holds
# (the default 208 KiB receive buffer; an event, which netlink_broadcast
# trims to its size, still counts about 700 bytes against it, so about 300
# fit), so the kernel drops some (ENOBUFS), and the monitor must print
# "lost" and then the events that follow, instead of quitting on the
# error.
e config --range 20000-29999 >/dev/null
ip netns exec vpmev vpmctl monitor >$work/vpm-lag.txt 2>&1 &
lag=$!
sleep 2
kill -STOP $lag
seq "$(pick 600 1500)" | sed 's/.*/add --aid lag& --port 7000/' | e batch - >/dev/null
kill -CONT $lag
sleep 1
e add --aid after --port 7001 >/dev/null
sleep 2
expect "the monitor said events were lost ($(grep -c . $work/vpm-lag.txt) lines)" grep -q "^lost: " $work/vpm-lag.txt
expect "the monitor still runs" kill -0 $lag
expect "it printed the event after the loss" grep -q "^new after 7001 " $work/vpm-lag.txt
e flush >/dev/null
subtest PASS monitor-survives-overrun
