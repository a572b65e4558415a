#!/usr/bin/env bash
# Runs inside the test VM (started by tests/vm.sh).
#
#   guest.sh check   load vpm.ko (KUnit runs), run tests/vm/[0-9]*.sh,
#                    unload, kmemleak scan; print PASS/FAIL lines and
#                    "VPM-RESULT <passed> <failed>" / "VPM-TAINT <n>"
#   guest.sh run     the demo
#   guest.sh bench   load $VPM_KO, run tests/bench/[0-9]*.sh, unload; their
#                    "VPM-BENCH ..." and "VPM-BENCH-META ..." lines (the
#                    benchmark's records, tests/bench/report.py) always reach
#                    the console, after a passing test's PASS line too
#
# Each test script is one test, except that lines "SUBTEST PASS|FAIL name"
# it prints count as tests of their own (KUnit cases, for instance).
#
# Each script runs under its own time limit, declared in its first lines as
# "# vpm-timeout: SECONDS" (VPM_TEST_TIMEOUT, 600, when absent), or with
# VPM_LONG=1 (make stress: the tests' long forms) as
# "# vpm-timeout-long: SECONDS" when the script has that line, times
# VPM_TIMEOUT_SCALE (default 1); tests/vm.sh
# sizes the whole VM's limit from the same lines, so a slow test fails
# alone, by name, instead of the VM run as a whole.
set -u
mode=$1
# The host's tests/vm.sh tells a kernel that never got this far (a boot
# failure: vpm.ko is not loaded yet) from a run that failed.
echo "VPM-GUEST $mode"
cd "$VPM_ROOT"
export VPM_ROOT VPMCTL VPM_KO VPM_LONG="${VPM_LONG:-0}"
# The benchmarks' TCP connection-rate load generator (tools/loadgen).
export VPM_LOADGEN="${VPM_LOADGEN:-}"
export PATH="$(dirname "$VPMCTL"):$PATH"
mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
# What a host's init mounts: the unified cgroup hierarchy and the BPF
# filesystem (vpmctl exec makes groups and pins hooks there).
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# test_limit SCRIPT: its "# vpm-timeout: N" header, or in the long form
# its "# vpm-timeout-long: N" one if it has it (same rule as
# vpm_test_limit in tools/env.sh, which tests/vm.sh uses on the host).
test_limit() {
	local n=
	[ "${VPM_LONG:-0}" = 1 ] &&
		n=$(sed -n '1,15s/^# vpm-timeout-long: *\([0-9][0-9]*\) *$/\1/p' "$1" | head -n1)
	[ -n "$n" ] ||
		n=$(sed -n '1,15s/^# vpm-timeout: *\([0-9][0-9]*\) *$/\1/p' "$1" | head -n1)
	echo $((${n:-${VPM_TEST_TIMEOUT:-600}} * ${VPM_TIMEOUT_SCALE:-1}))
}

# run_limited NAME SCRIPT OUT: run SCRIPT under its time limit, output to
# OUT (- for the console); print PASS/FAIL NAME with its duration.
run_limited() {
	local name=$1 t=$2 out=$3 limit start rc secs
	limit=$(test_limit "$t")
	start=$(date +%s)
	if [ "$out" = - ]; then
		timeout --kill-after=10 "$limit" bash "$t"
	else
		timeout --kill-after=10 "$limit" bash "$t" >"$out" 2>&1
	fi
	rc=$?
	secs=$(($(date +%s) - start))
	if [ $rc = 0 ]; then
		pass "$name (${secs}s of ${limit}s)"
	elif [ $rc = 124 ] || [ $rc = 137 ]; then
		fail "$name (time limit ${limit}s exceeded)"
	else
		fail "$name (exit $rc, ${secs}s)"
	fi
	return $rc
}

