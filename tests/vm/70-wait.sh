#!/usr/bin/env bash
# vpm-timeout: 480
# Queued allocation (--wait): an add on an exhausted range waits for a
# release made by another process and gets the freed port; without a
# release it fails after its timeout; a signal ends the wait at once; a
# --wait line of a batch waits too; and since vpmctl waits (not the
# kernel, inside generic netlink's global lock), rmmod is not held off by
# a pending wait, which then ends with a clear error.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmw
load
w() { ip netns exec vpmw vpmctl "$@"; }
# waited PID FILE WHAT: the background vpmctl PID succeeded (else show FILE).
waited() {
	local rc=0
	wait "$1" || rc=$?
	expect_eq "exit code of $3 (said: $(cat "$2"))" 0 "$rc"
}

w config --range 31000-31000 >/dev/null
expect_eq "the only port" 31000 "$(w add --aid first --port 9000 --json | json anon_port)"

# gone_within SECONDS PATTERN: wait until no live process's command line
# matches PATTERN (an exiting one has none left); fails after SECONDS.
# This times the process's own end, not its reaping, which took 20-25 s
# more on the debug kernel under emulation on a loaded host.
gone_within() {
	local i
	for i in $(seq $(($1 * 10))); do
		pgrep -f -- "$2" >/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# Success: a waiter gets the port another process releases, woken by the
# release's event.  Its fallback tick is set longer than its wait, so a
# waiter that missed the event would try again only at its deadline, 60 s
# after it began; woken by the event, it ends within seconds.
VPMCTL_WAIT_TICK_MS=600000 ip netns exec vpmw vpmctl add --aid second --port 9000 --wait 60s --json >$work/vpm-waiter.json 2>&1 &
waiter=$!
sleep 3
expect "the waiter is still waiting" kill -0 $waiter
w del --aid first --port 9000
expect "the release's event woke the waiter (its deadline was 57 s away)" gone_within 30 "aid second --port"
waited $waiter $work/vpm-waiter.json "the waiter"
expect_eq "the waiter got the released port" 31000 "$(json anon_port <$work/vpm-waiter.json)"
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

# A --wait line of a batch waits like the command does.
printf 'add --aid sixth --port 9000 --wait 20s --json\n' | w batch - >$work/vpm-batch-wait.json 2>&1 &
waiter=$!
sleep 2
expect "the batch is still waiting" kill -0 $waiter
w del --aid second --port 9000
waited $waiter $work/vpm-batch-wait.json "the batch"
expect_eq "the batch's waiting line got the released port" 31000 "$(json anon_port <$work/vpm-batch-wait.json)"
subtest PASS wait-batch

# Unload: with the range full, a 60 s wait is pending while rmmod runs.
# rmmod must not wait for it: a request that slept in the kernel held
# generic netlink's lock, and rmmod returned only when the wait ended,
# 60 s after it began.  (rmmod alone takes 15 s and more on the debug
# kernel under emulation, so the bound is the wait's end, not a fixed
# 2 s.)  The waiter must then end within a few seconds, saying the module
# is gone.
begin=$(date +%s%N)
w add --aid seventh --port 9000 --wait 60s >$work/vpm-unload.out 2>&1 &
waiter=$!
sleep 2
expect "the seventh waiter is waiting" kill -0 $waiter
rmmod_ms=$(timed_ms rmmod vpm)
since=$((($(date +%s%N) - begin) / 1000000))
expect "rmmod returned before the pending wait would have ended (rmmod ${rmmod_ms} ms, ${since} ms after the wait began)" \
	test "$since" -lt 50000
expect "vpm is unloaded" sh -c '! lsmod | grep -q "^vpm "'
expect "the waiter ended within 10 s of rmmod" gone_within 10 "--aid seventh"
set +e
wait $waiter
rc=$?
set -e
expect_eq "exit code of the waiter after rmmod" 3 "$rc"
expect "the waiter says the module is gone (said: $(cat $work/vpm-unload.out))" \
	grep -q "vpm kernel module not loaded" $work/vpm-unload.out
load
expect "vpm works again after the reload" w status >/dev/null
subtest PASS wait-unload

# Signal (last: the range must be full again after the reload above).
w config --range 31000-31000 >/dev/null
w add --aid refill --port 9000 >/dev/null
# SIGTERM ends a 60 s wait promptly, and vpm carries on normally.
# (Background jobs of a script ignore SIGINT, so TERM stands in for Ctrl-C.)
w add --aid fourth --port 9000 --wait 60s >$work/vpm-fourth.out 2>&1 &
waiter=$!
sleep 2
expect "the fourth waiter is waiting" pgrep -f -- "--aid fourth" >/dev/null
pkill -TERM -f -- "--aid fourth"
expect "the interrupted waiter ended within 5 s" gone_within 5 "--aid fourth"
rc=0
wait $waiter || rc=$?
expect_eq "the waiter died of the signal (said: $(cat $work/vpm-fourth.out))" 143 "$rc"
w del --aid refill --port 9000
expect_eq "the range works after the interrupted wait" 31000 \
	"$(w add --aid fifth --port 9000 --json | json anon_port)"
subtest PASS wait-signal

# The wait is bounded (60 s) and vpmctl says so.
expect "vpmctl refuses --wait over 60s" sh -c '! vpmctl add --aid x --port 1 --wait 61s 2>/dev/null'
