#!/usr/bin/env bash
# vpm-timeout: 240
# Queued allocation (--wait): an add on an exhausted range waits for a
# release made by another process and gets the freed port; without a
# release it fails after its timeout; a signal ends the wait at once.
. "$VPM_ROOT/tests/vm/lib.sh"

fresh_netns vpmw
trap 'ip netns del vpmw 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT
load
w() { ip netns exec vpmw vpmctl "$@"; }

w config --range 31000-31000 >/dev/null
expect_eq "the only port" 31000 "$(w add --aid first --port 9000 --json | json anon_port)"

# Success: a waiter gets the port another process releases.
w add --aid second --port 9000 --wait 20s --json >/tmp/vpm-waiter.json 2>&1 &
waiter=$!
sleep 3
expect "the waiter is still waiting" kill -0 $waiter
w del --aid first --port 9000
wait $waiter
expect_eq "the waiter got the released port" 31000 "$(json anon_port </tmp/vpm-waiter.json)"
subtest PASS wait-success

# Timeout: nobody releases; the add fails after about its wait.
start=$(date +%s%N)
set +e
out=$(w add --aid third --port 9000 --wait 2s 2>&1)
rc=$?
set -e
ms=$((($(date +%s%N) - start) / 1000000))
expect_eq "exit code after the timeout" 1 "$rc"
expect "timeout message (said: $out)" grep -q "Connection timed out: waited 2000 ms and no allocation was released" <<<"$out"
expect "waited at least 2 s (${ms} ms)" test "$ms" -ge 2000
subtest PASS wait-timeout

# Signal: SIGTERM ends a 60 s wait promptly, and vpm carries on normally.
# (Background jobs of a script ignore SIGINT, so TERM stands in for Ctrl-C.)
w add --aid fourth --port 9000 --wait 60s >/dev/null 2>&1 &
waiter=$!
sleep 2
expect "the fourth waiter is waiting" pgrep -f -- "--aid fourth" >/dev/null
start=$(date +%s%N)
pkill -TERM -f -- "--aid fourth"
wait $waiter || true
ms=$((($(date +%s%N) - start) / 1000000))
expect "the interrupted waiter ended within 5 s (${ms} ms)" test "$ms" -lt 5000
w del --aid second --port 9000
expect_eq "the range works after the interrupted wait" 31000 \
	"$(w add --aid fifth --port 9000 --json | json anon_port)"
subtest PASS wait-signal

# The wait is bounded by the spec (60 s) and vpmctl says so.
expect "vpmctl refuses --wait over 60s" sh -c '! vpmctl add --aid x --port 1 --wait 61s 2>/dev/null'
