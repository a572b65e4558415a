#!/usr/bin/env bash
# vpm-timeout: 600
# vpm-timeout-long: 2400
# The packet path side by side (issue 14): raw measurements, one
# "VPM-BENCH {...}" line each (protocol: tests/bench/lib.sh); the host-side
# report takes medians and asserts the ratios, this script asserts nothing
# about speed.  It fails when a measurement cannot be taken (nothing
# received, packets lost for another reason than CPU, iperf3 or the load
# generator failing).
#
#   +-- vpmbc (client) ---+          +-- vpmbs (server: vpm's hooks) ----+
#   | veth-c1 10.210.1.1  |----------| veth-s1 10.210.1.2 fd00:210:1::2  |
#   |   fd00:210:1::1     |          |   UDP sockets on 9000 and 20000   |
#   |   pktgen, iperf3 -c |          |   per case: iperf3 -s, loadgen    |
#   |   vpm-loadgen       |          |   serve on the case's TCP port    |
#   | veth-c2 10.210.2.1  |---+      +-----------------------------------+
#   +---------------------+   |      +-- vpmbs2 (scale phase) -----------+
#                             +------| veth-s2 10.210.2.2, N allocations |
#                                    +-----------------------------------+
#
# Cases (traffic always to fixed port 9000 from the client):
#   A   vpm not loaded (rmmod); the packet reaches the socket on 9000;
#   R1  vpm not loaded; nftables stateless rewrite, 9000 -> 20000 in
#       prerouting (udp/tcp dport set) and 20000 -> 9000 on output (sport
#       set); no ct or nat expression, so conntrack is never loaded in the
#       namespace;
#   R2  vpm not loaded; nftables `redirect to :20000` (conntrack NAT,
#       reverse by conntrack);
#   B   vpm loaded, empty table;
#   C   vpm loaded, one allocation and its default rule on port 9100: the
#       traffic's port misses the table (recorded with entries 0, like A,
#       B, R1 and R2: entries counts the allocations of case D only);
#   D   vpm loaded, allocation d 9000 -> 20000 with a default rule: every
#       packet hits, is rewritten to 20000 and pinned (flow table); replies
#       are rewritten back.  entries = allocations in the table.
# R1 and R2 run without vpm: they are what a user would run instead of it.
# The order in a repetition is A R1 R2 B C D (one rmmod and one insmod per
# repetition); repetitions interleave, so drift hits every case alike.
#
# Metrics:
#   udp_pps_1flow  pktgen (in-kernel, in vpmbc) sends 60-byte UDP frames
#                  with real checksums (flag UDPCSUM, veth-c1's tx checksum
#                  offload off so pktgen computes them in software; veth-s1's
#                  rx offload off so the receiving stack verifies them),
#                  burst 1, to the MAC of veth-s1.  veth delivers each frame
#                  in pktgen's own softirq, so the rate is that of the whole
#                  path: pktgen + veth + the server's receive path with the
#                  case's hooks.  Received = the server namespace's UDP MIB
#                  (InDatagrams + RcvbufErrors: the sockets never read and
#                  have the smallest receive buffer, so nearly every packet
#                  that reaches one is counted as a receive-buffer drop).
#                  Rate = received / pktgen's elapsed time.  Checked: the
#                  socket of the case's destination port (its per-socket
#                  drop counter) got at least 90% of what pktgen sent, and
#                  no checksum error was counted.
#   udp_pps_flows  the same with random source ports, 4,096 distinct ones
#                  (flag UDPSRC_RND): 4,096 flows for vpm's flow table and
#                  for conntrack.
#   tcp4_mbps, tcp6_mbps  iperf3 bulk TCP client -> server, receiver side.
#   tcp_conn_rate  vpm-loadgen (tools/loadgen): connect/close loops (close
#                  with RST, so no TIME_WAIT caps the rate) from 2 threads
#                  against `vpm-loadgen serve` (2 threads) for a few
#                  seconds; connections per second.
# Scale phase (after the interleaved repetitions): case D against a second
# server namespace, vpmbs2, whose table holds N allocations (the hit one
# plus N-1 others on other fixed ports, each with its default rule), for
# N in 256, 4096 and 65535 (short form: 4096), alternating run by run with
# case D on vpmbs (1 allocation), so drift hits both alike.  N is what
# `vpmctl config` reports after the fill: the largest the allocator allows
# if it stops short of 65535.
#
# The loadgen binary: $VPM_LOADGEN, else vpm-loadgen next to vpmctl (both
# are built into the same cargo target directory).
. "$VPM_ROOT/tests/vm/lib/lib.sh"
. "$VPM_ROOT/tests/bench/lib.sh"

