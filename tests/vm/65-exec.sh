#!/usr/bin/env bash
# vpm-timeout: 1200
# vpmctl exec: unmodified servers bind the fixed port and get their AID's
# anonymous port through the cgroup socket hooks.
#
#   vpmc1 (10.203.1.1) ---- veth ---- vpms: blue and green, both "on" 9000
#   vpmc2 (10.203.2.1) ---- veth ----       (rules: net 1 -> blue, net 2 -> green)
#
# vpms is entered with nsenter, not `ip netns exec`: the latter remounts
# /sys, which hides the cgroup2 and BPF filesystems vpmctl exec needs.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c1() { ip netns exec vpmc1 "$@"; }
c2() { ip netns exec vpmc2 "$@"; }
s() { nsenter --net=/run/netns/vpms "$@"; }
# Programs vpmctl exec runs (it needs files, not shell functions).
NET="python3 $VPM_ROOT/tests/vm/lib/vpmnet.py"
PROBE="python3 $VPM_ROOT/tests/vm/lib/bindprobe.py"

load
fresh_netns vpmc1 vpmc2 vpms
two_clients 203

scope=net-$(stat -Lc %i /run/netns/vpms)
groups=/sys/fs/cgroup/vpm/$scope
pins=/sys/fs/bpf/vpm/$scope
# Whatever the test leaves: the allocations go, the instances are killed
# by lib.sh, and each keeper then removes its AID's hooks and group.
at_exit "s vpmctl flush"

# wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds.
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for i in $(seq $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "expected within ${secs}s: $what" >&2
	echo "  command: $*" >&2
	exit 1
}

# start NAME LOG CMD...: run CMD in vpms as a background job; returns once
# LOG says "ready".
start() {
	local name=$1 log=$2
	shift 2
	s "$@" >"$log" 2>&1 &
	wait_for 30 "$name started (log: $(cat "$log" 2>/dev/null))" grep -q ready "$log"
}

# anon AID [PORT]: AID's anonymous port (for PORT, default 9000).
anon() {
	s vpmctl show --json | python3 -c '
import json, sys
print(next(m["anon_port"] for m in json.load(sys.stdin)
           if m["aid"] == sys.argv[1] and m["port"] == int(sys.argv[2])))' "$1" "${2:-9000}"
}
listening() { s ss -Hlnt "sport = :$1" | grep -q .; }
# in_group AID CMD...: run CMD in vpms inside AID's group, without vpmctl
# (whose exec would bring the hooks up to date itself).
in_group() {
	local g=$groups/$1
	shift
	s sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$g" "$@"
}
# No cleanup of the groups here: the keepers must remove them (guest.sh
# fails the test if any is left).
# nothing_left AID: no allocation, hooks or group of AID remain.
nothing_left() {
	! s vpmctl show --json | grep -q "\"aid\":\"$1\"" && test ! -e "$pins/$1" -a ! -e "$groups/$1"
}

# ---- exec refuses to start what cannot work --------------------------------
# (First, while the namespace is empty: the range can only shrink then.)
s vpmctl config --range 31000-31001 >/dev/null
s vpmctl add --aid hog1 --port 9500 >/dev/null
s vpmctl add --aid hog2 --port 9500 >/dev/null
expect_fail 1 "no free port" s vpmctl exec --aid late --port 9500 -- touch "$work/started"
expect "CMD did not start on an exhausted range" test ! -e "$work/started"
expect "nothing left of the refused AID" nothing_left late
# Long form only (make check's time budget: the one-port refusal above is the same path).
if long; then
# Two ports, the second one refused: the first one's allocation goes too.
s vpmctl config --range 31000-31002 >/dev/null
expect_fail 1 "no free port" s vpmctl exec --aid late --port 9501 --port 9500 -- touch "$work/started"
expect "CMD did not start when its second port failed" test ! -e "$work/started"
expect "nothing left of the refused AID (two ports)" nothing_left late
fi
s vpmctl config --range 31000-31001 >/dev/null
# With --wait it starts once a port is released.
s vpmctl exec --aid late --port 9500 --wait 30s -- touch "$work/started" &
waiter=$!
sleep 2
expect "CMD not started while waiting" test ! -e "$work/started"
s vpmctl del --aid hog1 --port 9500
wait "$waiter"
expect "CMD started once a port was free" test -e "$work/started"
s vpmctl del --aid late --port 9500
s vpmctl del --aid hog2 --port 9500
s vpmctl config --range 20000-29999 >/dev/null
# Long form only (make check's time budget: refusals before anything is allocated).
if long; then
expect_fail 2 "cannot name a cgroup" s vpmctl exec --aid .. --port 9500 -- true
expect_fail 127 "cannot run" s vpmctl exec --aid nocmd --port 9501 -- /nonexistent/cmd
expect "a missing command allocates nothing" nothing_left nocmd
expect_fail 126 "cannot run" s vpmctl exec --aid nocmd --port 9501 -- "$VPM_ROOT/README.md"
expect "a file that is not executable allocates nothing" nothing_left nocmd
fi
subtest PASS exec-refuses

