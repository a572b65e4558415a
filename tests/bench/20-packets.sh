#!/usr/bin/env bash
# vpm-timeout: 600
# vpm-timeout-long: 3600
# The packet path side by side (issue 14): raw measurements, one
# "VPM-BENCH {...}" line each (protocol: tests/bench/lib.sh); the host-side
# report takes medians and asserts the ratios, this script asserts nothing
# about speed.  It fails when a measurement cannot be taken (nothing
# received, packets lost for another reason than CPU, iperf3 or the load
# generator failing).
#
#   +-- vpmbc (client) ---+          +-- vpmbs (server: vpm's hooks) ---+
#   | veth-c1 10.210.1.1  |----------| veth-s1 10.210.1.2 (UDP, pktgen) |
#   |   pktgen            |          |   UDP sockets on 9000 and 20000  |
#   | veth-c3 10.210.3.1  |----------| veth-s3 10.210.3.2 (TCP)         |
#   |   fd00:210:3::1     |          |   fd00:210:3::2; per case:       |
#   |   iperf3 -c,        |          |   iperf3 -s and vpm-loadgen      |
#   |   vpm-loadgen       |          |   serve on the case's TCP port   |
#   | veth-c2 10.210.2.1  |---+      +----------------------------------+
#   +---------------------+   |      +-- vpmbs2 (scale phase) ----------+
#                             +------| veth-s2 10.210.2.2, N allocations|
#                                    +----------------------------------+
# UDP and TCP have their own veth pairs: the UDP ones run with checksum
# offloads off (below), and TCP over them would lose TSO.
#
# Cases (traffic always to fixed port 9000 from the client):
#   A   vpm not loaded (rmmod); the packet reaches the socket on 9000;
#   R1  vpm not loaded; nftables stateless rewrite, 9000 -> 20000 in
#       prerouting (udp/tcp dport set) and 20000 -> 9000 on output (sport
#       set); no ct or nat expression, so conntrack is never loaded in the
#       namespace;
#   R2  vpm not loaded; nftables `redirect to :20000` (conntrack NAT,
#       reverse by conntrack);
#   B   vpm loaded, empty table: no hooks are registered (they come with
#       a namespace's first allocation), so B costs what A costs;
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
#                  with real checksums (flag UDPCSUM; veth-c1's tx checksum
#                  offload off so pktgen computes them in software, veth-s1's
#                  rx offload off so the receiving stack verifies them),
#                  burst 1, to the MAC of veth-s1, with `flag !SHARED`:
#                  pktgen hands each skb over without keeping a reference,
#                  as a NIC driver does (veth does not support shared skbs:
#                  no IFF_TX_SKB_SHARING).  With pktgen's default, a shared
#                  skb, ip_rcv's skb_share_check clones every packet, and
#                  every rewriter (vpm, nft's payload set, NAT) then pays a
#                  copy of the header in skb_ensure_writable that real
#                  traffic does not cause.  veth delivers each frame
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
REPS=$(pick 4 7)
PKTS=$(pick 30000 200000)
FLOW_PORTS=4096 # distinct source ports of udp_pps_flows
IPERF_SECS=$(pick 1 5)
# The short form (make check, 4 minutes for every benchmark) runs iperf3
# in its first repetition only: TCP bulk through every case, both
# families, without a median (no target is asserted on it).
IPERF_REPS=$(pick 1 7)
CONN_SECS=$(pick 0.5 3)
SCALE=$(pick "4096" "256 4096 65535")
SCALE_REPS=$(pick 2 5)
LOADGEN=${VPM_LOADGEN:-$(dirname "$VPMCTL")/vpm-loadgen}
expect "vpm-loadgen built at $LOADGEN (make bench builds it next to vpmctl)" test -x "$LOADGEN"
CASES="A R1 R2 B C D"

bench_meta pkt_reps "$REPS" pkt_count "$PKTS" pkt_size 60 pkt_flows "$FLOW_PORTS" \
	pkt_iperf_secs "$IPERF_SECS" pkt_iperf_reps "$IPERF_REPS" pkt_conn_secs "$CONN_SECS" \
	pkt_scale_reps "$SCALE_REPS" pkt_order '"A R1 R2 B C D"'

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
pair 3 vpmbs
mac() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
MAC1=$(mac vpmbs veth-s1)
MAC2=$(mac vpmbs2 veth-s2)
expect "the server veths' MAC addresses ($MAC1, $MAC2)" test -n "$MAC1" -a -n "$MAC2"
# pktgen's pairs: checksums computed by pktgen, verified by the receiver.
ip netns exec vpmbc ethtool -K veth-c1 tx off >/dev/null
ip netns exec vpmbc ethtool -K veth-c2 tx off >/dev/null
ip netns exec vpmbs ethtool -K veth-s1 rx off >/dev/null
ip netns exec vpmbs2 ethtool -K veth-s2 rx off >/dev/null
c ping -q -c 1 -W 5 10.210.3.2 >/dev/null
c ping -q -c 1 -W 5 fd00:210:3::2 >/dev/null