FIXED=9000
ANON=20000
MISS=9100
REPS=$(pick 5 7)
PKTS=$(pick 30000 200000)
FLOW_PORTS=4096 # distinct source ports of udp_pps_flows
IPERF_SECS=$(pick 1 5)
IPERF_REPS=$(pick 3 7) # the short form measures TCP bulk in its first 3 repetitions
CONN_SECS=$(pick 1 3)
SCALE=$(pick "4096" "256 4096 65535")
SCALE_REPS=$(pick 3 5)
LOADGEN=${VPM_LOADGEN:-$(dirname "$VPMCTL")/vpm-loadgen}
expect "vpm-loadgen built at $LOADGEN (make bench builds it next to vpmctl)" test -x "$LOADGEN"
CASES="A R1 R2 B C D"

bench_meta 20-packets '"reps"' "$REPS" '"pkts"' "$PKTS" '"pkt_size"' 60 \
	'"flows"' "$FLOW_PORTS" '"iperf_secs"' "$IPERF_SECS" '"iperf_reps"' "$IPERF_REPS" \
	'"conn_secs"' "$CONN_SECS" '"scale_reps"' "$SCALE_REPS" '"order"' '"A R1 R2 B C D"'

c() { ip netns exec vpmbc "$@"; }
s() { ip netns exec vpmbs "$@"; }

# ---- topology -----------------------------------------------------------

fresh_netns vpmbc vpmbs vpmbs2
pair() { # N SERVER-NETNS
	ip link add "veth-c$1" netns vpmbc type veth peer name "veth-s$1" netns "$2"
	ip -n vpmbc addr add "10.210.$1.1/24" dev "veth-c$1"
	ip -n "$2" addr add "10.210.$1.2/24" dev "veth-s$1"
	ip -n vpmbc addr add "fd00:210:$1::1/64" dev "veth-c$1" nodad
	ip -n "$2" addr add "fd00:210:$1::2/64" dev "veth-s$1" nodad
	ip -n vpmbc link set "veth-c$1" up
	ip -n "$2" link set "veth-s$1" up
	ip -n "$2" link set lo up
}
ip -n vpmbc link set lo up
pair 1 vpmbs
pair 2 vpmbs2
mac() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
MAC1=$(mac vpmbs veth-s1)
MAC2=$(mac vpmbs2 veth-s2)
expect "the server veths' MAC addresses ($MAC1, $MAC2)" test -n "$MAC1" -a -n "$MAC2"
c ping -q -c 1 -W 5 10.210.1.2 >/dev/null
c ping -q -c 1 -W 5 fd00:210:1::2 >/dev/null
c ping -q -c 1 -W 5 10.210.2.2 >/dev/null

# offload NETNS DEV on|off: the veth's checksum offloads (see udp_pps_1flow).
offload() { ip netns exec "$1" ethtool -K "$2" tx "$3" rx "$3" >/dev/null; }

# UDP receivers: sockets that never read, with the smallest receive buffer
# (what reaches them is counted as InDatagrams or RcvbufErrors).  One per
# port, in the background for the whole script (or until the scale phase).
cat >"$work/recv.py" <<'EOF'
import signal, socket, sys
socks = []
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    s.bind(("0.0.0.0", int(port)))
    socks.append(s)
