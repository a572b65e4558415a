#!/usr/bin/env bash
# vpm-timeout: 720
# vpm-timeout-long: 1500
# vpm on a real host (issue 8): it translates only this host's own streams,
# and what a hostile or unlucky sender does cannot break them.
#
#   vpmhc 10.203.1.1 ---- 10.203.1.2  vpmhr (vpm)  10.203.2.2 ---- 10.203.2.1 vpmhs
#         fd00:203:1::1   fd00:203:1::2  router    fd00:203:2::2   fd00:203:2::1
#         client          a, b on anonymous ports, "fixed" on 9000   remote server
#
# The router vpmhr runs instances a and b behind port 9000 and forwards
# between the client and the remote server, which has its own service on
# port 9000 and one on the number that is a's anonymous port on vpmhr.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c() { ip netns exec vpmhc "$@"; }
r() { ip netns exec vpmhr "$@"; }
s() { ip netns exec vpmhs "$@"; }
raw() { python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" "$@"; }

load
fresh_netns vpmhc vpmhr vpmhs
routed vpmhc vpmhr vpmhs 203

A=$(r vpmctl add --aid a --port 9000 --json | json anon_port)
B=$(r vpmctl add --aid b --port 9000 --json | json anon_port)
r vpmctl rule add --port 9000 --aid a

start_servers() { # NETNS-FN FILE NAME:PORT[,PORT...]...: in one process
	local ns=$1 out=$work/$2
	shift 2
	$ns python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" serves "$@" >"$out" 2>&1 &
	for _ in $(seq 100); do grep -q ready "$out" && return; sleep 0.1; done
	echo "servers $* did not start: $(cat "$out")" >&2
	exit 1
}
start_servers r srv-router "a:$A" "b:$B" fixed:9000
start_servers s srv-remote remote:9000,7000 "remote-anon:$A"

# asks NETNS-FN PORT PROTO/ADDR...: the names that answered, on one line.
asks() { local ns=$1 port=$2; shift 2; $ns python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" asks "$port" "$@"; }
stat() { status_field vpmhr "$1"; }

echo "== forwarding" >&2
# 1. Forwarded traffic to a remote fixed port is not vpm's: the client
# reaches the remote server's own port 9000 (not the remote service that
# happens to sit on a's anonymous port number), over TCP/UDP, v4/v6.
foreign0=$(stat pkts_foreign)
xin0=$(stat pkts_xlat_in)
xout0=$(stat pkts_xlat_out)
expect_eq "forwarded to the remote port 9000" "remote remote remote remote" \
	"$(asks c 9000 tcp/10.203.2.1 tcp/fd00:203:2::1 udp/10.203.2.1 udp/fd00:203:2::1)"
# 2. Forwarded replies from a port that is an anonymous port here are not
# vpm's either: the client talks to the remote port $A and hears from it.
expect_eq "forwarded from the remote port $A" "remote-anon remote-anon remote-anon remote-anon" \
	"$(asks c "$A" tcp/10.203.2.1 tcp/fd00:203:2::1 udp/10.203.2.1 udp/fd00:203:2::1)"
expect_eq "nothing forwarded was translated (in)" "$xin0" "$(stat pkts_xlat_in)"
expect_eq "nothing forwarded was translated (out)" "$xout0" "$(stat pkts_xlat_out)"
expect "forwarded packets counted as foreign" test "$(stat pkts_foreign)" -gt "$foreign0"
# 3. The router's own service behind port 9000 still works, from both sides.
expect_eq "the router's own port 9000" "a a a a" \
	"$(asks c 9000 tcp/10.203.1.2 tcp/fd00:203:1::2 udp/10.203.1.2 udp/fd00:203:1::2)"
expect_eq "the router's own port 9000 from the server side" "a a" \
	"$(asks s 9000 tcp/10.203.2.2 udp/fd00:203:2::2)"
subtest PASS forwarded-traffic-untouched

# 4 is in the long form only: 96-malformed's corpus asserts the same
# policy case by case (v6-chain-9, v4-tiny-first-fragment, ...).
if long; then
	echo "== unparsable" >&2
	# 4. Packets vpm cannot see the ports of pass untouched and are counted
	# (the stated policy): a UDP/IPv6 datagram behind 9 extension headers
	# reaches the fixed port's own listener; an IPv4 first fragment cut inside
	# the TCP header is not translated.  Two extension headers are walked.
	mal0=$(stat pkts_malformed)
	expect_eq "9 extension headers: passed to the fixed listener" fixed "$(c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" ext6 fd00:203:1::1 fd00:203:1::2 9000 9)"
	expect_eq "2 extension headers: translated" a "$(c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" ext6 fd00:203:1::1 fd00:203:1::2 9000 2)"
	frag0=$(stat pkts_fragments)
	capture_start vpmhc veth-c "$work/frag.pcap" tcp port 47001
	c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" tinyfrag 10.203.1.1 10.203.1.2 9000 >/dev/null
	sleep 2
	capture_stop
	expect_eq "malformed: the long chain and the tiny fragment" $((mal0 + 2)) "$(stat pkts_malformed)"
	expect_eq "the tiny fragment's rest passed as a fragment" $((frag0 + 1)) "$(stat pkts_fragments)"
	# Reassembled untranslated, the SYN reached the fixed port's own listener,
	# whose SYN-ACK comes from port 9000.
	expect "the fixed listener answered the tiny-fragment SYN" \
		test "$(tcpdump -r "$work/frag.pcap" -nn 'src port 9000 and tcp[13] & 0x12 == 0x12' 2>/dev/null | wc -l)" -ge 1
	subtest PASS unparsable-policy
