# Helpers for VM tests; sourced by tests/vm/[0-9]*.sh inside the guest.
#
# Tests run with `set -eu`: the first failing command fails the test.  Use
# `expect` for assertions so the failure says what was expected.
set -eu

VPM_KO=${VPM_KO:-$VPM_ROOT/vpm.ko}

# expect DESCRIPTION COMMAND...: run COMMAND, fail the test with
# DESCRIPTION if it fails.
expect() {
	local what=$1
	shift
	if ! "$@"; then
		echo "expected: $what" >&2
		echo "  command: $*" >&2
		exit 1
	fi
}

# expect_not DESCRIPTION COMMAND...: run COMMAND, fail the test with
# DESCRIPTION if it succeeds (`expect D ! CMD` would run a command named !).
expect_not() {
	local what=$1
	shift
	if "$@"; then
		echo "expected: $what" >&2
		echo "  command (succeeded): $*" >&2
		exit 1
	fi
}

# expect_eq DESCRIPTION WANT GOT
expect_eq() {
	if [ "$2" != "$3" ]; then
		echo "expected $1 = '$2', got '$3'" >&2
		exit 1
	fi
}

# expect_fail CODE TEXT COMMAND...: COMMAND exits with CODE and its
# stderr contains TEXT.
expect_fail() {
	local code=$1 text=$2 out rc
	shift 2
	set +e
	out=$("$@" 2>&1 >/dev/null)
	rc=$?
	set -e
	expect_eq "exit code of '$*'" "$code" "$rc"
	expect "'$*' says '$text' (said: $out)" grep -qF -- "$text" <<<"$out"
}

# timed_ms CMD...: run CMD (output discarded), print how long it took in ms.
timed_ms() {
	local start
	start=$(date +%s%N)
	"$@" >/dev/null
	echo $((($(date +%s%N) - start) / 1000000))
}

# subtest PASS|FAIL NAME: one result line; it says how long the subtest took
# since the previous one (or the test's start), to keep make check's time
# budget in view.
VPM_SUBTEST_AT=$SECONDS
subtest() {
	echo "SUBTEST $1 $2 ($((SECONDS - VPM_SUBTEST_AT))s)"
	VPM_SUBTEST_AT=$SECONDS
}

# ---- short and long forms ----------------------------------------------------
#
# `make check` runs every test in its short form: the fewest repetitions
# and the smallest sizes that still assert each of its behaviours once.
# `make stress` sets VPM_LONG=1 for the long form: more repetitions,
# bigger transfers and tables, longer floods (a script's limit is then its
# "# vpm-timeout-long:" line, when it has one).

# long: true in the long form.
long() { [ "${VPM_LONG:-0}" = 1 ]; }

# pick SHORT LONG: print SHORT in the short form, LONG in the long one.
pick() { if long; then echo "$2"; else echo "$1"; fi; }

# ---- one cleanup for every test --------------------------------------------
#
# What a test makes through these helpers is removed when its script exits,
# however it exits: background jobs, namespaces (fresh_netns), cgroups
# (make_cgroup), the scratch directory $work, and whatever at_exit was
# given.  Tests set no EXIT trap of their own.  After each test the
# harness (guest.sh) fails it if anything is left behind anyway.

VPM_NETNS=()
VPM_CGROUPS=()
VPM_AT_EXIT=()
# Scratch space for captures, server logs and state files.
work=$(mktemp -d)

# at_exit CMD...: run CMD (a shell word list, eval'd) when the test exits,
# before the namespaces and cgroups go; the last one given runs first.
at_exit() { VPM_AT_EXIT+=("$*"); }

# descendants PID: PID's children, their children, and so on.
descendants() {
	local c
	for c in $(pgrep -P "$1"); do
		echo "$c"
		descendants "$c"
	done
}

