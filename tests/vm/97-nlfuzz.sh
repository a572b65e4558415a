#!/usr/bin/env bash
# vpm-timeout: 420
# vpm-timeout-long: 3600
# Netlink fuzzing (issue 11, tests/vm/lib/nlfuzz.py): mutated and random
# messages against the vpm family, with do and dump requests mixed, half
# read dumps and sockets closed mid-dump; 2,000 as root and 500 from an
# unprivileged user namespace in the short form, 80,000 and 20,000 in the
# long one.  The kernel must stay up (the harness checks its log), the
# table consistent (vpmctl's view and a raw dump agree), and unprivileged
# senders change nothing.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

as_nobody="setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all"

load
fresh_netns vpmfz
out=$(ip netns exec vpmfz python3 "$VPM_ROOT/tests/vm/lib/nlfuzz.py" root "$(pick 2000 80000)" 1)
echo "$out"
# vpmctl reads what the fuzz left, and the kernel's count of allocations
# is what a raw dump holds.
ip netns exec vpmfz vpmctl show --json >/dev/null
expect_eq "the kernel's entry count and the raw dump's allocations" "$(sed -n 's/^allocations //p' <<<"$out")" \
	"$(ip netns exec vpmfz vpmctl config --json | json entries)"
subtest PASS root

# The same namespace, attacked by uid 65534 with a user namespace of its
# own (CAP_NET_ADMIN there, not over this network namespace); the fuzzer
# compares raw dumps of the state from before and after itself.
# shellcheck disable=SC2086
ip netns exec vpmfz $as_nobody unshare -Ur python3 "$VPM_ROOT/tests/vm/lib/nlfuzz.py" unpriv "$(pick 500 20000)" 2
subtest PASS unprivileged-changes-nothing

# Privileges, through vpmctl: every mutating command is refused (exit 1,
# the kernel's EPERM, and what to do about it) for uid 65534, and for root
# in a user namespace that does not own this network namespace; the
# read-only ones work for both.  The state is unchanged afterwards.
# A new namespace: the fuzz may have left any configuration behind.
fresh_netns vpmfz
printf '%s\n' "add --aid a --port 9000" "rule add --port 9000 --aid a" |
	ip netns exec vpmfz vpmctl batch - >/dev/null
ip netns exec vpmfz vpmctl save >"$work/saved"
chmod 644 "$work/saved"
chmod 755 "$work"
before=$(ip netns exec vpmfz vpmctl save)
refused=0
mutating=("add --aid p --port 9500" "del --aid a --port 9000" "flush"
	"config --max-entries 5" "config --range 20000-20100"
	"rule add --port 9000 --aid a --from 10.0.0.0/8" "rule del --port 9000"
	"restore $work/saved" "batch $work/batch")
echo "add --aid p --port 9501" >"$work/batch"
chmod 644 "$work/batch"
readonly_cmds=("show" "status" "config" "rule show" "save")
# The short form: the commands that reach each kind of handler (a vpmctl
# start costs several seconds here); the raw fuzz above has already sent
# every mutating command unprivileged.
long || mutating=("add --aid p --port 9500" "flush" "rule add --port 9000 --aid a --from 10.0.0.0/8"
	"restore $work/saved")
long || readonly_cmds=("show" "status")
# run_as WHO CMD...: each vpmctl CMD (one word list each) run by WHO in one
# shell (a process start costs about a second here); prints per command
# "rc<TAB>first line of stderr".
run_as() {
	local who=$1
	shift
	# shellcheck disable=SC2086,SC2016
	ip netns exec vpmfz $who bash -c 'for c in "$@"; do
		err=$(vpmctl $c 2>&1 >/dev/null); rc=$?; first=
		read -r first <<<"$err"; printf "%s\t%s\n" "$rc" "$first"; done' - "$@"
}
for who in "$as_nobody" "$as_nobody unshare -Ur"; do
	cmds=("${mutating[@]}")
	# Root in a user namespace: three of them in the short form.
	[ "$who" = "$as_nobody" ] || long || cmds=("add --aid p --port 9500" "rule del --port 9000")
	i=0
	while IFS=$'\t' read -r rc err; do
		expect_eq "exit code of '${cmds[i]}' for '$who'" 1 "$rc"
		expect "'${cmds[i]}' for '$who' says why (said: $err)" grep -qF "Operation not permitted (this needs CAP_NET_ADMIN" <<<"$err"
		i=$((i + 1))
		refused=$((refused + 1))
	done < <(run_as "$who" "${cmds[@]}")
	expect_eq "commands refused for '$who'" "${#cmds[@]}" "$i"
	i=0
	while IFS=$'\t' read -r rc err; do
		expect_eq "exit code of read-only '${readonly_cmds[i]}' for '$who' ($err)" 0 "$rc"
		i=$((i + 1))
	done < <(run_as "$who" "${readonly_cmds[@]}")
	expect_eq "read-only commands run for '$who'" "${#readonly_cmds[@]}" "$i"
done
expect_eq "the state after the refused commands" "$before" "$(ip netns exec vpmfz vpmctl save)"
printf 'VPM-REL {"suite":"netlink-fuzz","case":"vpmctl-privileges","inputs":%d,"expect":"every mutating command refused (EPERM) for uid 65534 and for root in a user namespace; read-only ones work; state unchanged","what":"%s","result":"pass"}\n' "$refused" "$(printf '%s; ' "${mutating[@]%% *}")"
subtest PASS privileges