print("ready", flush=True)
signal.pause()
EOF
ip netns exec vpmbs python3 "$work/recv.py" "$FIXED" >"$work/recv-fixed" 2>&1 &

ip netns exec vpmbs python3 "$work/recv.py" "$ANON" >"$work/recv-anon" 2>&1 &
ip netns exec vpmbs2 python3 "$work/recv.py" "$ANON" >"$work/recv-anon2" 2>&1 &
for f in recv-fixed recv-anon recv-anon2; do
	for _ in $(seq 100); do grep -q ready "$work/$f" && break; sleep 0.1; done
	expect "UDP receiver $f started (said: $(cat "$work/$f"))" grep -q ready "$work/$f"
done

# ---- measurements -------------------------------------------------------

# udp_mib NETNS: "InDatagrams RcvbufErrors NoPorts InErrors InCsumErrors"
# of the namespace's UDP MIB.
udp_mib() {
	ip netns exec "$1" cat /proc/net/snmp | awk '
		$1 == "Udp:" && !h { for (i = 2; i <= NF; i++) col[$i] = i; h = 1; next }
		$1 == "Udp:" { print $col["InDatagrams"], $col["RcvbufErrors"], $col["NoPorts"], $col["InErrors"], $col["InCsumErrors"] }'
}

# sock_drops NETNS PORT: the drop counter of the IPv4 UDP socket bound to
# PORT (last column of /proc/net/udp).
sock_drops() {
	ip netns exec "$1" cat /proc/net/udp | awk -v p="$(printf ':%04X' "$2")" '
		substr($2, length($2) - 4) == p { print $NF; f = 1 } END { if (!f) print "none" }'
}

# pktgen DEV DST-IP DST-MAC SRC-IP COUNT FLOWS: run pktgen in vpmbc (its
# /proc/net/pktgen is the namespace's own); print "SENT USEC ERRORS".
pktgen() {
	local dev=$1 dst=$2 dmac=$3 src=$4 count=$5 flows=$6
	ip netns exec vpmbc bash -s "$dev" "$dst" "$dmac" "$src" "$count" "$flows" "$FIXED" <<'EOF'
set -eu
dev=$1 dst=$2 dmac=$3 src=$4 count=$5 flows=$6 dport=$7
pg() { # FILE COMMAND: pktgen answers in the file's "Result:" line
	echo "$2" >"/proc/net/pktgen/$1"
	grep -q "^Result: OK" "/proc/net/pktgen/$1" || {
		echo "pktgen: '$2' > $1: $(grep '^Result:' "/proc/net/pktgen/$1")" >&2
		exit 1
	}
}
pg kpktgend_0 rem_device_all
pg kpktgend_0 "add_device $dev"
pg "$dev" "count $count"
pg "$dev" "clone_skb 0"
pg "$dev" "pkt_size 60"
pg "$dev" "burst 1"
pg "$dev" "delay 0"
pg "$dev" "dst $dst"
pg "$dev" "dst_mac $dmac"
pg "$dev" "src_min $src"
pg "$dev" "src_max $src"
pg "$dev" "udp_dst_min $dport"
pg "$dev" "udp_dst_max $dport"
if [ "$flows" -gt 1 ]; then
	pg "$dev" "udp_src_min 10000"
	pg "$dev" "udp_src_max $((10000 + flows))" # exclusive
	pg "$dev" "flag UDPSRC_RND"
else
	pg "$dev" "udp_src_min 10000"
	pg "$dev" "udp_src_max 10000"
	pg "$dev" "flag !UDPSRC_RND"
fi
pg "$dev" "flag UDPCSUM"
echo start >/proc/net/pktgen/pgctrl
# Result: OK: 306554(c306350+d204) usec, 50000 (60byte,0frags)
#   163106pps 78Mb/sec (78290880bps) errors: 0
awk '/^Result: OK:/ { usec = $3; sub(/\(.*/, "", usec); sent = $5 }
	/errors:/ { err = $NF }
	END { if (sent == "") exit 1; print sent, usec, err + 0 }' "/proc/net/pktgen/$dev"
pg kpktgend_0 rem_device_all
EOF
}