fi

echo "== udp6 zero checksum" >&2
# 5. UDP over IPv6 whose translated checksum computes to zero must leave
# with 0xffff (a zero one is dropped by the receiver), in both directions,
# with software checksums (veth tx offload off).
c ethtool -K veth-c tx off >/dev/null
r ethtool -K veth-rc tx off >/dev/null
expect_eq "UDP/IPv6, zero checksum after translation, inbound" a \
	"$(c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" udp6-zero fd00:203:1::1 fd00:203:1::2 9000 "$A" 45123 in)"
expect_eq "UDP/IPv6, zero checksum after translation, reply" a \
	"$(c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" udp6-zero fd00:203:1::1 fd00:203:1::2 9000 "$A" 45124 out)"
for ns in vpmhc vpmhr; do
	expect_eq "UDP checksum errors in $ns" 0 "$(ip netns exec $ns nstat -asz Udp6InCsumErrors UdpInCsumErrors | awk 'NR > 1 { s += $2 } END { print s + 0 }')"
done
c ethtool -K veth-c tx on >/dev/null
r ethtool -K veth-rc tx on >/dev/null
subtest PASS udp6-zero-checksum

echo "== syn flood" >&2
# 6. Spoofed SYNs cannot strip established connections of their pins:
# 16 established connections to a, then SYNs from spoofed sources (the
# router's answers are routed towards the client, so they pass vpm like
# real ones), then the rule sends newcomers to b: every established
# connection still talks to a.  The flow table has 8,192 slots in 2,048
# buckets of 4 ways, and the bucket a flow lands in is a keyed hash,
# which the flood cannot aim at.  The short form sends 8,192 SYNs (as
# many as the table has slots, 4 per bucket on average): a bucket with
# an established pin has 3 ways left, and each of the 16 such buckets
# gets 4 or more spoofed flows (which must then evict something other
# than the pin) with probability 0.57, so about 9 of the 16 pins are
# tested, and none with probability 0.43^16, about 1.5e-6.  The long form
# sends 16,384 (twice the table: 8 per bucket, about 15 of the 16).
r ip route add 10.250.0.0/16 via 10.203.1.1
c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" hold 10.203.1.2 9000 16 "$work/go" >"$work/hold" 2>&1 &
holder=$!
for _ in $(seq 200); do grep -q ready "$work/hold" && break; sleep 0.1; done
expect_eq "16 established connections to a" "ready$(printf ' a%.0s' $(seq 16))" "$(head -n1 "$work/hold")"
evicted0=$(stat flows_evicted)
# Meanwhile the control plane is timed and slab memory sampled
# (tests/vm/lib/stress.py responsive: the slowest round trip must stay
# under 10 s).
r python3 "$VPM_ROOT/tests/vm/lib/stress.py" responsive "$work/flood-done" 10 >"$work/responsive" 2>&1 &
resp=$!
start=$(date +%s)
sent=$(c python3 "$VPM_ROOT/tests/vm/lib/vpmraw.py" synflood 10.250 10.203.1.2 9000 "$(pick 8192 16384)")
echo "sent $sent spoofed SYNs in $(($(date +%s) - start)) s"
touch "$work/flood-done"
expect "the control plane answered during the flood: $(cat "$work/responsive")" wait $resp
grep -h '^VPM-REL ' "$work/responsive"
expect "the flood churned the flow table" test "$(stat flows_evicted)" -gt "$evicted0"
r vpmctl rule del --port 9000
r vpmctl rule add --port 9000 --aid b
expect_eq "a new connection follows the new rule" b "$(asks c 9000 tcp/10.203.1.2)"
touch "$work/go"
expect "the holder finished" wait $holder
expect_eq "every established connection stayed with a" "after$(printf ' a%.0s' $(seq 16))" "$(tail -n1 "$work/hold")"
r vpmctl rule del --port 9000
r vpmctl rule add --port 9000 --aid a
subtest PASS syn-flood-keeps-pins

