#!/usr/bin/env bash
# vpm-timeout: 240
# vpm-timeout-long: 600
# Churn under load (issue 11): one process adds and deletes allocations
# and rules as fast as it can (tests/vm/lib/stress.py churn) while
# traffic flows through a stable allocation on another fixed port, for 5
# s (60 s in the long form).  The stable flows lose nothing (TCP transfers
# hash-checked, UDP echoes compared, no checksum error); connections to
# the churned ports are refused cleanly whatever state they meet; every
# churn command succeeds.  Then a flood of spoofed SYNs while the control
# plane is timed and slab memory sampled.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c() { ip netns exec vpmcc "$@"; }
s() { ip netns exec vpmcs "$@"; }
stress=(python3 "$VPM_ROOT/tests/vm/lib/stress.py")

load
fresh_netns vpmcc vpmcs
ip link add veth-cc netns vpmcc type veth peer name veth-cs netns vpmcs
ip -n vpmcc addr add 10.207.1.1/24 dev veth-cc
ip -n vpmcs addr add 10.207.1.2/24 dev veth-cs
for n in vpmcc vpmcs; do ip -n $n link set lo up; done
ip -n vpmcc link set veth-cc up
ip -n vpmcs link set veth-cs up

S=$(s vpmctl add --aid stable --port 9000 --json | json anon_port)
s vpmctl rule add --port 9000 --aid stable
s python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" serve stable "$S" >"$work/srv" 2>&1 &
for _ in $(seq 100); do grep -q ready "$work/srv" && break; sleep 0.1; done

secs=$(pick 5 60)
c "${stress[@]}" traffic 10.207.1.2 9000 "$secs" stable >"$work/traffic" 2>&1 &
traffic=$!
c "${stress[@]}" refused 10.207.1.2 9200 "$secs" >"$work/refused" 2>&1 &
refused=$!
s "${stress[@]}" churn "$secs" 9200 16
expect "stable traffic through the churn: $(cat "$work/traffic")" wait $traffic
expect "churned ports refused cleanly: $(cat "$work/refused")" wait $refused
grep -h '^VPM-REL ' "$work/traffic" "$work/refused"
for n in vpmcc vpmcs; do
	expect_eq "checksum errors in $n" 0 "$(ip netns exec $n nstat -asz TcpInCsumErrors UdpInCsumErrors | awk 'NR > 1 { s += $2 } END { print s + 0 }')"
done
expect_eq "nothing was dropped" 0 "$(status_field vpmcs pkts_dropped)"
subtest PASS churn-under-traffic

# A flood of SYNs from spoofed sources (more than the flow table's 8,192
# slots) while the control plane is timed and slab memory sampled: every
# request answers in time, the table holds at most its slots (flows are
# never allocated), and the stable allocation still serves new clients.
# In the long form only: make check times the control plane during
# 93-real-host's flood.
long || exit 0
ip -n vpmcs route add 10.250.0.0/16 via 10.207.1.1
s "${stress[@]}" responsive "$work/flood-done" 10 >"$work/responsive" 2>&1 &
resp=$!
c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" synflood 10.250 10.207.1.2 9000 "$(pick 9000 60000)" >/dev/null
touch "$work/flood-done"
expect "the control plane answered during the flood: $(cat "$work/responsive")" wait $resp
grep -h '^VPM-REL ' "$work/responsive"
expect "the flow table holds at most its 8,192 slots" test "$(status_field vpmcs flows_active)" -le 8192
expect "the flood churned the flow table" test "$(status_field vpmcs flows_evicted)" -gt 0
expect_eq "the stable allocation serves a new client after the flood" stable \
	"$(c python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" asks 9000 tcp/10.207.1.2)"
subtest PASS flood