# udp_run CASE METRIC ENTRIES REP [SCALE]: one pktgen run towards vpmbs
# (vpmbs2 with SCALE), checked and recorded.
udp_run() {
	local case=$1 metric=$2 entries=$3 rep=$4 ns=vpmbs n=1 mac=$MAC1 flows=1 port
	local b a r sent usec err d0 d1 recv got pps
	if [ -n "${5:-}" ]; then ns=vpmbs2 n=2 mac=$MAC2; fi
	[ "$metric" = udp_pps_flows ] && flows=$FLOW_PORTS
	case $case in A | B | C) port=$FIXED ;; *) port=$ANON ;; esac
	b=($(udp_mib $ns))
	d0=$(sock_drops $ns "$port")
	r=($(pktgen "veth-c$n" "10.210.$n.2" "$mac" "10.210.$n.1" "$PKTS" "$flows"))
	[ ${#r[@]} = 3 ] || { echo "$case $metric rep $rep: pktgen failed" >&2; return 1; }
	d1=$(sock_drops $ns "$port")
	a=($(udp_mib $ns))
	sent=${r[0]} usec=${r[1]} err=${r[2]}
	recv=$((a[0] - b[0] + a[1] - b[1]))
	got=$((d1 - d0))
	if [ "$recv" -le 0 ] || [ $((got * 10)) -lt $((sent * 9)) ] || [ "${a[4]}" != "${b[4]}" ]; then
		echo "$case $metric rep $rep: pktgen sent $sent in $usec us (errors $err); $ns received $recv," \
			"the socket on port $port got $got; NoPorts +$((a[2] - b[2])), InErrors +$((a[3] - b[3]))," \
			"InCsumErrors +$((a[4] - b[4]))" >&2
		ip -n vpmbc -s link show "veth-c$n" >&2
		ip -n $ns -s link show "veth-s$n" >&2
		return 1
	fi
	pps=$(awk -v r="$recv" -v u="$usec" 'BEGIN { printf "%.1f", r * 1e6 / u }')
	echo "$case $metric entries $entries rep $rep: $pps pps ($recv of $sent in ${usec} us)"
	bench_record "$case" "$metric" "$entries" "$rep" "$pps" pps
}

# wait_listen NETNS PORT: until a TCP socket listens on PORT.
wait_listen() {
	local i
	for i in $(seq 100); do
		ip netns exec "$1" ss -Htln "sport = :$2" | grep -q . && return 0
		sleep 0.05
	done
	echo "nothing listens on $1 tcp/$2" >&2
	return 1
}

# iperf_run CASE REP: iperf3 over IPv4 and IPv6 against a server on the
# case's TCP port (nothing listens on 9000 in cases D, R1, R2: an
# untranslated connection would be refused).
iperf_run() {
	local case=$1 rep=$2 port srv addr metric bps mbps
	case $case in A | B | C) port=$FIXED ;; *) port=$ANON ;; esac
	ip netns exec vpmbs iperf3 -s -p "$port" >"$work/iperf-srv" 2>&1 &
	srv=$!
	wait_listen vpmbs "$port" || return 1
	for addr in 10.210.1.2 fd00:210:1::2; do
		case $addr in *:*) metric=tcp6_mbps ;; *) metric=tcp4_mbps ;; esac
		if ! c iperf3 -c "$addr" -p "$FIXED" -t "$IPERF_SECS" -J >"$work/iperf.json" 2>&1; then
			echo "$case $metric rep $rep: iperf3 failed:" >&2
			grep -i error "$work/iperf.json" >&2 || tail -n 5 "$work/iperf.json" >&2
			return 1
		fi
		bps=$(awk '/"sum_received"/ { f = 1 } f && /"bits_per_second"/ { gsub(/[^0-9.e+]/, "", $2); print $2; exit }' "$work/iperf.json")
		mbps=$(awk -v b="$bps" 'BEGIN { if (b + 0 > 0) printf "%.1f", b / 1e6 }')
		echo "$case $metric rep $rep: $mbps Mbit/s"
		bench_record "$case" "$metric" 0 "$rep" "$mbps" Mbit/s || return 1
	done
	kill "$srv"
	wait "$srv" 2>/dev/null || true
}

