#!/usr/bin/env bash
# vpm-timeout: 300
# Traffic between two namespaces passes vpm's hooks unchanged, and each
# namespace's counter moves by exactly what it saw; without an allocation
# a namespace has no hooks and counts nothing.
#
#   +-- vpmc --------+           +-- vpms --------+
#   | veth-c          |-----------| veth-s          |
#   | 10.200.0.1/24   |           | 10.200.0.2/24   |
#   | fd00:200::1/64  |           | fd00:200::2/64  |
#   +-----------------+           +-----------------+
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c() { ip netns exec vpmc "$@"; }
s() { ip netns exec vpms "$@"; }

load
fresh_netns vpmc vpms
# One ip process per namespace (ip -batch): every process start costs
# about a second in the debug guest.
ip link add veth-c netns vpmc type veth peer name veth-s netns vpms
printf '%s\n' "addr add 10.200.0.1/24 dev veth-c" "addr add fd00:200::1/64 dev veth-c nodad" \
	"link set lo up" "link set dev veth-c up" | ip -n vpmc -b -
printf '%s\n' "addr add 10.200.0.2/24 dev veth-s" "addr add fd00:200::2/64 dev veth-s nodad" \
	"link set lo up" "link set dev veth-s up" | ip -n vpms -b -
# An allocation in each namespace, on a port this traffic never uses: it
# registers the hooks, which then see all of it and must leave it alone.
# init_net gets one too, so that its hooks are there to not see the
# namespaces' traffic.
for n in vpmc vpms; do ip netns exec $n vpmctl add --aid bystander --port 7777 >/dev/null; done
vpmctl add --aid bystander --port 7777 >/dev/null
at_exit vpmctl flush

# ICMP over both families.
c ping -q -c 5 -W 2 10.200.0.2 >/dev/null
subtest PASS ping4
c ping -q -c 5 -W 2 fd00:200::2 >/dev/null
subtest PASS ping6

# TCP over both families: 1 MiB arrives byte-identical.
head -c 1048576 /dev/urandom >"$work/send"
want=$(sha256sum <"$work/send")
for addr in 10.200.0.2 fd00:200::2; do
	case $addr in *:*) fam=tcp6; dst="[$addr]" ;; *) fam=tcp4; dst=$addr ;; esac
	rm -f "$work/recv"
	# Started directly (not through `s`), so that $! is socat itself.
	ip netns exec vpms socat -u "${fam^^}-LISTEN:9000,reuseaddr" "OPEN:$work/recv,creat,trunc" &
	srv=$!
	for _ in $(seq 50); do s ss -Htln 'sport = :9000' | grep -q . && break; sleep 0.1; done
	c socat -u "OPEN:$work/send" "${fam^^}:$dst:9000"
	wait $srv
	expect_eq "sha256 of the $fam transfer" "$want" "$(sha256sum <"$work/recv")"
	subtest PASS "$fam-1MiB"
done

# Exact counts: 100 UDP datagrams, IPv4 only, with the namespaces' IPv6
# switched off so no neighbour discovery or MLD is counted alongside.
for n in vpmc vpms; do ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
# Started directly, so that killing $! below ends socat, not a subshell
# that would leave it running.
ip netns exec vpms socat -u UDP4-RECV:9001 "OPEN:$work/udp,creat,trunc" &
srv=$!
for _ in $(seq 50); do s ss -Huln 'sport = :9001' | grep -q . && break; sleep 0.1; done
c ping -q -c 1 -W 2 10.200.0.2 >/dev/null # resolve ARP first
sleep 0.5
before_c=$(status_field vpmc pkts_seen)
before_s=$(status_field vpms pkts_seen)
before_init=$(status_field pkts_seen)
send100() {
	c python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(100):
    s.sendto(b"%064d" % i, ("10.200.0.2", 9001))
'
	sleep 0.5
}
send100
expect_eq "server-side packets seen (PRE_ROUTING, 100 datagrams)" 100 \
	$(($(status_field vpms pkts_seen) - before_s))
expect_eq "client-side packets seen (LOCAL_OUT + POST_ROUTING, 100 datagrams)" 200 \
	$(($(status_field vpmc pkts_seen) - before_c))
expect_eq "init_net packets seen (other namespaces' traffic)" 0 \
	$(($(status_field pkts_seen) - before_init))
vpmctl del --aid bystander --port 7777

# The last allocation gone, the hooks go with it: the same 100 datagrams
# arrive and neither namespace counts any of them.
for n in vpmc vpms; do ip netns exec $n vpmctl del --aid bystander --port 7777; done
expect_eq "hooks without an allocation" "0 0" "$(status_field vpmc hooks) $(status_field vpms hooks)"
before_c=$(status_field vpmc pkts_seen)
before_s=$(status_field vpms pkts_seen)
send100
expect_eq "packets seen without hooks (client, server)" "0 0" \
	"$(($(status_field vpmc pkts_seen) - before_c)) $(($(status_field vpms pkts_seen) - before_s))"
kill $srv 2>/dev/null || true
expect_eq "bytes received over UDP" 12800 "$(stat -c %s "$work/udp")"
subtest PASS udp4-exact-counts
