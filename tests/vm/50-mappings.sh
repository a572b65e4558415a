#!/usr/bin/env bash
# vpm-timeout: 300
# vpm-timeout-long: 600
# The allocation table through vpmctl: idempotent add, unique anonymous
# ports, exhaustion, delete, limits, multi-part dumps, namespace isolation,
# privilege, and teardown of populated tables (a namespace's, the
# module's).  The short form fills a 2,000-port range in one batch and
# dumps 2,000 entries; the long form 10,000 and 20,000.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmm
load
vpmctl flush
vpmctl config --range 20000-29999 --max-entries 65535 >/dev/null

a1=$(vpmctl add --aid a --port 9000 --json | json anon_port)
a2=$(vpmctl add --aid a --port 9000 --json | json anon_port)
b1=$(vpmctl add --aid b --port 9000 --json | json anon_port)
expect_eq "same AID and port, same anonymous port" "$a1" "$a2"
expect "another AID gets another port ($a1 vs $b1)" test "$a1" != "$b1"
expect "anonymous port in the default range" test "$a1" -ge 20000 -a "$a1" -le 29999
subtest PASS idempotent-add

# An explicit anonymous port that another pair holds is refused.
expect_fail 1 "anon-port is allocated to another AID or port" \
	vpmctl add --aid c --port 9000 --anon-port "$a1"
expect_fail 1 "already hold anonymous port $a1" \
	vpmctl add --aid a --port 9000 --anon-port "$b1"

# 1,000 AIDs: all allocations distinct and in range; the dump (several
# netlink messages) returns every one of them.
vpmctl flush
for i in $(seq 1000); do echo "add --aid app$i --port 8080"; done >$work/vpm-batch
vpmctl batch $work/vpm-batch >/dev/null
vpmctl show --json | python3 -c '
import json, sys
maps = json.load(sys.stdin)
assert len(maps) == 1000, f"dump returned {len(maps)} of 1000"
ports = [m["anon_port"] for m in maps]
assert len(set(ports)) == 1000, "anonymous ports not unique"
assert all(20000 <= p <= 29999 for p in ports), "port outside the range"
assert sorted(m["aid"] for m in maps) == sorted(f"app{i}" for i in range(1, 1001))
'
expect_eq "entries in config" 1000 "$(vpmctl config --json | json entries)"
subtest PASS unique-1000

# N allocations through one batch fill a whole N-port range (2,000; the
# long form: 10,000, the default range).
n=$(pick 2000 10000)
range="20000-$((20000 + n - 1))"
vpmctl flush
vpmctl config --range "$range" >/dev/null
for i in $(seq "$n"); do echo "add --aid big$i --port 443"; done >$work/vpm-batch
ms=$(timed_ms vpmctl batch $work/vpm-batch)
echo "$n allocations in one batch: ${ms} ms"
expect_eq "entries after the big batch" "$n" "$(vpmctl config --json | json entries)"
expect_eq "allocations dumped" "$n" "$(vpmctl show --json | json_at '#')"
expect_fail 1 "no free port in range $range ($n in use)" vpmctl add --aid one-too-many --port 443
subtest PASS "batch-$n (${ms}ms)"

# N allocations over 50 fixed ports (2,000; the long form: 20,000): the
# dump is complete, ordered by port then AID, with unique ports.  One
# dump batch fills at most one reply buffer (vpmctl reads 32 KiB at a
# time, and the kernel sizes dump batches to the reader's buffer) with
# 88-byte entries, so at most about 370 entries: 2,000 take at least 6
# batches, and the dump resumes from its (port, AID) cursor at least 5
# times, mid-port (40 entries per port).
n=$(pick 2000 20000)
vpmctl flush
vpmctl config --range 10000-39999 >/dev/null
for i in $(seq "$n"); do echo "add --aid d$i --port $((1000 + i % 50))"; done >$work/vpm-batch
vpmctl batch $work/vpm-batch >/dev/null
vpmctl show --json | python3 -c '
import json, sys
n = int(sys.argv[1])
maps = json.load(sys.stdin)
assert len(maps) == n, f"dump returned {len(maps)} of {n}"
keys = [(m["port"], m["aid"]) for m in maps]
assert keys == sorted(keys), "dump not ordered by port, then AID"
assert len(set(keys)) == n, "an entry appears twice"
assert keys == sorted((1000 + i % 50, f"d{i}") for i in range(1, n + 1)), "entries differ"
assert len({m["anon_port"] for m in maps}) == n, "anonymous ports not unique"
' "$n"
subtest PASS "dump-$n"
vpmctl flush
vpmctl config --range 20000-29999 >/dev/null
for i in $(seq 1000); do echo "add --aid app$i --port 8080"; done >$work/vpm-batch
vpmctl batch $work/vpm-batch >/dev/null

