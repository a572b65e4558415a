#!/usr/bin/env bash
# vpm-timeout: 600
# vpm-timeout-long: 900
# Cooperative mode, the data path (issue 12): client AIDs a and b on host
# C (namespace vpmpc) reach server instances a and b on host S (vpmps),
# all four applications on port 9000 only.  C's agent negotiates with S's;
# C's socket hooks send each AID's connections and datagrams to the
# negotiated port; S's module leaves the replies to C on that port.  A
# capture on S's link shows the negotiated ports, and no packet of C's on
# 9000; the clients see 9000 (getpeername, recvfrom).  TCP and UDP
# (connected and not), IPv4 and IPv6.  An AID S refuses gets ECONNREFUSED
# at once.  C's clients outside any AID still reach S's fixed port,
# translated as usual.  A restart of S's agent (with its state, then
# without: it adopts the kernel's peers), and then of C's, keeps an
# established connection and new ones working.  A map released on
# reload takes its peers out of S's allocation.  ICMP errors about direct
# flows keep the negotiated port.  A grant that ends while C's agent is
# stopped refuses.  First, vpmctl peer
# add|del and their errors, save and restore.
#
#   +-- vpmpc (C) -------+          +-- vpmps (S) ----------------+
#   | 10.204.0.1          |----------| 10.204.0.2                  |
#   | fd00:204::1         |          | fd00:204::2                 |
#   | agent, clients a b c|          | agent; exec a, b on 9000    |
#   +---------------------+          +-----------------------------+
#
# Both are entered with nsenter, not `ip netns exec` (which remounts /sys
# and hides the cgroup2 and BPF filesystems the hooks need).
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c() { nsenter --net=/run/netns/vpmpc "$@"; }
s() { nsenter --net=/run/netns/vpmps "$@"; }
NET="python3 $VPM_ROOT/tests/vm/lib/vpmnet.py"
CC="python3 $VPM_ROOT/tests/vm/lib/coopclient.py"

load
fresh_netns vpmpc vpmps
ip link add veth-pc netns vpmpc type veth peer name veth-ps netns vpmps
printf '%s\n' "addr add 10.204.0.1/24 dev veth-pc" "addr add fd00:204::1/64 dev veth-pc nodad" \
	"link set lo up" "link set veth-pc up" | ip -n vpmpc -b -
printf '%s\n' "addr add 10.204.0.2/24 dev veth-ps" "addr add fd00:204::2/64 dev veth-ps nodad" \
	"link set lo up" "link set veth-ps up" | ip -n vpmps -b -
cpins=/sys/fs/bpf/vpm/net-$(stat -Lc %i /run/netns/vpmpc)
spins=/sys/fs/bpf/vpm/net-$(stat -Lc %i /run/netns/vpmps)

K=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/s.toml" <<EOF
listen = "10.204.0.2:9478"
state_file = "$work/s.json"
max_lifetime = 600
[[peer]]
name = "c"
address = "10.204.0.1"
addresses = ["fd00:204::1"]
key_id = 1
key = "$K"
[[export]]
port = 9000
aids = ["a", "b"]
EOF
cmaps() {
	for aid in "$@"; do
		printf '[[map]]\npeer = "s"\naid = "%s"\nport = 9000\nlifetime = 60\n' "$aid"
	done
}
cconf() {
	cat <<EOF
listen = "10.204.0.1:9478"
state_file = "$work/c.json"
[[peer]]
name = "s"
address = "10.204.0.2"
addresses = ["fd00:204::2"]
key_id = 1
key = "$K"
EOF
	cmaps "$@"
}
cconf a b c >"$work/c.toml"

