#!/usr/bin/env bash
# vpm-timeout: 600
# `make run`: vpm in one picture.  Two unmodified copies of one web server,
# "blue" and "green", both run `python3 -m http.server 9000` on one host;
# two copies of a UDP echo server both use port 7000.  Clients on two
# networks ask for http://10.9.0.2:9000/ and each gets its own instance;
# a rule change moves new connections while a download carries on.
set -u
show() { echo "| $1\$ ${*:3}"; $2 "${@:3}" 2>&1 | sed 's/^/|   /'; }
say() { echo "|"; echo "| == $* =="; }
fail() { echo "| demo: $*"; failed=1; }
failed=0
s() { nsenter --net=/run/netns/demo-s "$@"; }
c1() { ip netns exec demo-c1 "$@"; }
c2() { ip netns exec demo-c2 "$@"; }
# fetch NETNS-FN URL: the page (the demo's own client, a few lines of Python).
fetch() {
	$1 python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode().strip())' "$2" 2>&1
}
# ask NETNS-FN WANT URL: fetch and show it; the demo fails unless WANT answered.
ask() {
	local got
	echo "| demo-$1\$ curl http://10.9.0.2:9000/"
	got=$(fetch "$1" "$3")
	echo "|   $got"
	[ "$got" = "$2" ] || fail "expected '$2'"
}

insmod "$VPM_ROOT/vpm.ko" || { echo "| demo: insmod failed"; exit 1; }
ip netns add demo-s
for i in 1 2; do
	ip netns add demo-c$i
	ip link add veth-c$i netns demo-c$i type veth peer name veth-s$i netns demo-s
	ip -n demo-c$i addr add 10.9.$i.1/24 dev veth-c$i
	ip -n demo-s addr add 10.9.$i.2/24 dev veth-s$i
	ip -n demo-c$i link set lo up
	ip -n demo-c$i link set veth-c$i up
	ip -n demo-s link set veth-s$i up
	ip -n demo-c$i route add 10.9.0.2/32 via 10.9.$i.2
done
ip -n demo-s link set lo up
ip -n demo-s addr add 10.9.0.2/32 dev lo
www=$(mktemp -d)
for aid in blue green; do
	mkdir "$www/$aid"
	echo "Hello from $aid" >"$www/$aid/index.html"
done
head -c 4194304 /dev/urandom >"$www/blue/big.bin"

say "The host: server 10.9.0.2 (netns demo-s); client 10.9.1.1 (demo-c1) and client 10.9.2.1 (demo-c2)"
say "Start two unmodified web servers on port 9000, as AIDs blue and green"
for aid in blue green; do
	echo "| demo-s\$ vpmctl exec --aid $aid --port 9000 --release -- python3 -m http.server 9000 -d $aid/ &"
	# nsenter itself is the background job (not a shell function's
	# subshell), so that killing the job stops the server.
	nsenter --net=/run/netns/demo-s vpmctl exec --aid "$aid" --port 9000 --release -- \
		python3 -m http.server 9000 --directory "$www/$aid" >/dev/null 2>&1 &
done
say "... and two copies of a UDP echo server on port 7000"
for aid in blue green; do
	echo "| demo-s\$ vpmctl exec --aid $aid --port 7000 --proto udp --release -- udp-echo $aid 7000 &"
	nsenter --net=/run/netns/demo-s vpmctl exec --aid "$aid" --port 7000 --proto udp --release -- \
		python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
while True:
    d, peer = s.recvfrom(2048)
    s.sendto(sys.argv[1].encode() + b": " + d, peer)' "$aid" 7000 >/dev/null 2>&1 &
done
for _ in $(seq 300); do
	[ "$(s vpmctl show --json 2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" = 4 ] &&
		s ss -Hlnt | grep -q . && break
	sleep 0.1
