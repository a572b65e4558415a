#!/usr/bin/env bash
# vpm-timeout: 180
# 10,000 allocations through one vpmctl invocation (a batch file) finish in
# under 10 s in the TCG VM, on the lean kernel: the debug kernel's
# per-allocation instrumentation (kmemleak, SLUB debugging, KFENCE)
# multiplies the cost of every request and says nothing about vpm's.
# The debug kernel's figure for the same batch is printed by
# tests/vm/50-mappings.sh in its long form (make stress).
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmbench
b() { ip netns exec vpmbench vpmctl "$@"; }

for i in $(seq 10000); do echo "add --aid big$i --port 443"; done >$work/vpm-bench
ms=$(timed_ms b batch $work/vpm-bench)
echo "10000 allocations in one batch: ${ms} ms"
expect_eq "entries after the batch" 10000 "$(b config --json | json entries)"
expect "10000 allocations in under 10 s (took ${ms} ms)" test "$ms" -lt 10000
subtest PASS "batch-10000 (${ms}ms)"
