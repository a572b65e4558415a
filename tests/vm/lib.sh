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

subtest() { echo "SUBTEST $1 $2"; }

# fresh_netns NAME...: (re)create empty network namespaces.
fresh_netns() {
	local n
	for n in "$@"; do
		ip netns del "$n" 2>/dev/null || true
		ip netns add "$n"
	done
}

loaded() { lsmod | grep -q '^vpm '; }
load() { loaded || insmod "$VPM_KO"; }
unload() { ! loaded || rmmod vpm; }

# json FIELD: read a top-level field of the JSON object on stdin.
json() {
	python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# status_field [NETNS] FIELD: one field of `vpmctl status --json`.
status_field() {
	if [ $# = 2 ]; then
		ip netns exec "$1" vpmctl status --json | json "$2"
	else
		vpmctl status --json | json "$1"
	fi
}
