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
