#!/usr/bin/env bash
# vpm-timeout: 600
# `make run`: vpm in one picture.  A server namespace runs two instances,
# "blue" and "green", that both believe they serve port 9000; a client
# namespace with two addresses reaches one or the other through port 9000
# by source rule, and only ever sees port 9000.
set -u
demo() { echo "| \$ $*"; "$@" 2>&1 | sed 's/^/| /'; }
say() { echo "|"; echo "| # $*"; }

say "load the module; every network namespace gets its own vpm"
demo insmod "$VPM_ROOT/vpm.ko"
demo vpmctl status
ip netns add demo-c
ip netns add demo-s
ip link add veth-c netns demo-c type veth peer name veth-s netns demo-s
ip -n demo-c addr add 10.9.0.1/24 dev veth-c
ip -n demo-c addr add 10.9.0.3/24 dev veth-c
ip -n demo-s addr add 10.9.0.2/24 dev veth-s
for n in demo-c demo-s; do ip -n $n link set lo up; done
ip -n demo-c link set veth-c up
ip -n demo-s link set veth-s up

say "on the server (netns demo-s): two applications, one fixed port"
s() { ip netns exec demo-s "$@"; }
demo_s() { echo "| demo-s\$ $*"; s "$@" 2>&1 | sed 's/^/| /'; }
demo_c() { echo "| demo-c\$ $*"; ip netns exec demo-c "$@" 2>&1 | sed 's/^/| /'; }
demo_s vpmctl add --aid blue --port 9000
demo_s vpmctl add --aid green --port 9000
demo_s vpmctl rule add --port 9000 --from 10.9.0.1 --aid blue
demo_s vpmctl rule add --port 9000 --from 10.9.0.3 --aid green
demo_s vpmctl rule show
for aid in blue green; do
	anon=$(s vpmctl show --json | python3 -c 'import json, sys; print(next(m["anon_port"] for m in json.load(sys.stdin) if m["aid"] == sys.argv[1]))' $aid)
	s python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" serve $aid "$anon" >/tmp/demo-$aid 2>&1 &
	for _ in $(seq 100); do grep -q ready /tmp/demo-$aid && break; sleep 0.1; done
done

say "on the client (netns demo-c, 10.9.0.1 and 10.9.0.3): one server address and port, two servers"
failed=0
ask() { # WANT ARGS...: ask and show who answered; the demo fails unless WANT did
	local want=$1 got
	shift
	echo "| demo-c\$ python3 vpmnet.py ask $*"
	got=$(ip netns exec demo-c python3 "$VPM_ROOT/tests/vm/lib/vpmnet.py" ask "$@" 2>&1)
	echo "$got" | sed 's/^/| /'
	[ "$got" = "$want" ] || { echo "| demo: expected $want to answer"; failed=1; }
}
ask blue tcp 10.9.0.2 9000 --src 10.9.0.1
ask green tcp 10.9.0.2 9000 --src 10.9.0.3
ask green udp 10.9.0.2 9000 --src 10.9.0.3
demo_s vpmctl show

say "unload: tables and hooks go with the module"
kill $(jobs -p) 2>/dev/null
wait 2>/dev/null
ip netns del demo-c
ip netns del demo-s
demo rmmod vpm
demo vpmctl status
exit $failed