echo "== refused" >&2
# 7. A connection to an allocation nobody listens on is refused at once:
# the kernel's reset (sent for no socket) leaves with the fixed port.
r vpmctl add --aid c --port 9001 >/dev/null
r vpmctl rule add --port 9001 --aid c
refused() { # ADDR...: how a TCP connect to each ADDR:9001 ends, on one line
	c python3 -c '
import socket, sys
ends = []
for addr in sys.argv[1:]:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect((addr, 9001))
        ends.append("connected")
    except OSError as e:
        ends.append(type(e).__name__)
print(" ".join(ends))' "$@"
}
expect_eq "refused over IPv4, then IPv6" "ConnectionRefusedError ConnectionRefusedError" \
	"$(refused 10.203.1.2 fd00:203:1::2)"
subtest PASS refused-by-reset

echo "== snat" >&2
# 8. A local socket whose source port a source NAT rewrote to a's
# anonymous port is not a's: the remote server sees port $A, not 9000.
r nft -f - <<EOF
table ip vpmsnat {
	chain post { type nat hook postrouting priority srcnat; ip daddr 10.203.2.1 udp dport 7000 snat to 10.203.2.2:$A; }
}
EOF
capture_start vpmhs veth-s "$work/s.pcap" udp port 7000
expect_eq "UDP through the source NAT" remote "$(asks r 7000 udp/10.203.2.1)"
sleep 1
capture_stop
# The wire, not pkts_xlat_out, says what vpm did: a's listener is still
# retransmitting SYN-ACKs to the flood's spoofed sources (for up to a
# minute), and those are translated out meanwhile.
expect "the server saw source port $A" test "$(tcpdump -r "$work/s.pcap" -nn "src port $A" 2>/dev/null | wc -l)" -ge 1
expect_eq "the server saw no source port 9000" 0 "$(tcpdump -r "$work/s.pcap" -nn 'src port 9000' 2>/dev/null | wc -l)"
r nft delete table ip vpmsnat
subtest PASS snat-untouched