# ---- two unmodified servers on 9000, TCP and UDP, dual-stack [::] --------
start blue "$work/blue" vpmctl exec --aid blue --port 9000 -- $NET serve blue 9000
start green "$work/green" vpmctl exec --aid green --port 9000 -- $NET serve green 9000
s vpmctl rule add --port 9000 --from 10.203.1.0/24 --aid blue
s vpmctl rule add --port 9000 --from fd00:203:1::/64 --aid blue
s vpmctl rule add --port 9000 --from 10.203.2.0/24 --aid green
s vpmctl rule add --port 9000 --from fd00:203:2::/64 --aid green
B=$(anon blue)
G=$(anon green)
expect "distinct anonymous ports" test "$B" != "$G"
expect "blue's group is its allocation's cgroup" \
	test "$(s vpmctl show --json | json_at aid=blue cgroup)" = "/vpm/$scope/blue"
expect_eq "net 1 reaches blue (tcp/udp, v4/v6)" "blue blue blue blue" \
	"$(c1 $NET asks 9000 tcp/10.203.1.2 tcp/fd00:203:1::2 udp/10.203.1.2 udp/fd00:203:1::2)"
expect_eq "net 2 reaches green (tcp/udp, v4/v6)" "green green green green" \
	"$(c2 $NET asks 9000 tcp/10.203.2.2 tcp/fd00:203:2::2 udp/10.203.2.2 udp/fd00:203:2::2)"
expect "blue listens on its anonymous port" listening "$B"
expect "green listens on its anonymous port" listening "$G"
expect "nothing listens on 9000 itself" test -z "$(s ss -Hlntu 'sport = :9000')"
expect "hooks pinned for blue and green" test -e "$pins/blue/vpm_bind4" -a -e "$pins/green/vpm_bind6"
subtest PASS exec-two-instances

# ---- what a server sees: getsockname says 9000 -----------------------------
# bindprobe binds TCP and UDP on [::]:9100 and 0.0.0.0:9101 and prints what
# getsockname says; the kernel's socket table shows the anonymous ports.
out=$(s vpmctl exec --aid probe --port 9100 --port 9101 -- $PROBE 9100 9101 --hold "$work/held")
expect_eq "getsockname of [::]:9100 (tcp, udp) and 0.0.0.0:9101 (tcp, udp)" \
	"tcp6 9100 udp6 9100 tcp4 9101 udp4 9101" "$out"
expect_eq "the socket table has the anonymous ports" \
	"$(anon probe 9100) $(anon probe 9100) $(anon probe 9101) $(anon probe 9101)" "$(xargs <"$work/held")"
s vpmctl del --aid probe --port 9100
s vpmctl del --aid probe --port 9101
subtest PASS exec-getsockname-shows-the-fixed-port

# ---- a port that is not listed is untouched --------------------------------
out=$(s vpmctl exec --aid probe2 --port 9100 --release -- $PROBE 9102 --hold "$work/held-unlisted")
expect_eq "an unlisted port binds as itself" "tcp6 9102 udp6 9102" "$out"
expect_eq "... in the socket table too" "9102 9102" "$(xargs <"$work/held-unlisted")"
out=$(s $PROBE 9000 --v4 --hold "$work/held-outside")
expect_eq "outside any AID's group a bind of 9000 is 9000" "tcp4 9000 udp4 9000" "$out"
expect_eq "... in the socket table too" "9000 9000" "$(xargs <"$work/held-outside")"
subtest PASS exec-unlisted-port-untouched

