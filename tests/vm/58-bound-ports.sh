#!/usr/bin/env bash
# vpm-timeout: 180
# Automatic allocation skips ports a socket of the namespace is already
# bound to (TCP or UDP, IPv4 or IPv6): an instance told to bind such a
# port would fail.  An explicit --anon-port (restore, while the instances
# keep their sockets) is still allowed.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpmbp
load
p() { ip netns exec vpmbp "$@"; }
p ip link set lo up

# One process holds a TCP/IPv4 socket on 31000, UDP/IPv4 on 31002,
# TCP/IPv6 on 31004 and UDP/IPv6 on 31006 (TCP ones listen) until killed;
# $holder is its pid (ip netns exec execs python itself).
ip netns exec vpmbp python3 -c '
import socket, time
socks = []
for kind, fam, port in ((socket.SOCK_STREAM, socket.AF_INET, 31000), (socket.SOCK_DGRAM, socket.AF_INET, 31002),
                        (socket.SOCK_STREAM, socket.AF_INET6, 31004), (socket.SOCK_DGRAM, socket.AF_INET6, 31006)):
    s = socket.socket(fam, kind)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen()
    socks.append(s)
print("bound", flush=True)
time.sleep(300)
' >$work/vpm-hold.out 2>&1 </dev/null &
holder=$!
for _ in $(seq 300); do
	grep -q bound $work/vpm-hold.out 2>/dev/null && break
	sleep 0.1
done
expect "the sockets are bound (said: $(cat $work/vpm-hold.out))" grep -q bound $work/vpm-hold.out

# A fresh namespace's allocator starts at the range's first port, so each
# add below would pick the bound port right after the last allocation.
p vpmctl config --range 31000-31011 >/dev/null
n=0
for case in "31000 tcp-v4" "31002 udp-v4" "31004 tcp-v6" "31006 udp-v6"; do
	set -- $case
	n=$((n + 1))
	expect_eq "add skips $1, bound by a $2 socket" $(($1 + 1)) \
		"$(p vpmctl add --aid a$n --port 9000 --json | json anon_port)"
	expect_eq "an explicit --anon-port $1 is still allowed ($2)" "$1" \
		"$(p vpmctl add --aid b$n --port 9000 --anon-port "$1" --json | json anon_port)"
	subtest PASS "skip-bound-$2"
done

# Every free port bound: add says so instead of handing one out.
p vpmctl flush
p vpmctl config --range 31000-31000 >/dev/null
expect_fail 1 "sockets hold the rest" p vpmctl add --aid a --port 9000
kill $holder
wait $holder 2>/dev/null || true
expect_eq "the port is allocated once the socket is gone" 31000 \
	"$(p vpmctl add --aid a --port 9000 --json | json anon_port)"
subtest PASS all-bound