# conn_run CASE REP: vpm-loadgen's connection rate against the case's port.
conn_run() {
	local case=$1 rep=$2 port srv out rate
	case $case in A | B | C) port=$FIXED ;; *) port=$ANON ;; esac
	ip netns exec vpmbs "$LOADGEN" serve --listen "0.0.0.0:$port" --threads 2 >"$work/lg-srv" 2>&1 &
	srv=$!
	for _ in $(seq 100); do grep -q '^ready' "$work/lg-srv" && break; sleep 0.05; done
	expect "vpm-loadgen serve started (said: $(cat "$work/lg-srv"))" grep -q '^ready' "$work/lg-srv"
	if ! out=$(c "$LOADGEN" connect --to "10.210.1.2:$FIXED" --duration "$CONN_SECS" \
		--threads 2 --rst 2>"$work/lg-err"); then
		echo "$case tcp_conn_rate rep $rep: vpm-loadgen connect failed: $out $(cat "$work/lg-err")" >&2
		return 1
	fi
	kill "$srv"
	wait "$srv" 2>/dev/null || true
	[[ $out =~ \"rate\":([0-9.]+) ]] && rate=${BASH_REMATCH[1]} || rate=
	rate=$(awk -v r="$rate" 'BEGIN { if (r + 0 > 0) printf "%.1f", r }')
	echo "$case tcp_conn_rate rep $rep: $rate conn/s ($out)"
	bench_record "$case" tcp_conn_rate 0 "$rep" "$rate" conn/s
}

# ---- cases --------------------------------------------------------------

cat >"$work/r1.nft" <<EOF
table inet vpmbench {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		udp dport $FIXED udp dport set $ANON
		tcp dport $FIXED tcp dport set $ANON
	}
	chain out {
		type filter hook output priority raw; policy accept;
		udp sport $ANON udp sport set $FIXED
		tcp sport $ANON tcp sport set $FIXED
	}
}
EOF
cat >"$work/r2.nft" <<EOF
table inet vpmbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		udp dport $FIXED redirect to :$ANON
		tcp dport $FIXED redirect to :$ANON
	}
}
EOF
at_exit "ip netns exec vpmbs nft delete table inet vpmbench"

# d_table NETNS: allocation d 9000 -> 20000 and its default rule.
d_table() {
	ip netns exec "$1" vpmctl add --aid d --port "$FIXED" --anon-port "$ANON" >/dev/null
	ip netns exec "$1" vpmctl rule add --port "$FIXED" --aid d >/dev/null
}

enter() {
	case $1 in
	A) unload ;;
	R1 | R2) unload && s nft -f "$work/${1,,}.nft" ;;
	B) load ;;
	C) load && s vpmctl add --aid c --port "$MISS" >/dev/null && s vpmctl rule add --port "$MISS" --aid c >/dev/null ;;
	D) load && d_table vpmbs ;;
	esac
}
leave() {
	case $1 in
	R1 | R2) s nft delete table inet vpmbench ;;
	C | D) s vpmctl flush >/dev/null ;;
	esac
}

# udp_both CASE ENTRIES REP [SCALE]: both UDP metrics, checksums offloads off.
udp_both() {
	local n=1 ns=vpmbs
	if [ -n "${4:-}" ]; then n=2 ns=vpmbs2; fi
	offload vpmbc "veth-c$n" off
	offload $ns "veth-s$n" off
	udp_run "$1" udp_pps_1flow "$2" "$3" ${4:-} &&
		udp_run "$1" udp_pps_flows "$2" "$3" ${4:-}
	local rc=$?
	offload vpmbc "veth-c$n" on
	offload $ns "veth-s$n" on
	return $rc
}