# user_pids: the processes of this harness's session alive now (what the
# tests start stays in it, orphans included; the guest's own daemons and
# kernel threads do not), the harness's own subshells left out (this
# function's, and the children of the harness: a finished test has none
# left, so any are command substitutions like the caller's).  The parent
# and the session are the 2nd and 4th fields after the command name in
# /proc/PID/stat (the name itself may hold spaces and parentheses).
# Builtins only: a fork per process would be slow under emulation.
user_pids() {
	local p stat fields sid= arg0
	read -r stat <"/proc/$$/stat"
	read -r -a fields <<<"${stat##*)}"
	sid=${fields[3]}
	for p in /proc/[0-9]*; do
		read -r stat 2>/dev/null <"$p/stat" || continue
		read -r -a fields <<<"${stat##*)}"
		# A zombie, or a process far enough into its exit to have
		# dropped its memory (no command line), is no longer running:
		# reaping it is slow on the emulated debug kernel.
		case ${fields[0]} in Z | X) continue ;; esac
		arg0=
		IFS= read -r -d '' arg0 2>/dev/null <"$p/cmdline"
		[ -n "$arg0" ] || continue
		p=${p#/proc/}
		[ "$p" != "$BASHPID" ] && [ "${fields[1]}" != "$$" ] &&
			[ "${fields[3]}" = "$sid" ] && echo "$p"
	done
	return 0
}

# vpm_loaded: vpm is in /proc/modules (what lsmod lists).  The checks
# between tests read what they need with shell builtins where they can:
# each process started costs about a second under emulation, and they
# run after every test.
vpm_loaded() {
	local name _
	while read -r name _; do
		[ "$name" = vpm ] && return 0
	done </proc/modules
	return 1
}

