#!/usr/bin/env bash
# Automatic allocation skips ports a socket of the namespace is already
# bound to (TCP or UDP, IPv4 or IPv6): an instance told to bind such a
# port would fail.  An explicit --anon-port (restore, while the instances
# keep their sockets) is still allowed.
. "$VPM_ROOT/tests/vm/lib.sh"

fresh_netns vpmbp
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	ip netns del vpmbp 2>/dev/null || true
}
trap cleanup EXIT
load
p() { ip netns exec vpmbp "$@"; }

# hold KIND FAMILY PORT: a socket bound to PORT until killed (TCP ones
# listen); $holder is its pid (ip netns exec execs python itself).
hold() {
	rm -f /tmp/vpm-hold.out
	ip netns exec vpmbp python3 -c '
import socket, sys, time
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
fam = socket.AF_INET6 if sys.argv[2] == "6" else socket.AF_INET
s = socket.socket(fam, kind)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", int(sys.argv[3])))
if kind == socket.SOCK_STREAM:
    s.listen()
print("bound", flush=True)
time.sleep(120)
' "$@" >/tmp/vpm-hold.out 2>&1 </dev/null &
	holder=$!
	for _ in $(seq 50); do
		grep -q bound /tmp/vpm-hold.out 2>/dev/null && return 0
		sleep 0.1
	done
	echo "the socket holder did not bind $* ($(cat /tmp/vpm-hold.out))" >&2
	exit 1
}

# release: end the holder and wait until it is gone (its socket with it).
release() {
	kill $holder
	wait $holder 2>/dev/null || true
}

for case in "tcp 4" "udp 4" "tcp 6" "udp 6"; do
	set -- $case
	# A fresh namespace: its allocator's cursor starts at the range's
	# first port, 31000.
	fresh_netns vpmbp
	p ip link set lo up
	p vpmctl config --range 31000-31002 >/dev/null
	hold "$1" "$2" 31000
	expect_eq "add skips 31000, bound by a $1/IPv$2 socket" 31001 \
		"$(p vpmctl add --aid a --port 9000 --json | json anon_port)"
	expect_eq "an explicit --anon-port 31000 is still allowed ($1/IPv$2)" 31000 \
		"$(p vpmctl add --aid b --port 9000 --anon-port 31000 --json | json anon_port)"
	release
	subtest PASS "skip-bound-$1-v$2"
done

# Every free port bound: add says so instead of handing one out.
fresh_netns vpmbp
p ip link set lo up
p vpmctl config --range 31000-31000 >/dev/null
hold tcp 4 31000
expect_fail 1 "sockets hold the rest" p vpmctl add --aid a --port 9000
release
expect_eq "the port is allocated once the socket is gone" 31000 \
	"$(p vpmctl add --aid a --port 9000 --json | json anon_port)"
subtest PASS all-bound
