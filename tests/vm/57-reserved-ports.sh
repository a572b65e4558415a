#!/usr/bin/env bash
# vpm-timeout: 180
# Anonymous ports never go to other sockets: each allocated port is
# reserved in net.ipv4.ip_local_reserved_ports (which covers IPv6 too),
# even when the range overlaps the ephemeral range; releasing it, flushing
# or unloading gives it back, and reservations vpm did not make survive.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmrp
load
p() { ip netns exec vpmrp "$@"; }
reserved() { p cat /proc/sys/net/ipv4/ip_local_reserved_ports; }

# A small ephemeral range that starts with the anonymous range.
p sysctl -qw net.ipv4.ip_local_port_range="40000 40199"
p sysctl -qw net.ipv4.ip_local_reserved_ports=40015
p vpmctl config --range 40000-40009 >/dev/null
for i in $(seq 10); do echo "add --aid a$i --port 9000"; done | p vpmctl batch -
expect_eq "reserved after 10 allocations" "40000-40009,40015" "$(reserved)"
subtest PASS reserved

# 200 automatic binds (UDP autobind and TCP connect, IPv4 and IPv6) never
# get an allocated port.
p ip link set lo up
got=$(p python3 -c '
import socket
ports = set()
for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    for _ in range(50):
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((addr, 0))
        ports.add(u.getsockname()[1])
        u.close()
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.bind((addr, 0))
    srv.listen()
    for _ in range(50):
        c = socket.socket(fam, socket.SOCK_STREAM)
        c.connect(srv.getsockname()[:2])
        ports.add(c.getsockname()[1])
        c.close()
print(" ".join(str(p) for p in sorted(ports)))
')
for port in $got; do
	expect "automatic port $port is outside the allocations" test "$port" -ge 40010
	expect "automatic port $port is not the operator's reservation" test "$port" != 40015
done
subtest PASS autobind-avoids-allocations

# An allocated port can still be bound explicitly (the instance does).
anon=$(p vpmctl add --aid a1 --port 9000 --json | json anon_port)
p python3 -c "import socket; socket.socket().bind(('127.0.0.1', $anon))"
p vpmctl del --aid a1 --port 9000
expect_eq "reserved after one release" "40001-40009,40015" "$(reserved)"
p vpmctl flush
expect_eq "reserved after flush: only the operator's" 40015 "$(reserved)"
for i in 1 2 3; do p vpmctl add --aid b$i --port 9000 >/dev/null; done
unload
expect_eq "reserved after unload: only the operator's" 40015 "$(reserved)"
load
subtest PASS released