# ---- a static binary, a forking server, a child of CMD ---------------------
mkdir -p "$work/www-a" "$work/www-b"
echo "page of httpd-a" >"$work/www-a/index.html"
echo "page of httpd-b" >"$work/www-b/index.html"
# busybox is statically linked; sh -c makes the server a child of CMD.
s vpmctl exec --aid httpd-a --port 8080 --proto tcp -- \
	sh -c "busybox httpd -f -p 8080 -h $work/www-a; :" >/dev/null 2>&1 &
s vpmctl exec --aid httpd-b --port 8080 --proto tcp -- \
	busybox httpd -f -p 8080 -h "$work/www-b" >/dev/null 2>&1 &
wait_for 30 "httpd-a's allocation" anon httpd-a 8080
wait_for 30 "httpd-b's allocation" anon httpd-b 8080
s vpmctl rule add --port 8080 --from 10.203.1.0/24 --aid httpd-a
s vpmctl rule add --port 8080 --from 10.203.2.0/24 --aid httpd-b
# fetch NETNS-FN URL: the page's text.
fetch() {
	$1 python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().strip())' "$2"
}
wait_for 30 "httpd-a serves net 1" fetch c1 http://10.203.1.2:8080/
expect_eq "net 1 gets httpd-a's page" "page of httpd-a" "$(fetch c1 http://10.203.1.2:8080/)"
wait_for 30 "httpd-b serves net 2" fetch c2 http://10.203.2.2:8080/
expect_eq "net 2 gets httpd-b's page" "page of httpd-b" "$(fetch c2 http://10.203.2.2:8080/)"
HA=$(anon httpd-a 8080)
expect "httpd-a (a child of sh) listens on httpd-a's anonymous port" listening "$HA"
out=$(in_group httpd-b $PROBE 8080 --v4 --hold "$work/held-udp" 2>&1 || true)
expect "httpd-b's group binds TCP 8080 to its anonymous port (taken by httpd, so EADDRINUSE)" \
	grep -q "errno 98" <<<"$out"
out=$(in_group httpd-b python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 8080))
print(s.getsockname()[1])')
expect_eq "--proto tcp: a UDP bind of 8080 in the group is 8080 itself" 8080 "$out"
expect "busybox is statically linked" sh -c "! ldd $(command -v busybox) >/dev/null 2>&1"
subtest PASS exec-static-binary-and-child

# Long form only (make check's time budget: children inherit the group as sh -c's child does above).
if long; then
start fork "$work/fork" vpmctl exec --aid fork --port 9200 -- python3 -c '
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"fork\n")
class S(socketserver.ForkingTCPServer):
    allow_reuse_address = True
srv = S(("0.0.0.0", 9200), H)
print("ready", flush=True)
srv.serve_forever()'
s vpmctl exec --aid thread --port 9200 -- \
	python3 -m http.server 9200 --directory "$work/www-a" --bind 0.0.0.0 >/dev/null 2>&1 &
s vpmctl rule add --port 9200 --from 10.203.1.0/24 --aid fork
wait_for 30 "the threaded server's allocation" anon thread 9200
s vpmctl rule add --port 9200 --from 10.203.2.0/24 --aid thread
wait_for 30 "the threaded server serves net 2" fetch c2 http://10.203.2.2:9200/
expect_eq "net 1 reaches the forking server" "fork" \
	"$(c1 python3 -c 'import socket; s = socket.create_connection(("10.203.1.2", 9200), 10); print(s.recv(64).decode().strip())')"
expect_eq "net 2 reaches the threaded server" "page of httpd-a" "$(fetch c2 http://10.203.2.2:9200/)"
subtest PASS exec-forking-and-threaded
fi

# ---- deleting a running AID's allocation: its next bind fails -------------
s vpmctl del --aid blue --port 9000
out=$(in_group blue $PROBE 9000 --tcp-only 2>&1 || true)
expect "a new bind of 9000 in blue's group fails with EADDRNOTAVAIL (got: $out)" \
	grep -q "errno 99" <<<"$out"
# Added again: binds work again, on the new anonymous port.
B2=$(s vpmctl add --aid blue --port 9000 --cgroup "/vpm/$scope/blue" --json | json anon_port)
out=$(in_group blue $PROBE 9000 --tcp-only --hold "$work/held2")
expect_eq "bind after re-add" "tcp6 9000" "$out"
expect_eq "... on the new anonymous port" "$B2" "$(cat "$work/held2")"
subtest PASS exec-del-revokes-binds