done
show demo-s s vpmctl show
echo "|   (each server asked for 9000 and 7000; vpm gave it anonymous ports, which it never sees:)"
show demo-s s ss -Hltnu
say "Steer by client network: 10.9.1.0/24 -> blue, 10.9.2.0/24 -> green"
show demo-s s vpmctl rule add --port 9000 --from 10.9.1.0/24 --aid blue
show demo-s s vpmctl rule add --port 9000 --from 10.9.2.0/24 --aid green
show demo-s s vpmctl rule add --port 7000 --from 10.9.1.0/24 --aid blue
show demo-s s vpmctl rule add --port 7000 --from 10.9.2.0/24 --aid green
for _ in $(seq 300); do fetch c2 http://10.9.0.2:9000/ | grep -q green && break; sleep 0.2; done

say "Both clients ask for the same address and port"
ask c1 "Hello from blue" http://10.9.0.2:9000/
ask c2 "Hello from green" http://10.9.0.2:9000/
for i in 1 2; do
	want=$([ $i = 1 ] && echo blue || echo green)
	echo "| demo-c$i\$ udp-ask 10.9.0.2 7000 ping"
	got=$(c$i python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(b"ping", ("10.9.0.2", 7000))
d, peer = s.recvfrom(2048)
print(d.decode(), "(from port %d)" % peer[1])' 2>&1)
	echo "|   $got"
	[ "$got" = "$want: ping (from port 7000)" ] || fail "expected '$want: ping' from port 7000"
done

say "A rule change moves new connections; a download in progress stays with blue"
c1 python3 -c 'import hashlib, sys, time, urllib.request
r = urllib.request.urlopen(sys.argv[1], timeout=60)
open(sys.argv[2], "w").write("started")
h, n = hashlib.sha256(), 0
while True:
    chunk = r.read(65536)
    if not chunk:
        break
    h.update(chunk)
    n += len(chunk)
    time.sleep(0.05)
print(n, h.hexdigest())' http://10.9.0.2:9000/big.bin "$www/started" >"$www/download" 2>&1 &
download=$!
echo "| demo-c1\$ curl http://10.9.0.2:9000/big.bin   (4 MiB, read slowly, in the background)"
for _ in $(seq 300); do [ -e "$www/started" ] && break; sleep 0.1; done
show demo-s s vpmctl rule del --port 9000 --from 10.9.1.0/24
show demo-s s vpmctl rule add --port 9000 --from 10.9.1.0/24 --aid green
ask c1 "Hello from green" http://10.9.0.2:9000/
wait "$download"
read -r n hash <"$www/download" || true
want_hash=$(sha256sum "$www/blue/big.bin" | cut -d' ' -f1)
if [ "${n:-}" = 4194304 ] && [ "${hash:-}" = "$want_hash" ]; then
	echo "|   the download finished: 4194304 bytes, sha256 equal to blue's big.bin"
else
	fail "the download broke: $(tail -n1 "$www/download")"
fi

say "Counters: what vpm translated for each instance"
show demo-s s vpmctl show

say "Stop the servers: --release gives the ports back, the hooks go"
kill $(jobs -p) 2>/dev/null
wait 2>/dev/null
for _ in $(seq 300); do
	[ ! -e /sys/fs/bpf/vpm ] && [ "$(s vpmctl show --json)" = "[]" ] && break
	sleep 0.1
done
show demo-s s vpmctl show
[ "$(s vpmctl show --json)" = "[]" ] || fail "allocations left after the servers stopped"
[ ! -e /sys/fs/bpf/vpm ] || fail "hooks left after the servers stopped: $(find /sys/fs/bpf/vpm)"
ip netns del demo-c1
ip netns del demo-c2
ip netns del demo-s
rmmod vpm
rm -rf "$www"
echo "|"
if [ "$failed" = 0 ]; then
	echo "| demo: OK: two unmodified servers shared ports 9000 and 7000, each client reached its own"
else
	echo "| demo: FAILED (see the lines above)"
fi
exit $failed