# UDP receivers: sockets that never read, with the smallest receive buffer
# (what reaches them is counted as InDatagrams or RcvbufErrors), for the
# whole script.  Their /proc/PID/net is their namespace's: the UDP
# measurements read the server's counters there without entering it.
cat >"$work/recv.py" <<'PY'
import signal, socket, sys
socks = []
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    s.bind(("0.0.0.0", int(port)))
    socks.append(s)
print("ready", flush=True)
signal.pause()
PY
ip netns exec vpmbs python3 "$work/recv.py" "$FIXED" "$ANON" >"$work/recv1" 2>&1 &
RECV1=$!
ip netns exec vpmbs2 python3 "$work/recv.py" "$ANON" >"$work/recv2" 2>&1 &
RECV2=$!

# wait_line FILE TEXT: until FILE has a line starting with TEXT (10 s).
wait_line() {
	local i line
	for i in $(seq 200); do
		while IFS= read -r line; do
			[[ $line == "$2"* ]] && return 0
		done <"$1"
		bench_sleep 0.05
	done
	echo "no '$2' in $1: $(cat "$1")" >&2
	return 1
}
wait_line "$work/recv1" ready
wait_line "$work/recv2" ready

# ---- UDP: pktgen ----------------------------------------------------------

# $work/udp.sh runs in vpmbc (pktgen's /proc/net/pktgen is per namespace,
# and "start" acts on the writer's namespace):
#   udp.sh DEV DST-IP DST-MAC SERVER-PID COUNT PORT DPORT FLOWS...
# runs pktgen once per FLOWS (1: one flow; N: N random source ports) and
# prints per run "FLOWS SENT USEC RECEIVED SOCKET NOPORTS CSUMERR": sent
# and elapsed time from pktgen's Result line, then the deltas of the
# server namespace's UDP MIB (InDatagrams + RcvbufErrors), of the drop
# counter of the socket on PORT, of NoPorts and of InCsumErrors, read in
# /proc/SERVER-PID/net.  Shell builtins only, apart from the one bash: a
# process costs milliseconds under emulation.
cat >"$work/udp.sh" <<'SH'
set -eu
dev=$1 dst=$2 dmac=$3 spid=$4 count=$5 port=$6 dport=$7
shift 7
pg() { # FILE COMMAND: a refused command fails the write
	echo "$2" >"/proc/net/pktgen/$1" || {
		echo "pktgen: '$2' > $1 refused" >&2
		exit 1
	}
}
snap() { # the server's counters: $indg $rcvbuf $noports $csum $sock
	local a b i want
	local -a h=() v=() f
	while read -r a b; do
		if [ "$a" = Udp: ]; then
			if [ ${#h[@]} = 0 ]; then h=($b); else v=($b); fi
		fi
	done <"/proc/$spid/net/snmp"
	for i in "${!h[@]}"; do
		case ${h[i]} in
		InDatagrams) indg=${v[i]} ;;
		RcvbufErrors) rcvbuf=${v[i]} ;;
		NoPorts) noports=${v[i]} ;;
		InCsumErrors) csum=${v[i]} ;;
		esac
	done
	sock=none
	printf -v want ':%04X' "$port"
	while read -r -a f; do
		[ "${f[1]: -5}" = "$want" ] && sock=${f[-1]}
	done <"/proc/$spid/net/udp"
	return 0
}
# One device on the thread: switching devices costs a rem_device_all
# (which waits 125 ms).
have=
while read -r line; do [[ $line == *"$dev"* ]] && have=1; done </proc/net/pktgen/kpktgend_0
if [ -z "$have" ]; then
	pg kpktgend_0 rem_device_all
	pg kpktgend_0 "add_device $dev"