# nsenter execs the agent, so that $! is the agent itself.
start_s() { nsenter --net=/run/netns/vpmps vpmctl agent --config "$work/s.toml" 2>>"$work/s.log" & spid=$!; }
start_c() { nsenter --net=/run/netns/vpmpc vpmctl agent --config "$work/c.toml" 2>>"$work/c.log" & cpid=$!; }
# Last given, first run: the agents stop before the cooperative map's pin
# (which outlives them by design) and the directories it kept go.
at_exit "rmdir $cpins $spins /sys/fs/bpf/vpm"
at_exit "rm -f $cpins/@remote-v1 $spins/@remote-v1"
at_exit 'c vpmctl flush; s vpmctl flush'
at_exit 'kill $spid $cpid $cap 2>/dev/null; wait $spid $cpid $cap'

# wait_for SECONDS CMD...: until CMD succeeds, SECONDS of wall time at
# most (a CMD that starts processes takes a while under TCG).
wait_for() {
	local end=$((SECONDS + $1))
	shift
	while [ $SECONDS -lt $end ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
	"$@" >/dev/null 2>&1
}
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# cstate AID: where C's mapping of AID stands (granted, pending, refused).
cstate() { field "$work/c.json" "[e['state'] for e in d['client'] if e['want']['aid'] == '$1'][0]"; }
cneg() { field "$work/c.json" "[e.get('negotiated', 0) for e in d['client'] if e['want']['aid'] == '$1'][0]"; }
sanon() { s vpmctl show --json | json_at aid="$1" anon_port; }
speers() { s vpmctl show --json | json_at aid="$1" peers 2>/dev/null || true; }
ready() { [ "$(cstate a)" = granted ] && [ "$(cstate b)" = granted ] && [ "$(cstate c)" = refused ]; }
starts() { grep -c "event=start" "$work/$1.log" || true; }
started_since() { [ "$(starts "$1")" -gt "$2" ]; }
# restart WHO [CMD...]: stop that agent, run CMD, start it again, wait for
# its start line.
restart() {
	local n pid who=$1
	shift
	n=$(starts "$who")
	if [ "$who" = s ]; then pid=$spid; else pid=$cpid; fi
	kill -TERM "$pid"
	wait "$pid" 2>/dev/null || true
	"$@"
	"start_$who"
	expect "$who's agent starts again" wait_for 30 started_since "$who" "$n"
}
# as AID CMD...: run CMD on C as client AID (exec: its hooks, its group).
as() {
	local aid=$1
	shift
	c vpmctl exec --aid "$aid" --port 9000 -- "$@"
}
TARGETS="tcp/10.204.0.2/9000 tcp/fd00:204::2/9000 udp/10.204.0.2/9000 udp/fd00:204::2/9000 udpc/10.204.0.2/9000 udpc/fd00:204::2/9000"

# ---- vpmctl peer add|del: the kernel's peer sets and their errors ------------
s vpmctl add --aid z --port 7000 >/dev/null
expect_fail 1 "no allocation for this AID and port" s vpmctl peer add --aid y --port 7000 --address 192.0.2.1
expect_fail 1 "not the unspecified one" s vpmctl peer add --aid z --port 7000 --address 0.0.0.0
expect_fail 1 "not the unspecified one" s vpmctl peer add --aid z --port 7000 --address ::
for i in $(seq 1 15); do echo "peer add --aid z --port 7000 --address 192.0.2.$i"; done >"$work/peers"
s vpmctl batch "$work/peers"
# An IPv4-mapped address is its IPv4 address; adding again changes nothing.
s vpmctl peer add --aid z --port 7000 --address ::ffff:192.0.2.1
s vpmctl peer add --aid z --port 7000 --address 2001:db8::16
expect_eq "16 peers, the mapped one once" 16 "$(s vpmctl show --json | json_at aid=z peers '#')"
expect_fail 1 "the most it may hold" s vpmctl peer add --aid z --port 7000 --address 192.0.2.99
expect_fail 1 "not a cooperative peer" s vpmctl peer del --aid z --port 7000 --address 192.0.2.99
s vpmctl peer del --aid z --port 7000 --address 2001:db8::16
expect_eq "peer del removes one" 15 "$(s vpmctl show --json | json_at aid=z peers '#')"
s vpmctl save >"$work/saved.json"
s vpmctl del --aid z --port 7000
s vpmctl restore "$work/saved.json"
expect_eq "restore sets the peers again" 15 "$(s vpmctl show --json | json_at aid=z peers '#')"
s vpmctl del --aid z --port 7000
subtest PASS peer-commands

# ---- S's instances, the capture, the agents ---------------------------------
s vpmctl exec --aid a --port 9000 -- $NET serve a 9000 >"$work/a.log" 2>&1 &
s vpmctl exec --aid b --port 9000 -- $NET serve b 9000 >"$work/b.log" 2>&1 &
expect "S's instances start" wait_for 60 grep -q ready "$work/a.log"
expect "S's instances start" wait_for 60 grep -q ready "$work/b.log"
nsenter --net=/run/netns/vpmps tcpdump -i veth-ps -nn -l -q 'tcp or udp' >"$work/cap.txt" 2>"$work/tcpdump.log" &
cap=$!
expect "the capture starts" wait_for 30 grep -q 'listening on' "$work/tcpdump.log"
start_s
expect "S's agent starts" wait_for 30 test -s "$work/s.json"
start_c
expect "C's agent negotiates a and b, and is refused c (C log: $(tail -n 3 "$work/c.log" 2>/dev/null))" \
	wait_for 60 ready
na=$(cneg a)
nb=$(cneg b)
expect_eq "a's negotiated port is S's allocation" "$(sanon a)" "$na"
expect_eq "b's negotiated port is S's allocation" "$(sanon b)" "$nb"
expect "C's data path is in place" wait_for 10 test -e "$cpins/@remote-v1"
# S's agent made C's addresses peers of both allocations.
peers_set() { [ "$(speers a)" = "10.204.0.1 fd00:204::1" ] && [ "$(speers b)" = "10.204.0.1 fd00:204::1" ]; }
expect "S's allocations have C's addresses as peers (show: $(s vpmctl show))" wait_for 15 peers_set
expect "vpmctl show on S lists the peers" bash -c "nsenter --net=/run/netns/vpmps vpmctl show | grep -q '10.204.0.1,fd00:204::1'"
subtest PASS negotiate

# ---- every kind of exchange, as a and as b ----------------------------------
peer0=$(s vpmctl status --json | json pkts_peer)
xin0=$(s vpmctl status --json | json pkts_xlat_in)
xout0=$(s vpmctl status --json | json pkts_xlat_out)
for aid in a b; do
	# asks prints "TARGET NAME peer=PORT" per target.
	out=$(as "$aid" $CC asks $TARGETS name/10.204.0.2/9000 name/fd00:204::2/9000)
	for t in $TARGETS; do
		expect_eq "$t as $aid: answered by instance $aid, which shows as 9000" \
			"$t $aid peer=9000" "$(grep -F "$t " <<<"$out" || echo "$t (no line) $out")"
	done
	# And the instance sees its own port as 9000 (getsockname on S).
	for t in name/10.204.0.2/9000 name/fd00:204::2/9000; do
		expect_eq "$t as $aid: instance $aid sees 9000 as its port" \
			"$t $aid sockname=9000" "$(grep -F "$t " <<<"$out" || echo "$t (no line) $out")"
	done
done
subtest PASS exchange

# S's module left the replies to C on the negotiated ports, counted, and
# translated nothing (C never addressed 9000).
peer1=$(s vpmctl status --json | json pkts_peer)
expect "S counts the replies to its peer (before $peer0, after $peer1)" test "$peer1" -ge $((peer0 + 12))
expect_eq "S translated nothing inbound" "$xin0" "$(s vpmctl status --json | json pkts_xlat_in)"
expect_eq "S translated no reply back to 9000" "$xout0" "$(s vpmctl status --json | json pkts_xlat_out)"
# The wire: C's packets go to the negotiated ports and replies come from
# them, over IPv4 and IPv6, TCP and UDP; nothing of C's on port 9000.
sleep 1
for n in "$na" "$nb"; do
	for pat in "10.204.0.1.[0-9]* > 10.204.0.2.$n: tcp" "10.204.0.2.$n > 10.204.0.1.[0-9]*: tcp" \
		"10.204.0.1.[0-9]* > 10.204.0.2.$n: UDP" "10.204.0.2.$n > 10.204.0.1.[0-9]*: UDP" \
		"fd00:204::1.[0-9]* > fd00:204::2.$n: tcp" "fd00:204::2.$n > fd00:204::1.[0-9]*: tcp" \
		"fd00:204::1.[0-9]* > fd00:204::2.$n: UDP" "fd00:204::2.$n > fd00:204::1.[0-9]*: UDP"; do
		expect "the capture shows '$pat'" grep -q "$pat" "$work/cap.txt"
	done
done
expect_not "no packet on the wire carries port 9000 ($(grep -E '\.9000[ :]' "$work/cap.txt" | head -n 3))" \
	grep -qE '\.9000[ :]' "$work/cap.txt"
subtest PASS wire

# ---- refused: c is not exported, so its packets never leave C ---------------
lines0=$(wc -l <"$work/cap.txt")
start=$(date +%s%N)
out=$(as c $CC asks tcp/10.204.0.2/9000 udp/10.204.0.2/9000 tcp/fd00:204::2/9000 udpc/fd00:204::2/9000)
ms=$((($(date +%s%N) - start) / 1000000))
# connect (TCP, and UDP's) and sendto are refused by the hooks.
for t in tcp/10.204.0.2/9000 udp/10.204.0.2/9000 tcp/fd00:204::2/9000 udpc/fd00:204::2/9000; do
	expect_eq "$t as c: refused at once" "$t refused ECONNREFUSED" "$(grep -F "$t " <<<"$out")"
done
expect "refusals take no time waiting (${ms} ms for exec and four attempts)" test "$ms" -lt 20000
sleep 1
expect_not "c's attempts put nothing on the wire" \
	bash -c "tail -n +$((lines0 + 1)) $work/cap.txt | grep -v '\.9478[ :]' | grep -q ."
subtest PASS refused

# ---- C's clients outside any AID are no cooperative peers' clients ----------
# S's default for 9000 is a: a plain client on C reaches a through the
# fixed port, translated both ways, although C is a's peer.
s vpmctl rule add --port 9000 --aid a
xout0=$(s vpmctl status --json | json pkts_xlat_out)
out=$(c $CC asks tcp/10.204.0.2/9000 udp/fd00:204::2/9000 udpc/10.204.0.2/9000)
expect_eq "a plain client on C gets a through 9000 ($out)" 3 "$(grep -c ' a peer=9000' <<<"$out")"
expect "S translated the plain client's replies" test "$(s vpmctl status --json | json pkts_xlat_out)" -gt "$xout0"
out=$(as b $CC asks tcp/10.204.0.2/9000 udp/10.204.0.2/9000)
expect_eq "b's clients still get b ($out)" 2 "$(grep -c ' b peer=9000' <<<"$out")"
s vpmctl rule del --port 9000
subtest PASS plain-clients

# ---- S's agent restarts: an established connection carries on ---------------
as a $CC hold 10.204.0.2 9000 "$work/go" "$work/done" >"$work/hold.log" 2>&1 &
expect "a holds a connection" wait_for 30 grep -q "first a peer=9000" "$work/hold.log"
restart s
out=$(as b $CC asks tcp/10.204.0.2/9000 udp/fd00:204::2/9000)
expect "new exchanges after S's restart ($out)" test "$(grep -c ' b peer=9000' <<<"$out")" = 2
# (After the exchanges: the restarted agent has synced the kernel by now.)
expect_eq "S's peers are still there" "10.204.0.1 fd00:204::1" "$(speers a)"
# Again, with S's state file lost: a new epoch and no records, but the
# kernel's peers are adopted (two allocations, two addresses each) until
# C negotiates again, so C's sockets carry on.
restart s rm -f "$work/s.json"
expect "S's agent adopted the peers it found" grep -q "event=start.* adopted=4" "$work/s.log"
out=$(as a $CC asks tcp/10.204.0.2/9000 udpc/fd00:204::2/9000)
expect "new exchanges after S lost its state ($out)" test "$(grep -c ' a peer=9000' <<<"$out")" = 2
expect_eq "S's peers are still there" "10.204.0.1 fd00:204::1" "$(speers b)"
touch "$work/go"
expect "the held connection carries on after S's agent restarted" wait_for 30 grep -q "second a" "$work/done"
rm -f "$work/go" "$work/done"

# ---- and then C's: the grants are resumed, the data path stays ----------------
as b $CC hold 10.204.0.2 9000 "$work/go" "$work/done" >"$work/hold.log" 2>&1 &
expect "b holds a connection" wait_for 30 grep -q "first b peer=9000" "$work/hold.log"
restart c
expect "C's agent resumed both grants" grep -q "event=start.* resumed=2" "$work/c.log"
out=$(as a $CC asks udp/10.204.0.2/9000 tcp/fd00:204::2/9000)
expect "new exchanges right after C's restart ($out)" test "$(grep -c ' a peer=9000' <<<"$out")" = 2
touch "$work/go"
expect "the held connection carries on after C's agent restarted" wait_for 30 grep -q "second b" "$work/done"
subtest PASS restarts

# ---- ICMP errors about a direct flow keep the negotiated port ----------------
# b's instance goes: S's kernel answers C's datagrams to b's port with a
# port unreachable, whose quote S leaves as it is (the negotiated port),
# so C's connected sockets learn it at once.  Had S translated the
# quote to 9000, no socket of C would match it, and they would wait.
icmp0=$(s vpmctl status --json | json pkts_icmp_xlat)
pkill -f "vpmnet.py serve b 9000"
gone() { ! pgrep -f "vpmnet.py serve b 9000" >/dev/null; }
expect "b's instance stops" wait_for 10 gone
out=$(as b $CC asks udpc/10.204.0.2/9000 udpc/fd00:204::2/9000)
for t in udpc/10.204.0.2/9000 udpc/fd00:204::2/9000; do
	expect_eq "$t as b: the port unreachable reaches C's socket" "$t failed ECONNREFUSED" "$(grep -F "$t " <<<"$out")"
done
expect_eq "S translated no ICMP error" "$icmp0" "$(s vpmctl status --json | json pkts_icmp_xlat)"
subtest PASS icmp

# ---- b released on reload: S's allocation loses its peers ---------------------
cconf a c >"$work/c.toml"
kill -HUP "$cpid"
b_unset() { [ -z "$(speers b)" ] && [ "$(speers a)" = "10.204.0.1 fd00:204::1" ]; }
expect "b's peers are gone on S, a's stay (S log: $(tail -n 2 "$work/s.log"))" wait_for 30 b_unset
subtest PASS release

# ---- C's agent stops for good: its grants end with their lifetimes -----------
# a's lifetime becomes 10 s (renewed in place on reload); then the agent
# stops.  Once the grant has ended, a's connects are refused at once:
# neither sent to the old port nor to S's fixed port.
cconf a c | sed 's/^lifetime = 60$/lifetime = 10/' >"$work/c.toml"
kill -HUP "$cpid"
short() { field "$work/c.json" "[e['expires_ms'] for e in d['client'] if e['want']['aid'] == 'a'][0]" |
	python3 -c "import sys, time; sys.exit(0 if int(sys.stdin.read()) - time.time() * 1000 <= 11000 else 1)"; }
expect "a is renewed with 10 s" wait_for 20 short
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
lines0=$(wc -l <"$work/cap.txt")
refused_a() { as a $CC asks tcp/10.204.0.2/9000 | grep -q 'refused ECONNREFUSED'; }
expect "a's ended grant refuses (C log: $(tail -n 2 "$work/c.log"))" wait_for 30 refused_a
expect_not "and sends nothing to 9000" bash -c "tail -n +$((lines0 + 1)) $work/cap.txt | grep -qE '\.9000[ :]'"
subtest PASS grants-end
