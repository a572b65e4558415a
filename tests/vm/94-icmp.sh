#!/usr/bin/env bash
# vpm-timeout: 300
# ICMP errors about translated packets reach the right socket on both
# sides: PMTU discovery through a router with a small MTU (the router's
# "fragmentation needed" / "packet too big" quotes the fixed port and must
# reach the instance's socket on the anonymous port), and "port
# unreachable" from an instance that is not running (it quotes the
# anonymous port and must reach the client's socket for the fixed port).
#
#   vpmic  10.202.1.1 --- 10.202.1.2  vpmir  10.202.2.2 --- 10.202.2.1  vpmis
#          fd00:202:1::1  (MTU 1280 towards the client)      fd00:202:2::1
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c() { ip netns exec vpmic "$@"; }
s() { ip netns exec vpmis "$@"; }
net() { python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" "$@"; }

load
fresh_netns vpmic vpmir vpmis
routed vpmic vpmir vpmis 202
# Only the router's side of the client link is small: the client still
# advertises a 1460-byte MSS, so the server's segments must shrink by
# PMTU discovery.
ip -n vpmir link set veth-rc mtu 1280

A=$(s vpmctl add --aid a --port 9000 --json | json anon_port)
s vpmctl rule add --port 9000 --aid a
s vpmctl add --aid gone --port 9100 >/dev/null
s vpmctl rule add --port 9100 --aid gone
s python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" serve a "$A" >"$work/srv" 2>&1 &
for _ in $(seq 100); do grep -q ready "$work/srv" && break; sleep 0.1; done

icmp0=$(status_field vpmis pkts_icmp_xlat)
# 256 KiB (the long form: 1 MiB): the first full-size segments meet the
# small link, so the errors come early in any transfer.
size=$(pick 262144 1048576)
for addr in 10.202.2.1 fd00:202:2::1; do
	expect_eq "$((size / 1024)) KiB download through the small link from $addr" a \
		"$(c python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" ask tcp $addr 9000 --download --size $size)"
done
expect "the server translated the router's ICMP errors" \
	test "$(status_field vpmis pkts_icmp_xlat)" -gt "$icmp0"
expect "the server's route learnt the path MTU" sh -c \
	"ip netns exec vpmis ip route get 10.202.1.1 | grep -q 'mtu 1280'"
subtest PASS pmtu-discovery

# Nobody listens on the anonymous port of "gone": the server's port
# unreachable must reach the client's socket, connected to port 9100.
# One interpreter start for both families (TCG is slow).
icmp0=$(status_field vpmis pkts_icmp_xlat)
got=$(c python3 -c '
import socket, sys
ends = []
for addr in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.connect((addr, 9100))
    s.send(b"anyone?")
    try:
        s.recv(100)
        ends.append("answered")
    except ConnectionRefusedError:
        ends.append("refused")
    except socket.timeout:
        ends.append("timeout")
print(" ".join(ends))
' 10.202.2.1 fd00:202:2::1)
expect_eq "UDP to a stopped instance via 10.202.2.1, then fd00:202:2::1" "refused refused" "$got"
expect_eq "port unreachable errors translated on the server" 2 \
	$(($(status_field vpmis pkts_icmp_xlat) - icmp0))
subtest PASS port-unreachable