fi
src=${dst%.*}.1
for flows in "$@"; do
	pg "$dev" "count $count"
	pg "$dev" "clone_skb 0"
	pg "$dev" "pkt_size 60"
	pg "$dev" "burst 1"
	pg "$dev" "flag !SHARED"
	pg "$dev" "delay 0"
	pg "$dev" "dst $dst"
	pg "$dev" "dst_mac $dmac"
	pg "$dev" "src_min $src"
	pg "$dev" "src_max $src"
	pg "$dev" "udp_dst_min $dport"
	pg "$dev" "udp_dst_max $dport"
	pg "$dev" "udp_src_min 10000"
	if [ "$flows" -gt 1 ]; then
		pg "$dev" "udp_src_max $((10000 + flows))" # exclusive
		pg "$dev" "flag UDPSRC_RND"
	else
		pg "$dev" "udp_src_max 10000"
		pg "$dev" "flag !UDPSRC_RND"
	fi
	pg "$dev" "flag UDPCSUM"
	snap
	b=($indg $rcvbuf $noports $csum $sock)
	echo start >/proc/net/pktgen/pgctrl
	snap
	# Result: OK: 306554(c306350+d204) usec, 50000 (60byte,0frags)
	sent= usec=
	while read -r -a f; do
		if [ "${f[0]:-}" = Result: ] && [ "${f[1]:-}" = OK: ]; then
			usec=${f[2]%%[(]*} sent=${f[4]}
		fi
	done <"/proc/net/pktgen/$dev"
	[ -n "$sent" ] || { echo "pktgen: no result: $(grep Result: "/proc/net/pktgen/$dev")" >&2; exit 1; }
	[ "$sock" != none ] || { echo "no UDP socket on port $port" >&2; exit 1; }
	echo "$flows $sent $usec $((indg - b[0] + rcvbuf - b[1])) $((sock - b[4])) $((noports - b[2])) $((csum - b[3]))"
done
SH

# udp_runs CASE ENTRIES REP [scale]: udp_pps_1flow and udp_pps_flows
# towards vpmbs (vpmbs2 with "scale"), checked and recorded.
udp_runs() {
	local case=$1 entries=$2 rep=$3 n=1 mac=$MAC1 spid=$RECV1 port=$ANON out
	local flows sent usec recv got noports csum metric pps
	if [ -n "${4:-}" ]; then n=2 mac=$MAC2 spid=$RECV2; fi
	case $case in A | B | C) port=$FIXED ;; esac
	out=$(c bash "$work/udp.sh" "veth-c$n" "10.210.$n.2" "$mac" "$spid" "$PKTS" "$port" "$FIXED" 1 "$FLOW_PORTS") ||
		{ echo "$case rep $rep: pktgen failed: $out" >&2; return 1; }
	while read -r flows sent usec recv got noports csum; do
		metric=udp_pps_1flow
		[ "$flows" = 1 ] || metric=udp_pps_flows
		# Everything pktgen sent reaches the case's socket, but for CPU
		# (never here: veth delivers in pktgen's own softirq) and the
		# receive buffer (counted).
		if [ "$recv" -le 0 ] || [ $((got * 10)) -lt $((sent * 9)) ] || [ "$csum" != 0 ]; then
			echo "$case $metric rep $rep: pktgen sent $sent in $usec us; received $recv," \
				"the socket on port $port got $got; NoPorts +$noports, InCsumErrors +$csum" >&2
			ip -n vpmbc -s link show "veth-c$n" >&2
			return 1
		fi
		# received / elapsed, one decimal, in the shell
		pps=$((recv * 10000000 / usec))
		pps=$((pps / 10)).$((pps % 10))
		echo "$case $metric entries $entries rep $rep: $pps pps ($recv of $sent in $usec us)"
		bench_record "$case" "$metric" "$entries" "$rep" "$pps" pps || return 1
	done <<<"$out"
}

# ---- TCP: iperf3 and vpm-loadgen -------------------------------------------

# port_of CASE: the port the server side listens on.
port_of() { case $1 in A | B | C) echo $FIXED ;; *) echo $ANON ;; esac; }
# entries_of CASE: the records' entries in the interleaved phase: D's
# table holds 1 allocation, the other cases are recorded with 0.
entries_of() { if [ "$1" = D ]; then echo 1; else echo 0; fi; }

