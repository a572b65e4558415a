#!/usr/bin/env bash
# vpm-timeout: 420
# vpm-timeout-long: 900
# Cooperative mode, the negotiation (issue 12, first stage): the agents of
# two hosts (network namespaces C and S) negotiate the ports of C's client
# AIDs a and b for S's fixed port 9000.  S's negotiated ports are S's
# kernel allocations; C's state file shows the same ones.  Renewal, a
# restart of S's agent (state and epoch kept), S's state lost (a new
# epoch: C asks again), release on reload, expiry.  Refused, each with
# its result code and nothing changed: a sender off the allow-list, a
# wrong key, a replay, a peer deleting another peer's mapping, an address
# mismatch; then 5,000 random and mutated messages.  (The data path,
# C's sockets reaching S's instances through the negotiated ports, is
# the next stage.)
#
#   +-- vpmcc (C) --------------+        +-- vpmcs (S) -------------+
#   | 10.203.0.1 (agent, peer c) |--------| 10.203.0.2 (agent)       |
#   | 10.203.0.3 (peer x)        |        | exports 9000 for a and b |
#   | 10.203.0.4 (not a peer)    |        +--------------------------+
#   +----------------------------+
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c() { ip netns exec vpmcc "$@"; }
s() { ip netns exec vpmcs "$@"; }
coop() { c python3 "$VPM_ROOT/tests/vm/coop.py" "$@"; }

load
fresh_netns vpmcc vpmcs
ip link add veth-c netns vpmcc type veth peer name veth-s netns vpmcs
printf '%s\n' "addr add 10.203.0.1/24 dev veth-c" "addr add 10.203.0.3/24 dev veth-c" \
	"addr add 10.203.0.4/24 dev veth-c" "link set lo up" "link set veth-c up" | ip -n vpmcc -b -
printf '%s\n' "addr add 10.203.0.2/24 dev veth-s" "link set lo up" "link set veth-s up" | ip -n vpmcs -b -

K1=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
K3=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
BAD=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/s.toml" <<EOF
listen = "0.0.0.0:9478"
state_file = "$work/s.json"
max_lifetime = 600
[[peer]]
name = "c"
address = "10.203.0.1"
key_id = 1
key = "$K1"
[[peer]]
name = "x"
address = "10.203.0.3"
key_id = 3
key = "$K3"
[[export]]
port = 9000
aids = ["a", "b"]
EOF
cat >"$work/c.toml" <<EOF
listen = "10.203.0.1:9478"
state_file = "$work/c.json"
[[peer]]
name = "s"
address = "10.203.0.2"
key_id = 1
key = "$K1"
[[map]]
peer = "s"
aid = "a"
port = 9000
lifetime = 20
[[map]]
peer = "s"
aid = "b"
port = 9000
lifetime = 600
EOF

start_s() { ip netns exec vpmcs vpmctl agent --config "$work/s.toml" 2>>"$work/s.log" & spid=$!; }
start_c() { ip netns exec vpmcc vpmctl agent --config "$work/c.toml" 2>>"$work/c.log" & cpid=$!; }
at_exit 'kill $spid $cpid 2>/dev/null'