# A batch stops at its first failing line and names it.
printf 'add --aid ok1 --port 5000\ndel --aid nosuch --port 5000\nadd --aid ok2 --port 5000\n' >$work/vpm-batch
expect_fail 1 "batch line 2: del failed" vpmctl batch $work/vpm-batch
expect "line 3 of the failed batch did not run" sh -c '! vpmctl show | grep -q ok2'
vpmctl del --aid ok1 --port 5000
# The same when the failing line sits among adds that go out together in
# one write: what came after it is undone, what came before stays.
{
	for i in 1 2 3; do echo "add --aid w$i --port 5001"; done
	echo "add --aid w-bad --port 5001 --anon-port 1"
	for i in 5 6 7; do echo "add --aid w$i --port 5001"; done
	echo "add --aid w1 --port 5001"
} >$work/vpm-batch
expect_fail 1 "batch line 4: add failed" vpmctl batch $work/vpm-batch
expect_eq "allocations left by the failed batch" "w1 w2 w3" \
	"$(vpmctl show --json | python3 -c 'import json,sys; print(" ".join(m["aid"] for m in json.load(sys.stdin) if m["port"] == 5001))')"
for i in 1 2 3; do vpmctl del --aid w$i --port 5001; done
subtest PASS batch-stops-at-first-failure

# Limits and range changes are all-or-nothing.
expect_fail 1 "max-entries is below the 1000 allocations (or rules) held" vpmctl config --max-entries 10
expect_fail 1 "allocations lie outside the new range" vpmctl config --range 30000-30010
vpmctl flush

# Exhaustion names the range and its use.
vpmctl config --range 30000-30004 >/dev/null
for i in 1 2 3 4 5; do vpmctl add --aid "x$i" --port 7000 >/dev/null; done
expect_fail 1 "no free port in range 30000-30004 (5 in use)" vpmctl add --aid x6 --port 7000
vpmctl del --aid x3 --port 7000
expect_eq "a released port is reused" 30002 "$(vpmctl add --aid x6 --port 7000 --json | json anon_port)"
subtest PASS exhaustion

# Deleting what does not exist.
expect_fail 1 "no allocation for this AID and port" vpmctl del --aid nosuch --port 7000
expect_fail 1 "No such file or directory" vpmctl del --aid nosuch --port 7000

# Namespaces do not see each other's allocations.
ip netns exec vpmm vpmctl add --aid inner --port 9000 >/dev/null
expect_eq "allocations in the child netns" 1 "$(ip netns exec vpmm vpmctl show --json | json_at '#')"
expect "init_net does not see the child's allocation" \
	sh -c '! vpmctl show --json | grep -q inner'
expect_eq "child netns has the default range" 20000 "$(ip netns exec vpmm vpmctl config --json | json range_lo)"
subtest PASS netns-isolation

# Writes need CAP_NET_ADMIN; reads do not.
nobody() { setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all "$@"; }
expect_fail 1 "Operation not permitted" nobody vpmctl add --aid z --port 9000
expect_fail 1 "needs CAP_NET_ADMIN" nobody vpmctl flush
expect "show works unprivileged" nobody vpmctl show >/dev/null
subtest PASS privileges

# Populated tables go with their namespace and with the module: vpmm
# dies holding an allocation while vpm stays loaded, then vpm is unloaded
# holding init_net's (the harness's kmemleak scan at the end sees what
# either leaked).  A reloaded vpm starts empty.
vpmctl flush
vpmctl config --range 20000-29999 >/dev/null
vpmctl add --aid leftover --port 9000 >/dev/null
ip netns exec vpmm vpmctl add --aid leftover --port 9000 >/dev/null
ip netns del vpmm
rmmod vpm
load
expect_eq "allocations after a reload" 0 "$(vpmctl show --json | json_at '#')"
subtest PASS populated-teardown
