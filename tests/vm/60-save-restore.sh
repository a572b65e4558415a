#!/usr/bin/env bash
# vpm-timeout: 240
# save -> flush -> restore reproduces the allocations (same anonymous
# ports) and the settings exactly; a conflicting restore changes nothing
# and names the entry in the way.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmr
make_cgroup vpm-r
load
r() { ip netns exec vpmr vpmctl "$@"; }

r config --range 21000-21999 --max-entries 500 >/dev/null
for i in $(seq 50); do echo "add --aid svc$i --port $((9000 + i % 3))"; done >$work/vpm-batch
echo "add --aid tcp-only --port 80 --proto tcp" >>$work/vpm-batch
# A hole in the range, so restore must reproduce ports, not just count.
echo "del --aid svc7 --port 9001" >>$work/vpm-batch
# Rules of every kind and a cgroup are part of the state too.
cat >>$work/vpm-batch <<'EOF2'
rule add --port 9000 --from 10.0.0.0/8 --aid svc3
rule add --port 9001 --aid svc1
rule add --port 9002 --from [fd00::/8]:5000 --aid svc2
rule add --port 9002 --from :6000 --aid svc5
add --aid svc4 --port 9001 --cgroup /vpm-r
EOF2
r batch $work/vpm-batch >/dev/null
r show --json >$work/vpm-before.json
r rule show --json >$work/vpm-rules-before.json
expect "the cgroup is in the saved state" grep -q '"cgroup":"/vpm-r"' $work/vpm-before.json
r config --json >$work/vpm-config-before.json
r save >$work/vpm-state.json

r flush
r config --range 20000-29999 --max-entries 65535 >/dev/null
r restore $work/vpm-state.json
expect "show --json is identical after restore" cmp -s $work/vpm-before.json <(r show --json)
expect "config is identical after restore" cmp -s $work/vpm-config-before.json <(r config --json)
expect "rules are identical after restore" cmp -s $work/vpm-rules-before.json <(r rule show --json)
subtest PASS round-trip

# Restoring onto the same state is a no-op.
r restore $work/vpm-state.json
expect "restore onto itself changes nothing" cmp -s $work/vpm-before.json <(r show --json)

# A conflicting live allocation: nothing is restored, the entry is named.
taken=$(json_at mappings 0 anon_port <"$work/vpm-state.json")
r flush
r add --aid intruder --port 1 --anon-port "$taken" >/dev/null
set +e
out=$(r restore $work/vpm-state.json 2>&1)
rc=$?
set -e
expect_eq "restore exit code on conflict" 1 "$rc"
expect "restore names the conflict (said: $out)" grep -q "anonymous port $taken is held by intruder port 1" <<<"$out"
expect_eq "allocations after a refused restore" 1 \
	"$(r show --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
expect_eq "range after a refused restore" 21000 "$(r config --json | json range_lo)"
subtest PASS conflict-all-or-nothing