# field FILE EXPR: a value of a state file (python: no jq in the guest).
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
cneg() { field "$work/c.json" "[e.get('negotiated', 0) for e in d['client'] if e['want']['aid'] == '$1'][0]"; }
sanon() { s vpmctl show --json | python3 -c "import json,sys; print([m['anon_port'] for m in json.load(sys.stdin) if m['aid'] == '$1' and m['port'] == 9000][0])"; }
srecs() { field "$work/s.json" "len(d['server']['records'])"; }
counter() { field "$work/$1.json" "d['counters'].get('$2', 0)"; }
# wait_for SECONDS CMD...: until CMD succeeds.
wait_for() {
	local n=$(($1 * 10))
	shift
	while [ $n -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
	return 1
}
granted() { [ "$(cneg a)" != 0 ] && [ "$(cneg b)" != 0 ]; }
# C's ports are S's allocations, for both AIDs.
agree() { [ "$(cneg a)" = "$(sanon a)" ] && [ "$(cneg b)" = "$(sanon b)" ]; }
counted() { [ "$(counter "$1" "$2")" -ge 1 ]; }
# has_alloc AID: S's kernel has an allocation of AID for 9000 (show
# --json must work: a failing show is not "no allocation").
has_alloc() {
	local j
	j=$(s vpmctl show --json) || { echo "vpmctl show failed" >&2; return 2; }
	python3 -c "import json,sys; sys.exit(0 if any(m['aid'] == sys.argv[1] and m['port'] == 9000 for m in json.loads(sys.argv[2])) else 1)" "$1" "$j"
}
no_alloc() { has_alloc "$1"; [ $? = 1 ]; }
starts() { grep -c "event=start" "$work/s.log" || true; }
started_since() { [ "$(starts)" -gt "$1" ]; }
last_epoch() { grep "event=start" "$work/s.log" | tail -n 1 | sed 's/.*epoch=\([0-9a-f]*\).*/\1/'; }
# restart_s: stop S's agent and start it again, waiting for its start line.
restart_s() {
	local n
	n=$(starts)
	kill -TERM $spid
	wait $spid 2>/dev/null || true
	"$@"
	start_s
	wait_for 20 started_since "$n"
}

start_s
wait_for 20 test -s "$work/s.json"
start_c
expect "C gets both mappings (C log: $(tail -n 3 "$work/c.log" 2>/dev/null))" wait_for 60 granted
a=$(cneg a)
b=$(cneg b)
expect_eq "a's negotiated port is S's allocation" "$(sanon a)" "$a"
expect_eq "b's negotiated port is S's allocation" "$(sanon b)" "$b"
expect "a and b differ" test "$a" != "$b"
expect_eq "S holds two records for peer c" 2 "$(srecs)"
expect "vpmctl peer show on C" bash -c "ip netns exec vpmcc vpmctl peer show --state-file $work/c.json | grep -q 'aid a .*negotiated $a .*granted'"
expect "vpmctl peer show on S" bash -c "ip netns exec vpmcs vpmctl peer show --state-file $work/s.json | grep -q 'peer c .*aid b .*negotiated $b'"
subtest PASS negotiate

# Renewal: a's lifetime is 20 s, renewed at about 10 s.
exp0=$(field "$work/s.json" "[r['expires_ms'] for r in d['server']['records'] if r['aid'] == 'a'][0]")
renewed() { [ "$(field "$work/s.json" "[r['expires_ms'] for r in d['server']['records'] if r['aid'] == 'a'][0]")" -gt "$exp0" ]; }
expect "a is renewed before it expires" wait_for 25 renewed
expect_eq "renewed, same port" "$a" "$(cneg a)"
expect_eq "nothing expired on S" 0 "$(counter s server_expired)"
subtest PASS renew

# S's agent restarts: the kernel kept the allocations, the file the
# records and the epoch; C's renewals go on with the same ports.
epoch=$(last_epoch)
expect "S's first epoch logged" test -n "$epoch"
stop_check() { expect_eq "stopping the agent leaves the allocation" "$a" "$(sanon a)"; }
expect "S's agent restarts" restart_s stop_check
expect_eq "same epoch after a restart" "$epoch" "$(last_epoch)"
exp0=$(field "$work/s.json" "[r['expires_ms'] for r in d['server']['records'] if r['aid'] == 'a'][0]")
expect "renewals go on after S's restart" wait_for 25 renewed
expect_eq "still the same port" "$a" "$(cneg a)"
expect_eq "nothing expired on S" 0 "$(counter s server_expired)"
subtest PASS restart-server

# S loses its state (the kernel's allocations flushed while its agent is
# down): a new epoch; C sees it at its next renewal and asks again.
expect "S's agent restarts after a flush" restart_s s vpmctl flush
expect "a new epoch ($epoch before)" test "$epoch" != "$(last_epoch)"
expect "C notices and asks again (C log: $(tail -n 3 "$work/c.log"))" wait_for 40 grep -q "event=peer-restarted" "$work/c.log"
expect "C's ports are S's new allocations" wait_for 30 agree
a=$(cneg a)
b=$(cneg b)
subtest PASS epoch

# Refusals: each answered with its result code, S's state unchanged.
# What a refusal must not change: the allocations, and the records but
# for their expiry times (C's renewals move those).
state() { s vpmctl show --json; field "$work/s.json" "[(r['peer'], r['aid'], r['negotiated']) for r in d['server']['records']]"; }
before=$(state)
out=$(coop send --to 10.203.0.2 --from 10.203.0.4 --key "$K1" --key-id 1 --aid a --port 9000)
expect_eq "off the allow-list: not authorized, unsigned" "result=2 negotiated=0 lifetime=0 signed=0" "$out"
out=$(coop send --to 10.203.0.2 --from 10.203.0.1 --key "$BAD" --key-id 1 --aid a --port 9000)
expect_eq "wrong key: not authorized" "result=2 negotiated=0 lifetime=0 signed=0" "$out"
out=$(coop send --to 10.203.0.2 --from 10.203.0.3 --key "$K3" --key-id 3 --aid a --port 9000 --lifetime 0)
expect_eq "peer x deleting c's mapping: not authorized, signed" "result=2 negotiated=0 lifetime=0 signed=1" "$out"
out=$(coop send --to 10.203.0.2 --from 10.203.0.1 --key "$K1" --key-id 1 --aid a --port 9000 --client 10.203.0.9)
expect_eq "address mismatch" "result=7 negotiated=0 lifetime=0 signed=1" "$out"
out=$(coop send --to 10.203.0.2 --from 10.203.0.3 --key "$K3" --key-id 3 --aid zz --port 9000)
expect_eq "an AID S does not export: not authorized" "result=2 negotiated=0 lifetime=0 signed=1" "$out"
out=$(coop send --to 10.203.0.2 --from 10.203.0.3 --key "$K3" --key-id 3 --aid a --port 9001)
expect_eq "a port S does not export" "result=5 negotiated=0 lifetime=0 signed=1" "$out"
expect_eq "refusals changed nothing" "$before" "$(state)"
# A replay: the same signed request twice.  The first is c's own renewal
# of a (granted, same port); the second is refused.
out=$(coop send --to 10.203.0.2 --from 10.203.0.1 --key "$K1" --key-id 1 --aid a --port 9000 --lifetime 20 --times 2)
expect_eq "a replay is refused" "result=0 negotiated=$a lifetime=20 signed=1
result=2 negotiated=0 lifetime=0 signed=0" "$out"
expect "counted: off the list" wait_for 5 counted s refused_not_allowed
expect "counted: bad MAC" wait_for 5 counted s refused_bad_mac
expect "counted: replay" wait_for 5 counted s refused_replayed
subtest PASS refusals

before=$(state)
out=$(coop fuzz --to 10.203.0.2 --from 10.203.0.1 --key "$K1" --key-id 1 --count 5000)
echo "fuzz: $out"
expect "S's agent survived the fuzz" kill -0 $spid
expect_eq "the fuzz changed nothing" "$before" "$(state)"
expect "unauthenticated answers are rate-limited" wait_for 5 counted s error_answers_suppressed
subtest PASS fuzz

# Release: C's configuration drops b; SIGHUP; b goes on both sides (the
# agent created it, so S releases the allocation).
python3 - "$work/c.toml" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
i = s.rindex("[[map]]")
open(p, "w").write(s[:i])
EOF
kill -HUP $cpid
expect "S drops b's record and allocation" wait_for 20 no_alloc b
expect_eq "S keeps a" 1 "$(srecs)"
subtest PASS release

# Expiry: C's agent stops; a's record (lifetime 20 s) runs out on S.
kill -TERM $cpid
wait $cpid 2>/dev/null || true
expect "a expires on S (S log: $(tail -n 2 "$work/s.log"))" wait_for 40 bash -c "[ \"\$(python3 -c \"import json; print(len(json.load(open('$work/s.json'))['server']['records']))\")\" = 0 ]"
expect "and its allocation is released" no_alloc a
expect "the expiry is logged" grep -q "event=expired side=server peer=c aid=a" "$work/s.log"
subtest PASS expiry