# Warm-up, not recorded: the first run of each tool reads its binary
# over 9p and fills caches.
pktgen veth-c1 10.210.1.2 "$MAC1" 10.210.1.1 5000 1 >/dev/null
pktgen veth-c2 10.210.2.2 "$MAC2" 10.210.2.1 5000 1 >/dev/null
ip netns exec vpmbs iperf3 -s -p "$FIXED" -1 >"$work/iperf-srv" 2>&1 &
srv=$!
wait_listen vpmbs "$FIXED"
c iperf3 -c 10.210.1.2 -p "$FIXED" -n 4M >/dev/null 2>&1 || true
wait $srv || true
ip netns exec vpmbs "$LOADGEN" serve --listen "0.0.0.0:$FIXED" --duration 1 >/dev/null 2>&1 &
srv=$!
sleep 0.2
c "$LOADGEN" connect --to "10.210.1.2:$FIXED" --duration 0.3 --rst >/dev/null 2>&1 || true
wait $srv || true

BENCH_LOG=$work/records
start=$(date +%s)
for rep in $(seq 0 $((REPS - 1))); do
	for case in $CASES; do
		enter $case
		entries=0
		[ $case = D ] && entries=1
		expect "$case rep $rep: UDP packet rates" udp_both $case $entries $rep
		if [ "$rep" -lt "$IPERF_REPS" ]; then
			expect "$case rep $rep: iperf3" iperf_run $case $rep
		fi
		expect "$case rep $rep: connection rate" conn_run $case $rep
		leave $case
	done
	echo "repetition $rep done after $(($(date +%s) - start)) s"
done
load
subtest PASS "cases-interleaved ($REPS repetitions, $(($(date +%s) - start))s)"

# ---- scale: D with N allocations (vpmbs2) against D with 1 (vpmbs) ------

# The records of D with 1 allocation taken here continue the repetition
# numbers of the interleaved phase.
d_table vpmbs
d_table vpmbs2
have=1 p=0 rep1=$REPS
start=$(date +%s)
for want in $SCALE; do
	# The default range (20000-29999) holds 10,000 allocations; beyond,
	# the whole port space.
	if [ "$want" -gt 10000 ]; then
		ip netns exec vpmbs2 vpmctl config --range 1-65535 >/dev/null
	fi
	# The other allocations: fixed ports 1, 2, ... (skipping 9000), each
	# its own AID with its default rule.
	: >"$work/fill"
	while [ "$have" -lt "$want" ]; do
		p=$((p + 1))
		[ "$p" = "$FIXED" ] && continue
		echo "add --aid f$p --port $p"
		echo "rule add --port $p --aid f$p"
		have=$((have + 1))
	done >"$work/fill"
	ms=$(timed_ms ip netns exec vpmbs2 vpmctl batch "$work/fill" || echo failed)
	entries=$(ip netns exec vpmbs2 vpmctl config --json | json entries)
	echo "vpmbs2: $entries allocations (wanted $want; batch of $(wc -l <"$work/fill") commands: $ms ms)"
	expect "more than one allocation in vpmbs2" test "$entries" -gt 1
	have=$entries
	for rep in $(seq 0 $((SCALE_REPS - 1))); do
		expect "D rep $rep1: 1 allocation" udp_both D 1 "$rep1"
		expect "D rep $rep: $entries allocations" udp_both D "$entries" "$rep" scale
		rep1=$((rep1 + 1))
	done
	subtest PASS "scale-$entries"
	# The allocator stopped short: that is the largest table it allows.
	[ "$entries" -ge "$want" ] || break
done
echo "scale phase: $(($(date +%s) - start)) s"
s vpmctl flush >/dev/null
ip netns exec vpmbs2 vpmctl flush >/dev/null

# ---- summary for people: medians (min-max) per case, metric, entries -----
bench_summary "$BENCH_LOG"
