#!/usr/bin/env bash
# vpm-timeout: 420
# vpm-timeout-long: 1500
# The in-kernel micro-benchmark (vpm_bench.rs, built in by VPM_BENCH=1):
# vpm's hook run N times on a prepared skb, in nanoseconds per packet,
# for hits (one pinned flow, 4,096 flows, a new flow every packet, the
# reply direction), a miss, both families and both protocols; the pieces
# of the hit path one by one; and the hit path with 1, 256, 4,096 and
# (nearly) 65,535 allocations (the short form: 1 and 4,096).  Prints "VPM-BENCH" records (case "micro",
# unit ns) for tests/bench/report.py; asserts nothing about speed.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

trigger=/sys/kernel/debug/vpm/bench
[ -e "$trigger" ] || {
	echo "no $trigger: vpm.ko was not built with VPM_BENCH=1 (make bench does that)" >&2
	exit 1
}
iters=$(pick 5000 20000)
reps=$(pick 5 9)
flows=4096

# vpmmicro holds one allocation; vpmmicro1 too, and keeps it while
# vpmmicro's table grows: the scale runs alternate between the two, so
# that drift in the emulator hits both sizes alike.
fresh_netns vpmmicro vpmmicro1
for n in vpmmicro vpmmicro1; do
	ip -n $n link set lo up
	ip -n $n addr add 10.9.0.1/32 dev lo
	ip -n $n addr add fd09::1/128 dev lo nodad
	ip netns exec $n vpmctl add --aid bench --port 9000 >/dev/null
	ip netns exec $n vpmctl rule add --port 9000 --aid bench >/dev/null
done
NS=/run/netns/vpmmicro
m() { ip netns exec vpmmicro vpmctl "$@"; }
entries=1
# Added to the kernel's repetition numbers, so that records of one
# metric and table size from several commands stay distinct.
rep0=0

# bench KIND PKT [FLOWS]: run one command in the namespace, print records.
bench() {
	local out name rep ns
	# nsenter, not ip netns exec: that one remounts /sys, hiding debugfs.
	out=$(nsenter --net="$NS" sh -c "echo '$1 $2 $iters $reps ${3:-}' >$trigger && cat $trigger") || {
		echo "bench '$*' failed" >&2
		return 1
	}
	[ -n "$out" ] || { echo "bench '$*': no result" >&2; return 1; }
	while read -r name rep ns; do
		printf 'VPM-BENCH {"case":"micro","metric":"%s","entries":%d,"rep":%d,"value":%s,"unit":"ns"}\n' \
			"$name" "$entries" "$((rep0 + rep))" "$ns"
	done <<<"$out"
	echo "${out%% *} at $entries entries: $(echo "$out" | awk '{print $3}' | sort -n | tr '\n' ' ')ns" >&2
}

echo "VPM-BENCH-META {\"form\":\"$(pick short long)\",\"script\":\"40-micro\",\"iters\":$iters,\"reps\":$reps}"

# The hook, every path, at one allocation (the short form: each path
# once, in one family or protocol).
for pkt in udp4 tcp4 udp6 tcp6; do
	bench hit $pkt
	case $pkt in udp4) ;; *) long || continue ;; esac
	bench miss $pkt
done
bench flows udp4 $flows
bench new udp4
bench out tcp4
if long; then
	bench flows tcp4 $flows
	bench new tcp4
	bench out tcp6
fi
subtest PASS hook-paths

# Where the hit path's time goes.
for part in skb parse local views flow count writable clock rcu; do
	bench $part udp4
	if long; then bench $part udp6; fi
done
subtest PASS breakdown

# The hit path as the table grows: more instances behind the same port
# (each its own anonymous port, its own reply view), and 4,096 flows.
m config --range 1-65535 --max-entries 65535 >/dev/null
have=1
for want in $(pick 4096 "256 4096 65535"); do
	: >"$work/batch"
	while [ $have -lt $want ]; do
		have=$((have + 1))
		echo "add --aid b$have --port 9000"
	done >"$work/batch"
	# The allocator cannot hand out the fixed port itself: the last
	# allocations may fail; what the table holds is what is reported.
	m batch "$work/batch" >/dev/null 2>"$work/batch.err" || true
	entries=$(m config --json | json entries)
	[ "$entries" -ge $((want - 1)) ] || {
		echo "only $entries allocations of $want:" >&2
		tail -n 3 "$work/batch.err" >&2
		exit 1
	}
	# Alternating which size goes first; report.py compares lower
	# quartiles (T6, G2), which the emulator's bursts do not move.
	for round in 1 2 3; do
		rep0=$((want * 10 + round * 100))
		if [ $((round % 2)) = 0 ]; then NS=/run/netns/vpmmicro1 entries=1 bench hit udp4; fi
		bench hit udp4
		if [ $((round % 2)) = 1 ]; then NS=/run/netns/vpmmicro1 entries=1 bench hit udp4; fi
	done
	rep0=0
	if long; then
		bench hit tcp6
		bench flows udp4 $flows
	fi
done
subtest PASS scale
m flush >/dev/null
