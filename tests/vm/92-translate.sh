#!/usr/bin/env bash
# vpm-timeout: 900
# vpm-timeout-long: 1200
# The packet path: two instances (AIDs a and b) behind fixed port 9000 on
# one server; clients from two networks reach a and b respectively over
# TCP and UDP, IPv4 and IPv6, and only ever see port 9000.
#
#   +-- vpmc1 ---------+           +-- vpms ------------------------+
#   | veth-c1          |-----------| veth-s1  10.201.1.2 fd00:201:1::2 |
#   | 10.201.1.1       |           |                                  |
#   +------------------+           |  a: anon port A  (rules: net 1)  |
#   +-- vpmc2 ---------+           |  b: anon port B  (rules: net 2)  |
#   | veth-c2          |-----------| veth-s2  10.201.2.2 fd00:201:2::2 |
#   | 10.201.2.1       |           |  "fixed": whatever listens on    |
#   +------------------+           |  9000 itself                     |
#                                  +----------------------------------+
#
# The short form moves 4 MiB in its bulk transfer over IPv4 and, with
# conntrack loaded, asks from network 1 only; the long form moves 64 MiB
# and asks from both networks again.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c1() { ip netns exec vpmc1 "$@"; }
c2() { ip netns exec vpmc2 "$@"; }
s() { ip netns exec vpms "$@"; }
net() { python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" "$@"; }

load
fresh_netns vpmc1 vpmc2 vpms
two_clients 201

A=$(s vpmctl add --aid a --port 9000 --json | json anon_port)
B=$(s vpmctl add --aid b --port 9000 --json | json anon_port)
expect "distinct anonymous ports" test "$A" != "$B"
s vpmctl rule add --port 9000 --from 10.201.1.0/24 --aid a
s vpmctl rule add --port 9000 --from fd00:201:1::/64 --aid a
s vpmctl rule add --port 9000 --from 10.201.2.0/24 --aid b
s vpmctl rule add --port 9000 --from fd00:201:2::/64 --aid b

# The three servers, a, b and "fixed", run in one process (one
# interpreter start).
s python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" serves "a:$A" "b:$B" fixed:9000 >"$work/srv" 2>&1 &
for _ in $(seq 100); do grep -q ready "$work/srv" && break; sleep 0.1; done
expect "the servers started (said: $(cat "$work/srv"))" grep -q ready "$work/srv"

# ask NETNS-FN PROTO ADDR [ARGS...]: the name of the server that answered.
ask() { local ns=$1; shift; $ns python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" ask "$1" "$2" 9000 "${@:3}"; }
# asks NETNS-FN PROTO/ADDR...: the names that answered, on one line.
asks() { local ns=$1; shift; $ns python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" asks 9000 "$@"; }
# Every protocol and family towards server network I.
all_of() { echo tcp/10.201.$1.2 tcp/fd00:201:$1::2 udp/10.201.$1.2 udp/fd00:201:$1::2; }

csum_errors() { # NETNS: checksum error counters, summed
	ip netns exec "$1" nstat -asz TcpInCsumErrors UdpInCsumErrors Udp6InCsumErrors \
		| awk 'NR > 1 { s += $2 } END { print s + 0 }'
}

# 1 + 2: both instances, both families, both protocols, with veth
# checksum offload on (CHECKSUM_PARTIAL) and off (full software sums).
for tx in on off; do
	for i in 1 2; do
		ip netns exec "vpmc$i" ethtool -K "veth-c$i" tx "$tx" >/dev/null
		s ethtool -K "veth-s$i" tx "$tx" >/dev/null
	done
	expect_eq "tcp/udp v4/v6 from net 1 (tx $tx)" "a a a a" "$(asks c1 $(all_of 1))"
	expect_eq "tcp/udp v4/v6 from net 2 (tx $tx)" "b b b b" "$(asks c2 $(all_of 2))"
	for ns in vpmc1 vpmc2 vpms; do
		expect_eq "checksum errors in $ns (tx $tx)" 0 "$(csum_errors $ns)"
	done
	subtest PASS "two-instances-tx-$tx"
done

# The client only ever sees port 9000: capture its side of the wire.
capture_start vpmc1 veth-c1 "$work/c1.pcap" tcp or udp
asks c1 tcp/10.201.1.2 udp/fd00:201:1::2 >/dev/null
sleep 1
capture_stop
n9000=$(tcpdump -r "$work/c1.pcap" -nn 'port 9000' 2>/dev/null | wc -l)
nanon=$(tcpdump -r "$work/c1.pcap" -nn "port $A or port $B" 2>/dev/null | wc -l)
expect "the client saw packets to and from port 9000" test "$n9000" -ge 8
expect_eq "packets with an anonymous port on the client's wire" 0 "$nanon"
subtest PASS client-sees-fixed-port

# 3: bulk transfers arrive byte-identical (the server checks the hash):
# 1 MiB over IPv6, 4 MiB over IPv4 (64 MiB in the long form).
mib=$(pick 4 64)
expect_eq "1 MiB over IPv6" a "$(ask c1 tcp fd00:201:1::2 --size 1048576)"
expect_eq "$mib MiB over IPv4" b "$(ask c2 tcp 10.201.2.2 --size $((mib << 20)))"
subtest PASS bulk-transfers

# 5: fragmented UDP datagrams (4 KiB over MTU 1280), both ways.
for dev in "vpmc1 veth-c1" "vpms veth-s1"; do
	set -- $dev
	ip -n "$1" link set "$2" mtu 1280
done
frags=$(status_field vpms pkts_fragments)
expect_eq "4 KiB datagram over IPv4" a "$(ask c1 udp 10.201.1.2 --size 4000)"
expect_eq "4 KiB datagram over IPv6" a "$(ask c1 udp fd00:201:1::2 --size 4000)"
expect "non-first fragments were seen and passed" test "$(status_field vpms pkts_fragments)" -gt "$frags"
ip -n vpmc1 link set veth-c1 mtu 1500
ip -n vpms link set veth-s1 mtu 1500
subtest PASS fragments

# 9: counters match the traffic: 50 datagrams of 100 bytes over IPv4,
# 128 bytes each way in (IP + UDP + payload), 130 out ("a " + payload).
counters() { # the counters of AID a, then the namespace's translations
	s vpmctl show --json | python3 -c '
import json, sys
m = next(m for m in json.load(sys.stdin) if m["aid"] == "a")
print(m["pkts_in"], m["bytes_in"], m["pkts_out"], m["bytes_out"])'
	local st
	st=$(s vpmctl status --json)
	echo "$(json pkts_xlat_in <<<"$st") $(json pkts_xlat_out <<<"$st")"
}
before=($(counters))
expect_eq "50 datagrams" a "$(ask c1 udp 10.201.1.2 --size 100 --count 50)"
after=($(counters))
what=("packets in" "bytes in" "packets out" "bytes out" "namespace: translated in" "namespace: translated out")
want=(50 6400 50 6500 50 50)
for i in 0 1 2 3 4 5; do
	expect_eq "${what[$i]}" "${want[$i]}" $((after[i] - before[i]))
done
subtest PASS exact-counters

# No rule, no default: the packet passes untouched to the fixed port's
# own listener, and is counted.  A default AID then claims it.
s vpmctl rule del --port 9000 --from 10.201.1.0/24
noaid=$(status_field vpms pkts_no_aid)
expect_eq "unclaimed tcp and udp" "fixed fixed" "$(asks c1 tcp/10.201.1.2 udp/10.201.1.2)"
expect "unclaimed packets counted" test "$(status_field vpms pkts_no_aid)" -gt "$noaid"
s vpmctl rule add --port 9000 --aid b
expect_eq "default AID; a longer prefix still beats it" "b a" "$(asks c1 tcp/10.201.1.2 tcp/fd00:201:1::2)"
s vpmctl rule del --port 9000
s vpmctl rule add --port 9000 --from 10.201.1.0/24 --aid a
subtest PASS unclaimed-and-default

# 4: a rule change does not move established flows.  A slow TCP download
# (about 6 s) and a UDP flow (fixed source port) stay with a; new ones
# follow the new rule to b.
flows0=$(status_field vpms flows_new)
ip netns exec vpmc1 python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" ask tcp 10.201.1.2 9000 \
	--slow --size 2097152 >"$work/long" 2>&1 &
long=$!
expect_eq "UDP flow from port 45000 before the change" a "$(ask c1 udp 10.201.1.2 --sport 45000)"
s vpmctl rule del --port 9000 --from 10.201.1.0/24
s vpmctl rule add --port 9000 --from 10.201.1.0/24 --aid b
expect "the download was still running when the rule changed" kill -0 $long
expect_eq "a new TCP connection follows the new rule" b "$(asks c1 tcp/10.201.1.2)"
expect_eq "the UDP flow stays pinned" a "$(ask c1 udp 10.201.1.2 --sport 45000)"
expect_eq "a new UDP flow follows the new rule" b "$(ask c1 udp 10.201.1.2 --sport 45001)"
expect "the established download completed" wait $long
expect_eq "the established download stayed with its instance" a "$(cat "$work/long")"
expect "flows were pinned" test "$(status_field vpms flows_new)" -ge $((flows0 + 4))
expect "pinned flows are active" test "$(status_field vpms flows_active)" -ge 1
s vpmctl rule del --port 9000 --from 10.201.1.0/24
s vpmctl rule add --port 9000 --from 10.201.1.0/24 --aid a
subtest PASS rule-change-keeps-flows

# 7: local clients reach the instance of their cgroup over loopback.
make_cgroup vpm-a
make_cgroup vpm-b
s vpmctl add --aid a --port 9000 --cgroup /sys/fs/cgroup/vpm-a >/dev/null
s vpmctl add --aid b --port 9000 --cgroup /vpm-b >/dev/null
expect_eq "cgroup path shown" /vpm-a "$(s vpmctl show --json | json_at aid=a cgroup)"
in_cgroup() { # CGROUP CMD...: run CMD inside cgroup CGROUP
	local cg=$1
	shift
	sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "/sys/fs/cgroup/$cg" "$@"
}
local_all="tcp/127.0.0.1 tcp/::1 udp/127.0.0.1 udp/::1"
for cg in a b; do
	expect_eq "loopback tcp/udp v4/v6 from cgroup vpm-$cg" "$cg $cg $cg $cg" \
		"$(in_cgroup vpm-$cg ip netns exec vpms python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" asks 9000 $local_all)"
done
expect_eq "local client outside both cgroups" fixed "$(asks s tcp/127.0.0.1)"
# Any depth: a client ten levels below vpm-a is still a's (the ancestor
# walk once stopped after 8 levels).
deep=vpm-a
for i in $(seq 10); do deep=$deep/d$i; done
make_cgroup "$deep"
expect_eq "loopback from ten levels below cgroup vpm-a" a \
	"$(in_cgroup "$deep" ip netns exec vpms python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" asks 9000 tcp/127.0.0.1)"
subtest PASS loopback-by-cgroup

# 8: the same with conntrack and an nftables NAT ruleset in the server's
# namespace (conntrack sees the anonymous ports; see vpm_glue.c): every
# protocol and family from network 1 and a 1 MiB transfer from network 2
# (the long form: every protocol and family from network 2 too).
s nft -f - <<'EOF'
table inet vpmtest {
	chain pre { type nat hook prerouting priority dstnat; tcp dport 7777 dnat ip to 10.201.1.2:7778; }
	chain post { type nat hook postrouting priority srcnat; oifname "veth-s2" masquerade; }
	chain in { type filter hook input priority filter; ct state invalid counter drop; }
}
EOF
expect_eq "net 1 with conntrack" "a a a a" "$(asks c1 $(all_of 1))"
if long; then
	expect_eq "net 2 with conntrack" "b b b b" "$(asks c2 $(all_of 2))"
fi
expect_eq "1 MiB with conntrack" b "$(ask c2 tcp 10.201.2.2 --size 1048576)"
dropped=$(s nft list chain inet vpmtest in | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
expect_eq "packets conntrack found invalid" 0 "$dropped"
for ns in vpmc1 vpmc2 vpms; do
	expect_eq "checksum errors in $ns" 0 "$(csum_errors $ns)"
done
subtest PASS with-conntrack-and-nat

expect "no hw csum failure" sh -c '! dmesg | grep -q "hw csum failure"'
