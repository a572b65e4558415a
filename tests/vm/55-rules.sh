#!/usr/bin/env bash
# vpm-timeout: 300
# Source rules through vpmctl: they need an allocation, ties and bad
# prefixes are refused with the kernel's message, the per-port limit
# holds, deleting an allocation takes its rules along, and the dump
# lists them in order.  (What rules do to packets: 92-translate.)
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmru
load
r() { ip netns exec vpmru vpmctl "$@"; }

expect_fail 1 "no allocation for this AID and port: add it (vpmctl add) before its rules" \
	r rule add --port 9000 --from 10.0.0.0/8 --aid a
r add --aid a --port 9000 >/dev/null
r add --aid b --port 9000 >/dev/null
r rule add --port 9000 --from 10.0.0.0/8 --aid a
r rule add --port 9000 --from 10.1.0.0/16 --aid b
r rule add --port 9000 --from 10.1.0.0/16:5000 --aid a
r rule add --port 9000 --from '[2001:db8::/32]:5000' --aid b
r rule add --port 9000 --from :7000 --aid b
r rule add --port 9000 --aid a
subtest PASS add

# A tie (the same source, whatever the AID) is refused and names the owner.
expect_fail 1 "a rule for this source exists (AID a); delete it" \
	r rule add --port 9000 --from 10.0.0.0/8 --aid b
expect_fail 1 "a rule for this source exists (AID a); delete it" \
	r rule add --port 9000 --aid b
expect_fail 1 "File exists" r rule add --port 9000 --from 10.0.0.0/8 --aid a
# Host bits, over-long prefixes.
expect_fail 1 "addr has bits set beyond prefix-len" \
	r rule add --port 9000 --from 192.168.1.70/24 --aid a
expect_fail 1 "prefix-len 33 is longer than the address (32 bits)" \
	r rule add --port 9000 --from 10.0.0.0/33 --aid a
expect_fail 2 "is not a source" r rule add --port 9000 --from 10.0.0.300 --aid a
expect_fail 1 "no rule with this port and source" r rule del --port 9000 --from 10.9.0.0/16
subtest PASS refused

r rule show --json >$work/vpm-rules.json
python3 - $work/vpm-rules.json <<'PY'
import json, sys
rules = json.load(open(sys.argv[1]))
got = [(r["port"], r.get("addr"), r.get("prefix_len"), r.get("src_port"), r["aid"]) for r in rules]
want = [
    (9000, None, None, None, "a"),
    (9000, None, None, 7000, "b"),
    (9000, "10.0.0.0", 8, None, "a"),
    (9000, "10.1.0.0", 16, None, "b"),
    (9000, "10.1.0.0", 16, 5000, "a"),
    (9000, "2001:db8::", 32, 5000, "b"),
]
assert got == want, f"rules {got}\n wanted {want}"
PY
expect "human listing shows the default as *" sh -c "ip netns exec vpmru vpmctl rule show | grep -qE '^ 9000 \\*  +a\$'"
expect_eq "rules in config" 6 "$(r config --json | json rules)"
subtest PASS dump

# Deleting an allocation removes the rules that point to it.
r del --aid b --port 9000
expect_eq "rules left after deleting b" "a a a" "$(r rule show --json | python3 -c '
import json, sys; print(" ".join(r["aid"] for r in json.load(sys.stdin)))')"
r rule del --port 9000
r rule del --port 9000 --from 10.0.0.0/8
r rule del --port 9000 --from 10.1.0.0/16:5000
expect_eq "rules after deleting them all" 0 "$(r config --json | json rules)"
subtest PASS cascade

# At most 256 rules on one port; another port still has room.
for i in $(seq 0 255); do echo "rule add --port 9000 --from 10.$i.0.0/16 --aid a"; done >$work/vpm-batch
r batch $work/vpm-batch
expect_fail 1 "this port already has 256 rules" r rule add --port 9000 --from 11.0.0.0/8 --aid a
r add --aid a --port 9001 >/dev/null
r rule add --port 9001 --from 11.0.0.0/8 --aid a
subtest PASS per-port-limit

# flush removes rules too; writes need CAP_NET_ADMIN.
r flush
expect_eq "rules after flush" 0 "$(r config --json | json rules)"
nobody_in() { ip netns exec vpmru setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all "$@" >/dev/null; }
expect_fail 1 "Operation not permitted" nobody_in vpmctl rule add --port 1 --aid a
expect "rule show works unprivileged" nobody_in vpmctl rule show
subtest PASS flush-and-privileges