# ---- the keeper follows a change vpmctl's own sync did not see -----------
# VPM_BPFFS points this vpmctl elsewhere, so only blue's keeper can follow.
VPM_BPFFS=/nonexistent s vpmctl del --aid blue --port 9000
revoked() { in_group blue $PROBE 9000 --tcp-only --v4 2>&1 | grep -q "errno 99"; }
wait_for 10 "the keeper revoked blue's bind of 9000 (bind4 this time)" revoked
subtest PASS exec-keeper-follows-changes

# ---- --release: the allocation goes with the last process -----------------
s vpmctl exec --aid brief --port 9400 --release -- sleep 1
wait_for 15 "brief's allocation released" sh -c "! nsenter --net=/run/netns/vpms vpmctl show --json | grep -q '\"brief\"'"
wait_for 15 "brief's hooks and group removed" sh -c "! test -e $pins/brief && ! test -e $groups/brief"
# Without --release the allocation stays, and so do the hooks.
s vpmctl exec --aid stays --port 9401 -- true
sleep 2
expect "stays keeps its allocation" sh -c "nsenter --net=/run/netns/vpms vpmctl show --json | grep -q '\"stays\"'"
expect "stays keeps its hooks" test -e "$pins/stays/vpm_ports"
s vpmctl del --aid stays --port 9401
expect "del of an AID nobody runs removes its hooks and group" \
	sh -c "! test -e $pins/stays && ! test -e $groups/stays"
subtest PASS exec-release

# ---- the host's own namespace -----------------------------------------------
# Long form only (make check's time budget: the same hooks as in vpms, another scope name).
if long; then
out=$(vpmctl exec --aid hostapp --port 9600 --release -- sh -c "cat /proc/self/cgroup; $PROBE 9600 --tcp-only")
expect_eq "in the host namespace the group is vpm/host/AID" "0::/vpm/host/hostapp" "$(head -n1 <<<"$out")"
expect_eq "... and the hooks work there too" "tcp6 9600" "$(tail -n1 <<<"$out")"
wait_for 15 "hostapp released, its hooks and group removed" \
	sh -c "! vpmctl show --json | grep -q hostapp && test ! -e /sys/fs/bpf/vpm/host && test ! -e /sys/fs/cgroup/vpm/host"
subtest PASS exec-host-namespace
fi

# ---- unload with hooks attached --------------------------------------------
# blue and green still run.  rmmod; their keepers take the hooks away, so
# a bind of 9000 in green's group is the kernel's own again.
s vpmctl add --aid blue --port 9000 --cgroup "/vpm/$scope/blue" >/dev/null
unload
wait_for 15 "the keepers removed every pin" sh -c "test -z \"\$(find $pins -mindepth 1 2>/dev/null)\""
out=$(in_group green $PROBE 9000 --tcp-only --v4 --hold "$work/held3")
expect_eq "after unload a bind of 9000 is 9000" "tcp4 9000" "$out"
expect "... in the socket table too" grep -qx 9000 "$work/held3"
expect_fail 3 "not loaded" s vpmctl exec --aid blue --port 9000 -- touch "$work/started2"
expect "CMD did not start without the module" test ! -e "$work/started2"
load
subtest PASS exec-unload

# ---- save, flush, restore with an exec'd AID nobody runs --------------------
# Long form only (make check's time budget: 60-save-restore covers save and
# restore; this adds the group of an exec'd AID that nobody runs).
if long; then
s vpmctl exec --aid idle --port 9700 -- true
expect "idle keeps its hooks and group (no --release)" test -e "$pins/idle/vpm_ports" -a -d "$groups/idle"
s vpmctl save >"$work/state.json"
s vpmctl flush
expect "flush removed idle's hooks and group" nothing_left idle
s vpmctl restore "$work/state.json"
expect_eq "restore made idle's group again and steers by it" "/vpm/$scope/idle" \
	"$(s vpmctl show --json | json_at aid=idle cgroup)"
out=$(s vpmctl exec --aid idle --port 9700 --release -- $PROBE 9700 --tcp-only --hold "$work/held4")
expect_eq "exec on the restored AID" "tcp6 9700" "$out"
expect_eq "... on the restored anonymous port" "$(s python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["mappings"][0]["anon_port"])' "$work/state.json")" \
	"$(cat "$work/held4")"
wait_for 15 "idle released, hooks and group removed" nothing_left idle
subtest PASS exec-save-flush-restore
fi