# left_behind BEFORE: what the test that just ran left behind, one line
# per kind (nothing when clean): network namespaces, vpm cgroups,
# processes that are not in BEFORE (the pids alive before it started),
# and allocations or rules in the initial namespace.  Tests make all of
# these through lib.sh, whose one cleanup removes them.
left_behind() {
	local before=" $(echo $1) " p new=() names
	# `ip netns list` lists /run/netns, the directory `ip netns add` names
	# namespaces in; a glob reads it without starting a process.
	names=$(shopt -s nullglob; n=(/run/netns/*); echo "${n[@]##*/}")
	[ -z "$names" ] || echo "network namespaces: $names"
	if compgen -G '/sys/fs/cgroup/vpm*/' >/dev/null; then
		names=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 1 -type d -name 'vpm*' -exec find {} -type d \; 2>/dev/null |
			sed 's|^/sys/fs/cgroup/||' | xargs)
		[ -z "$names" ] || echo "cgroups: $names"
	fi
	if [ -d /sys/fs/bpf/vpm ]; then
		names=$(find /sys/fs/bpf/vpm -mindepth 1 -printf '%P ' 2>/dev/null)
		[ -z "$names" ] || echo "socket hooks pinned in /sys/fs/bpf/vpm: $names"
	fi
	for p in $(user_pids); do
		case $before in
		*" $p "*) ;;
		*) new+=("$p($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-50))") ;;
		esac
	done
	[ ${#new[@]} = 0 ] || echo "processes: ${new[*]}"
	if vpm_loaded; then
		# The counts, not a dump: a test stopped by its time limit may
		# leave tens of thousands of entries.  vpmctl prints the config
		# as one flat JSON object, e.g. {...,"entries":2,"rules":1}.
		local n= conf
		conf=$(vpmctl config --json 2>/dev/null)
		[[ $conf =~ \"entries\":([0-9]+) ]] && n=${BASH_REMATCH[1]} &&
			[[ $conf =~ \"rules\":([0-9]+) ]] && n="$n ${BASH_REMATCH[1]}" || n=
		[ "${n:-0 0}" = "0 0" ] || echo "allocations and rules in the initial namespace: $n"
	fi
}

# stray_pids BEFORE: the processes of the session not in BEFORE.
stray_pids() {
	local before=" $(echo $1) " p
	for p in $(user_pids); do
		case $before in *" $p "*) ;; *) echo "$p" ;; esac
	done
}

# clean_up_after BEFORE: remove what left_behind reports, so that the next
# test starts clean.
clean_up_after() {
	local before=" $(echo $1) " p n
	for p in $(user_pids); do
		case $before in *" $p "*) ;; *) kill -KILL "$p" 2>/dev/null ;; esac
	done
	for n in $(ip netns list | awk '{print $1}'); do ip netns del "$n" 2>/dev/null; done
	find /sys/fs/cgroup -mindepth 1 -maxdepth 1 -type d -name 'vpm*' 2>/dev/null |
		while read -r n; do find "$n" -depth -type d -exec rmdir {} + 2>/dev/null; done
	rm -rf /sys/fs/bpf/vpm 2>/dev/null
	vpm_loaded && vpmctl flush 2>/dev/null
	return 0
}

# check_clean NAME BEFORE: fail NAME:cleanup if the test left something
# behind (processes get 15 s to finish exiting: reaping is slow on the
# emulated debug kernel).
check_clean() {
	local name=$1 before=$2 left i
	for i in $(seq 30); do
		[ -z "$(stray_pids "$before")" ] && break
		sleep 0.5
	done
	left=$(left_behind "$before")
	[ -z "$left" ] && return 0
	fail "$name:cleanup (left behind: $(echo "$left" | paste -sd ';'))"
	clean_up_after "$before"
}

# run_tests DIR [reload]: each DIR/[0-9]*.sh (or those VPM_TESTS names:
# tests/vm.sh's pick, space-separated) is one test; its "SUBTEST PASS|FAIL
# name" lines count as tests of their own.  With "reload", the module is
# loaded again after a test that left it unloaded.
run_tests() {
	local t name out before names
	if [ -n "${VPM_TESTS:-}" ]; then
		read -ra names <<<"$VPM_TESTS"
	else
		names=()
		for t in "$1"/[0-9]*.sh; do names+=("$(basename "$t" .sh)"); done
	fi
	for name in "${names[@]}"; do
		t=$1/$name.sh
		if [ ! -e "$t" ]; then
			fail "$name: no such test in $1"
			continue
		fi
		out=$(mktemp)
		before=$(user_pids)
		if ! run_limited "$name" "$t" "$out"; then
			grep -avE '^SUBTEST |^VPM-(BENCH|REL)' "$out" | tail -n 30 | sed 's/^/    /'
		fi
		# Benchmark and reliability records go to the console whatever the
		# verdict (once: the failure's tail above leaves them out), for
		# tests/bench/report.py and tests/vm/reliability.py.
		grep -aE '^VPM-REL |^VPM-BENCH(-META)? ' "$out" || true
		while read -r _ st sub; do
			if [ "$st" = PASS ]; then pass "$name:$sub"; else fail "$name:$sub"; fi
		done < <(grep -E '^SUBTEST (PASS|FAIL) ' "$out")
		rm -f "$out"
		if [ "${2:-}" = reload ]; then
			vpm_loaded || insmod "$VPM_KO"
		fi
		check_clean "$name" "$before"
	done
}

if [ "$mode" = bench ]; then
	# What the report's header needs from the guest (tests/vm.sh adds the
	# host's side: accelerator, host CPU, kernel config hash, date).
	model=$(sed -n '/^model name/{s/^[^:]*:[[:space:]]*//;s/["\\]//g;p;q}' /proc/cpuinfo)
	form=short
	[ "$VPM_LONG" = 1 ] && form=long
	printf 'VPM-BENCH-META {"form":"%s","cpu_model":"%s","cpus":%d,"kernel":"%s"}\n' \
		"$form" "$model" "$(nproc)" "$(uname -r)"
	if insmod "$VPM_KO"; then pass insmod; else fail insmod; fi
	run_tests "$VPM_ROOT/tests/bench"
	if rmmod vpm; then pass rmmod; else fail rmmod; fi
	echo "VPM-TAINT $(cat /proc/sys/kernel/tainted)"
	echo "VPM-RESULT $passed $failed"
	exit 0
fi

# The demo's transcript goes to the console; its exit status (and its time
# limit) decide the result.
if [ "$mode" = run ]; then
	run_limited demo "$VPM_ROOT/tests/vm/demo.sh" -
	echo "VPM-TAINT $(cat /proc/sys/kernel/tainted)"
	echo "VPM-RESULT $passed $failed"
	exit 0
fi

# The module stays loaded across tests (tests that reload it leave it
# loaded); KUnit suites run at this first insmod, and only there (below).
dmesg_mark=$(dmesg | wc -l)
if insmod "$VPM_KO"; then
	pass "insmod"
else
	fail "insmod"
fi

# KUnit: each case of vpm's suites counts as a test.
kunit=$(dmesg | tail -n +"$((dmesg_mark + 1))" | sed -n "s/^\\[[^]]*\\] //p")
ncases=0
while read -r status num name; do
	ncases=$((ncases + 1))
	if [ "$status" = ok ]; then pass "kunit:$name"; else fail "kunit:$name"; fi
done < <(echo "$kunit" | awk '
	/# Subtest: vpm_/ { suite = $NF; insuite = 1; next }
	insuite && /^ +ok [0-9]+ / { print "ok", $2, suite "." $3; next }
	insuite && /^ +not ok [0-9]+ / { print "fail", $3, suite "." $4; next }
	/^ok [0-9]+ vpm_|^not ok [0-9]+ vpm_/ { insuite = 0 }')
[ "$ncases" -gt 0 ] || fail "kunit: no vpm KUnit results in the kernel log (CONFIG_KUNIT, kunit.enable=1?)"

# KUnit once: with kunit.autorun=1 the kernel runs a module's suites at
# every load, and 10-load-unload alone loads vpm 3 times (20 in the long
# form).  kunit.filter_glob
# is read at each module load (lib/kunit/executor.c, kunit_module_init) and
# is writable at run time: a glob that matches no suite makes every later
# insmod skip them.  (The debugfs "run" files would need
# CONFIG_KUNIT_DEBUGFS, which the test kernel does not have.)
kunit_glob=/sys/module/kunit/parameters/filter_glob
if ! { [ -w "$kunit_glob" ] && echo "vpm-kunit-already-ran" >"$kunit_glob"; }; then
	fail "kunit: cannot write $kunit_glob: the suites would run again at every insmod"
fi

run_tests "$VPM_ROOT/tests/vm" reload

if rmmod vpm; then pass "rmmod"; else fail "rmmod"; fi

# The suites' start lines over the whole boot show that they ran only once.
suites_once=$(grep -c '# Subtest: vpm_' <<<"$kunit" || true)
suites_all=$(dmesg | grep -c '# Subtest: vpm_' || true)
[ "$suites_all" -le "$suites_once" ] ||
	fail "kunit: vpm's suites ran again after the first insmod ($suites_all suite runs, $suites_once expected)"

# kmemleak: objects freed late by RCU need a moment; scan twice as the
# kmemleak documentation suggests, then read the report.
if [ -w /sys/kernel/debug/kmemleak ]; then
	sleep 1
	echo scan >/sys/kernel/debug/kmemleak
	sleep 5
	echo scan >/sys/kernel/debug/kmemleak
	leaks=$(cat /sys/kernel/debug/kmemleak)
	if [ -z "$leaks" ]; then
		pass "kmemleak"
	else
		fail "kmemleak"
		echo "$leaks" | head -n 40 | sed 's/^/    /'
	fi
else
	fail "kmemleak: /sys/kernel/debug/kmemleak not available"
fi

echo "VPM-TAINT $(cat /proc/sys/kernel/tainted)"
echo "VPM-RESULT $passed $failed"