# running PID: PID exists and is not a zombie.
running() {
	local stat
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

vpm_cleanup() {
	local rc=$? i n p pids=() left
	set +e
	for ((i = ${#VPM_AT_EXIT[@]} - 1; i >= 0; i--)); do
		eval "${VPM_AT_EXIT[i]}" >/dev/null 2>&1
	done
	# Background jobs first, with everything they started: they may hold
	# the namespaces and cgroups.  A job started through a shell function
	# (`s server &`) is a subshell; killing it alone would orphan the
	# server it runs, which then outlives the test.
	for p in $(jobs -p); do
		pids+=("$p" $(descendants "$p"))
	done
	if [ ${#pids[@]} -gt 0 ]; then
		kill "${pids[@]}" 2>/dev/null
		for i in $(seq 50); do
			left=
			for p in "${pids[@]}"; do running "$p" && left=1 && break; done
			[ -z "$left" ] && break
			sleep 0.1
		done
		kill -KILL "${pids[@]}" 2>/dev/null
		wait 2>/dev/null
	fi
	for n in "${VPM_NETNS[@]}"; do
		ip netns del "$n" 2>/dev/null
	done
	for ((i = ${#VPM_CGROUPS[@]} - 1; i >= 0; i--)); do
		rmdir "${VPM_CGROUPS[i]}" 2>/dev/null
	done
	rm -rf "$work"
	exit "$rc"
}
trap vpm_cleanup EXIT

# fresh_netns NAME...: (re)create empty network namespaces, removed when
# the test exits.
fresh_netns() {
	local n
	for n in "$@"; do
		ip netns del "$n" 2>/dev/null || true
		ip netns add "$n"
		VPM_NETNS+=("$n")
	done
}

# The namespaces' links and addresses go through one `ip -batch` per
# namespace: every process start costs about a second in the debug guest.

# two_clients NET: clients vpmc1 and vpmc2, each linked to server vpms
# (veth-cI to veth-sI; 10.NET.I.1 and fd00:NET:I::1 on the client,
# .2 and ::2 on the server), every link up.  The namespaces must exist.
two_clients() {
	local net=$1 i
	for i in 1 2; do
		echo "link add veth-c$i netns vpmc$i type veth peer name veth-s$i netns vpms"
	done | ip -b -
	for i in 1 2; do
		printf '%s\n' "addr add 10.$net.$i.1/24 dev veth-c$i" "addr add fd00:$net:$i::1/64 dev veth-c$i nodad" \
			"link set lo up" "link set veth-c$i up" | ip -n "vpmc$i" -b -
	done
	{
		for i in 1 2; do
			printf '%s\n' "addr add 10.$net.$i.2/24 dev veth-s$i" "addr add fd00:$net:$i::2/64 dev veth-s$i nodad" \
				"link set veth-s$i up"
		done
		echo "link set lo up"
	} | ip -n vpms -b -
}

# routed CLIENT ROUTER SERVER NET: CLIENT (veth-c, 10.NET.1.1) reaches
# SERVER (veth-s, 10.NET.2.1) through ROUTER (veth-rc .1.2, veth-rs .2.2),
# which forwards; the same over fd00:NET:1::/64 and fd00:NET:2::/64, each
# end's default route via the router.  The namespaces must exist.
routed() {
	local c=$1 r=$2 s=$3 net=$4 side
	printf '%s\n' "link add veth-c netns $c type veth peer name veth-rc netns $r" \
		"link add veth-s netns $s type veth peer name veth-rs netns $r" | ip -b -
	for side in "$c c 1" "$s s 2"; do
		set -- $side
		printf '%s\n' "addr add 10.$net.$3.1/24 dev veth-$2" "addr add fd00:$net:$3::1/64 dev veth-$2 nodad" \
			"link set lo up" "link set veth-$2 up" \
			"route add default via 10.$net.$3.2" "route add default via fd00:$net:$3::2" | ip -n "$1" -b -
	done
	printf '%s\n' "addr add 10.$net.1.2/24 dev veth-rc" "addr add fd00:$net:1::2/64 dev veth-rc nodad" \
		"addr add 10.$net.2.2/24 dev veth-rs" "addr add fd00:$net:2::2/64 dev veth-rs nodad" \
		"link set lo up" "link set veth-rc up" "link set veth-rs up" | ip -n "$r" -b -
	ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

# make_cgroup PATH: create cgroup v2 group PATH (below /sys/fs/cgroup,
# every missing level, with one mkdir), removed when the test exits.
make_cgroup() {
	local path=${1#/} at=/sys/fs/cgroup part new=()
	mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
	local IFS=/
	for part in $path; do
		at=$at/$part
		[ -d "$at" ] || new+=("$at")
	done
	[ ${#new[@]} = 0 ] && return 0
	mkdir "${new[@]}"
	VPM_CGROUPS+=("${new[@]}")
}

# loaded: vpm is in /proc/modules (what lsmod lists), read by the shell
# itself: every process started costs about a second under emulation.
loaded() {
	local name _
	while read -r name _; do
		[ "$name" = vpm ] && return 0
	done </proc/modules
	return 1
}
load() { loaded || insmod "$VPM_KO"; }
unload() { ! loaded || rmmod vpm; }

# json FIELD: read a top-level field of the JSON object on stdin.
#
# What vpmctl prints for a status, a config or one allocation is a flat
# object on one line; when FIELD's value there is an integer or a string,
# the shell reads it itself (a python3 start costs 4-5 s under emulation
# on the debug kernel, and status_field runs in loops).  The shortcut
# needs a document without backslashes (then every quote delimits a
# string, so ,"FIELD": can only be a key) and without braces inside (a
# flat object); anything else, a missing field included, goes to python3,
# whose output and errors are the reference.
json() {
	local doc inner v re
	IFS= read -r -d '' doc || true
	doc=${doc%$'\n'}
	inner=${doc#\{}
	inner=${inner%\}}
	re='^.*,"'"$1"'":(-?[0-9]+|"[^"]*"),'
	if [ "{$inner}" = "$doc" ] && [[ $1 =~ ^[A-Za-z0-9_]+$ ]] &&
		[[ $inner != *[{}\\]* && $inner != *$'\n'* && ",$inner," =~ $re ]]; then
		v=${BASH_REMATCH[1]}
		v=${v#\"}
		printf '%s\n' "${v%\"}"
		return 0
	fi
	printf '%s\n' "$doc" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# json_at STEP...: walk the JSON on stdin and print where it ends: a
# number indexes a list, KEY=VALUE picks a list's first object whose KEY
# is VALUE, # is a list's length, anything else is an object's key.
# Lists print as space-separated words.
#   vpmctl show --json | json_at aid=a anon_port
#   vpmctl show --json | json_at '#'
json_at() {
	python3 -c '
import json, sys
d = json.load(sys.stdin)
for step in sys.argv[1:]:
    if step == "#":
        d = len(d)
    elif step.lstrip("-").isdigit() and isinstance(d, list):
        d = d[int(step)]
    elif "=" in step and isinstance(d, list):
        k, v = step.split("=", 1)
        d = next(x for x in d if str(x.get(k)) == v)
    else:
        d = d[step]
print(" ".join(map(str, d)) if isinstance(d, list) else d)' "$@"
}

# json_col KEY: the KEY of every object of the JSON list on stdin, on one
# line.
json_col() {
	python3 -c 'import json, sys; print(" ".join(str(x[sys.argv[1]]) for x in json.load(sys.stdin)))' "$1"
}

# status_field [NETNS] FIELD: one field of `vpmctl status --json`.
status_field() {
	if [ $# = 2 ]; then
		ip netns exec "$1" vpmctl status --json | json "$2"
	else
		vpmctl status --json | json "$1"
	fi
}

# capture_start NETNS DEV FILE FILTER...: capture DEV's packets into FILE
# in the background, until capture_stop; returns once tcpdump listens.
# tcpdump runs as the background job itself, never inside a shell
# function's subshell: a non-interactive shell starts background jobs with
# SIGINT ignored, so a subshell would never pass the stop signal on, and
# waiting for the capture to end would hang the test.
capture_start() {
	local ns=$1 dev=$2 file=$3 i
	shift 3
	ip netns exec "$ns" tcpdump -i "$dev" -nn -U -w "$file" "$@" >/dev/null 2>"$file.log" &
	VPM_CAPTURE=$!
	for i in $(seq 100); do
		grep -q "listening on" "$file.log" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "tcpdump on $ns/$dev did not start: $(cat "$file.log")" >&2
	return 1
}

# capture_stop: end the capture capture_start began (SIGINT, so tcpdump
# writes out what it buffered; SIGKILL if it has not ended after 10 s).
capture_stop() {
	local i
	kill -INT "$VPM_CAPTURE" 2>/dev/null || true
	for i in $(seq 100); do
		kill -0 "$VPM_CAPTURE" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$VPM_CAPTURE" 2>/dev/null || true
	wait "$VPM_CAPTURE" 2>/dev/null || true
}