# iperf_run CASE REP: iperf3 over IPv4 and IPv6 against a server on the
# case's port (nothing listens on 9000 in cases D, R1, R2: an untranslated
# connection would be refused and fail the test).
iperf_run() {
	local case=$1 rep=$2 port srv addr metric line bps mbps f
	port=$(port_of "$case")
	ip netns exec vpmbs iperf3 -s -p "$port" --forceflush >"$work/iperf-srv" 2>&1 &
	srv=$!
	wait_line "$work/iperf-srv" "Server listening" || return 1
	for addr in 10.210.3.2 fd00:210:3::2; do
		case $addr in *:*) metric=tcp6_mbps ;; *) metric=tcp4_mbps ;; esac
		if ! c iperf3 -c "$addr" -p "$FIXED" -t "$IPERF_SECS" -J >"$work/iperf.json" 2>&1; then
			echo "$case $metric rep $rep: iperf3 failed:" >&2
			grep -i error "$work/iperf.json" >&2 || tail -n 5 "$work/iperf.json" >&2
			return 1
		fi
		# end.sum_received.bits_per_second
		f= bps=
		while read -r line; do
			[[ $line == *'"sum_received"'* ]] && f=1
			if [ -n "$f" ] && [[ $line =~ \"bits_per_second\":[[:space:]]*([0-9]+)(\.[0-9]*)?,?$ ]]; then
				bps=${BASH_REMATCH[1]}
				break
			fi
		done <"$work/iperf.json"
		[ -n "$bps" ] || { echo "$case $metric rep $rep: no receiver rate in iperf3's output" >&2; return 1; }
		mbps=$((bps / 100000))
		mbps=$((mbps / 10)).$((mbps % 10))
		echo "$case $metric rep $rep: $mbps Mbit/s"
		bench_record "$case" "$metric" "$(entries_of "$case")" "$rep" "$mbps" Mbit/s || return 1
	done
	kill "$srv"
	wait "$srv" 2>/dev/null || true
}

# conn_run CASE REP: vpm-loadgen's connection rate against the case's port.
conn_run() {
	local case=$1 rep=$2 port srv out rate
	port=$(port_of "$case")
	ip netns exec vpmbs "$LOADGEN" serve --listen "10.210.3.2:$port" --threads 2 >"$work/lg-srv" 2>&1 &
	srv=$!
	wait_line "$work/lg-srv" ready || return 1
	if ! out=$(c "$LOADGEN" connect --to "10.210.3.2:$FIXED" --duration "$CONN_SECS" \
		--threads 2 --rst 2>"$work/lg-err"); then
		echo "$case tcp_conn_rate rep $rep: vpm-loadgen connect failed: $out $(cat "$work/lg-err")" >&2
		return 1
	fi
	kill "$srv"
	wait "$srv" 2>/dev/null || true
	[[ $out =~ \"rate\":([0-9]+)(\.([0-9]))? ]] || { echo "no rate in: $out" >&2; return 1; }
	rate=${BASH_REMATCH[1]}.${BASH_REMATCH[3]:-0}
	[[ $out =~ \"errors\":(\{[^}]*\}) ]] || true
	echo "$case tcp_conn_rate rep $rep: $rate conn/s (errors ${BASH_REMATCH[1]:-?})"
	bench_record "$case" tcp_conn_rate "$(entries_of "$case")" "$rep" "$rate" conn/s
}

# ---- cases --------------------------------------------------------------

cat >"$work/r1.nft" <<NFT
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
NFT
cat >"$work/r2.nft" <<NFT
table inet vpmbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		udp dport $FIXED redirect to :$ANON
		tcp dport $FIXED redirect to :$ANON
	}
}
NFT
at_exit "ip netns exec vpmbs nft delete table inet vpmbench"

# table NETNS CMDS: vpmctl commands, one per line, in one batch.
table() { ip netns exec "$1" vpmctl batch - <<<"$2" >/dev/null; }
D_TABLE="add --aid d --port $FIXED --anon-port $ANON
rule add --port $FIXED --aid d"

enter() {
	case $1 in
	A) unload ;;
	R1 | R2) unload && s nft -f "$work/${1,,}.nft" ;;
	B) load ;;
	C) load && table vpmbs "add --aid c --port $MISS
rule add --port $MISS --aid c" ;;
	D) load && table vpmbs "$D_TABLE" ;;
	esac
}
leave() {
	case $1 in
	R1 | R2) s nft delete table inet vpmbench ;;
	C | D) s vpmctl flush >/dev/null ;;
	esac
}

# Warm-up, not recorded: the first run of each tool reads its binary
# over 9p and fills caches.
c bash "$work/udp.sh" veth-c2 10.210.2.2 "$MAC2" "$RECV2" 5000 "$ANON" "$ANON" 1 >/dev/null
c bash "$work/udp.sh" veth-c1 10.210.1.2 "$MAC1" "$RECV1" 5000 "$FIXED" "$FIXED" 1 >/dev/null
ip netns exec vpmbs iperf3 -s -p "$FIXED" -1 --forceflush >"$work/iperf-srv" 2>&1 &
srv=$!
wait_line "$work/iperf-srv" "Server listening"
c iperf3 -c 10.210.3.2 -p "$FIXED" -n 4M >/dev/null 2>&1 || true
wait $srv || true
ip netns exec vpmbs "$LOADGEN" serve --listen "10.210.3.2:$FIXED" --duration 1 >"$work/lg-srv" 2>&1 &
srv=$!
wait_line "$work/lg-srv" ready
c "$LOADGEN" connect --to "10.210.3.2:$FIXED" --duration 0.3 --rst >/dev/null 2>&1 || true
wait $srv || true

BENCH_LOG=$work/records
start=$(date +%s)
for rep in $(seq 0 $((REPS - 1))); do
	for case in $CASES; do
		enter $case
		expect "$case rep $rep: UDP packet rates" udp_runs $case "$(entries_of $case)" $rep
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
table vpmbs "$D_TABLE"
table vpmbs2 "$D_TABLE"
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
		expect "D rep $rep1: 1 allocation" udp_runs D 1 "$rep1"
		expect "D rep $rep: $entries allocations" udp_runs D "$entries" "$rep" scale
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
