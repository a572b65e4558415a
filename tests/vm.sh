#!/usr/bin/env bash
# Boot the test kernel under virtme-ng and run vpm's VM tests or the demo.
#
#   tests/vm.sh check KDIR   run tests/vm/[0-9]*.sh, KUnit, kmemleak; verdict
#   tests/vm.sh run KDIR     the demo (tests/vm/demo.sh): two instances behind one port
#   tests/vm.sh bench KDIR   run tests/bench/[0-9]*.sh (timing assertions; meant
#                            for the lean kernel, with VPM_KO built for it);
#                            their VPM-BENCH records go to $VPM_BENCH_LOG
#                            (default $VPM_CACHE/bench/last.log), read by
#                            tests/bench/report.py
#
# The guest sees the host's root filesystem read-only, so it uses vpm.ko
# and vpmctl straight from this tree.  Its console (kernel log included) is
# saved to $VPM_CACHE/logs and scanned for kernel splats.
#
# Time limits: every test script declares its own in its first lines,
# "# vpm-timeout: SECONDS" (about 3x its duration on an idle machine;
# VPM_TEST_TIMEOUT, default 600, for a script without one), and
# tests/vm/lib/guest.sh stops and fails a test that overruns it.  The VM as a
# whole gets the sum of the selected tests' limits plus VM_MARGIN for boot,
# KUnit, unload, kmemleak and shutdown, so it never ends a run before a
# test's own limit would; VPM_VM_TIMEOUT replaces that sum when set.
# VPM_TIMEOUT_SCALE=N multiplies every test's limit (a slow or busy machine).
#
# Short and long forms: by default every VM test runs in its short form
# (what make check runs); VPM_LONG=1 (make stress) runs their long forms,
# with more repetitions and bigger sizes, under their "# vpm-timeout-long:"
# limits where they declare one.
#
# VPM_KVM=1 uses KVM (unreliable on nested hosts, hence off by default);
# VPM_KERNEL_ARGS='...' adds kernel parameters (an A/B of a debug option);
# VPM_TESTS='70-*' runs only the matching test scripts (several globs,
# space-separated: '4*-* 9[24]-*'); VPM_SKIP leaves out the scripts matching
# its globs (make stress: the reliability suite, which it runs on KASAN).
set -euo pipefail
. "$(dirname "$0")/../tools/env.sh"

usage="usage: tests/vm.sh check|run|bench KDIR"
mode=${1:-}
kdir=${2:-}
# select_tests DIR: sets tests to the scripts in DIR that VPM_TESTS picks
# and VPM_SKIP leaves, each once, in name order (read splits the globs
# without expanding them).  A glob is of test names, never a path.
select_tests() {
	local pat pats skips t s name matched
	local -A picked=()
	read -ra pats <<<"${VPM_TESTS:-[0-9]*}"
	read -ra skips <<<"${VPM_SKIP:-}"
	for pat in "${pats[@]}"; do
		case $pat in */*) vpm_die "VPM_TESTS: '$pat' is a path; give globs of test names, such as '70-*'" ;; esac
		matched=
		for t in "$1"/$pat.sh; do
			name=$(basename "$t" .sh)
			[[ -e $t && $name == [0-9]* ]] || continue
			matched=1
			for s in "${skips[@]}"; do
				# shellcheck disable=SC2053 # $s is a glob on purpose
				[[ $name == $s ]] && continue 2
			done
			picked[$name]=1
		done
		[ -n "$matched" ] || vpm_log "warning: VPM_TESTS: '$pat' matches no test in $1"
	done
	tests=()
	while read -r name; do
		[ -n "$name" ] && tests+=("$1/$name.sh")
	done < <(printf '%s\n' "${!picked[@]}" | sort)
	[ ${#tests[@]} -gt 0 ] ||
		vpm_die "no test script in $1 matches VPM_TESTS='${VPM_TESTS:-}' VPM_SKIP='${VPM_SKIP:-}'"
}
case $mode in
check) select_tests "$VPM_ROOT/tests/vm" ;;
bench) select_tests "$VPM_ROOT/tests/bench" ;;
run) tests=("$VPM_ROOT/tests/vm/demo.sh") ;;
*) vpm_die "$usage" ;;
esac
# The guest runs exactly these, by name.
names=
[ "$mode" = run ] || names=$(for t in "${tests[@]}"; do basename "$t" .sh; done | tr '\n' ' ')
[ -n "$kdir" ] || vpm_die "$usage (KDIR: a built kernel tree)"
: "${CARGO_TARGET_DIR:=$VPM_ROOT/target}"
vpmctl=$CARGO_TARGET_DIR/release/vpmctl
ko=${VPM_KO:-$VPM_ROOT/vpm.ko}
# The benchmarks' connection-rate load generator (make bench builds it).
loadgen=${VPM_LOADGEN:-$CARGO_TARGET_DIR/release/vpm-loadgen}
bench_log=${VPM_BENCH_LOG:-$VPM_CACHE/bench/last.log}

command -v vng >/dev/null || vpm_die "virtme-ng (vng) not found: run 'make deps'"
command -v qemu-system-x86_64 >/dev/null || vpm_die "qemu-system-x86_64 not found: run 'make deps'"
[ -f "$kdir/arch/x86/boot/bzImage" ] || vpm_die "no kernel image in $kdir: run 'make kernel'"
[ -f "$ko" ] || vpm_die "$ko not built: run 'make module'"
[ -x "$vpmctl" ] || vpm_die "$vpmctl not built: run 'make vpmctl'"
if [ "$mode" = bench ]; then
	[ -x "$loadgen" ] || vpm_log "warning: $loadgen not built (make loadgen): connection-rate figures will be missing"
	# Never leave a previous run's records where this run's are expected.
	mkdir -p "$(dirname "$bench_log")"
	rm -f "$bench_log"
fi

# Anything but 1 is the short form, here and in the guest.
[ "${VPM_LONG:-0}" = 1 ] || VPM_LONG=0
form=
if [ "$mode" = check ]; then
	form="short forms, "
	[ "$VPM_LONG" = 0 ] || form="long forms, "
fi

VM_MARGIN=$((600 * ${VPM_TIMEOUT_SCALE:-1}))
vm_limit=$VM_MARGIN
for t in "${tests[@]}"; do
	[ -e "$t" ] || continue
	vm_limit=$((vm_limit + $(vpm_test_limit "$t")))
done
vm_limit=${VPM_VM_TIMEOUT:-$vm_limit}

mkdir -p "$VPM_CACHE/logs"
log=$VPM_CACHE/logs/vm-$mode-$(date +%Y%m%d-%H%M%S).log

kvm=(--disable-kvm)
[ "${VPM_KVM:-0}" = 1 ] && kvm=()

# panic_on_warn and oops=panic: any kernel warning ends the run, which then
# lacks its closing line and fails.  kfence.sample_interval=1 samples every
# allocation.  kunit.enable=1 kunit.autorun=1 run vpm.ko's KUnit suites at
# insmod (guest.sh lets them run at the first insmod only); the demo does
# not need them.
autorun=1
[ "$mode" = run ] && autorun=0
# SLUB debugging on every cache (the debug flavor's SLUB_DEBUG_ON) runs
# with its checks (F: sanity, Z: red zones, P: poisoning) but without U,
# the stack traces of every allocation and free: they only make a report
# say who allocated and freed the object, and they cost make check about
# a fifth of its time (process starts under TCG, docs/TESTING.md "The
# debug kernel").  make stress puts them back (VPM_SLUB_TRACES=1: FZPU).
# VPM_KERNEL_ARGS adds to the command line (a later parameter wins).
slub=
grep -q '^CONFIG_SLUB_DEBUG_ON=y' "$kdir/.config" 2>/dev/null &&
	if [ "${VPM_SLUB_TRACES:-0}" = 1 ]; then slub="slub_debug=FZPU"; else slub="slub_debug=FZP"; fi
append="panic_on_warn=1 oops=panic panic=-1 kfence.sample_interval=1 $slub kunit.enable=1 kunit.autorun=$autorun printk.time=1 ${VPM_KERNEL_ARGS:-}"

# The kernel's YNL client, for tests/vm/87-ynl.sh (extracted once into
# the cache from the kernel source package, as make spec does).
ynl_cli=$("$VPM_ROOT/tools/ynl-gen.sh" --cli)
guest="VPM_ROOT=$VPM_ROOT VPM_YNL_CLI='$ynl_cli' VPMCTL=$vpmctl VPM_KO=$ko VPM_LOADGEN=$loadgen VPM_TESTS='${names% }' VPM_TEST_TIMEOUT=${VPM_TEST_TIMEOUT:-600} VPM_TIMEOUT_SCALE=${VPM_TIMEOUT_SCALE:-1} VPM_LONG=$VPM_LONG bash $VPM_ROOT/tests/vm/lib/guest.sh $mode"
# What counts as a kernel splat in a console log (the verdict below).
splat_re='RIP: |Call Trace:|ref_tracker:|unreferenced object 0x|blocked for more than|BUG:|WARNING:|Kernel panic|hw csum failure'

# A kernel that crashes (a splat in its console) before the guest script
# starts (no "VPM-GUEST" anywhere) has not met vpm.ko yet, which the
# script loads: an early-boot crash of the emulated kernel
# (docs/TESTING.md, "Boot failures").  It gets one more boot, and its
# console log stays beside the new one for a look.  Anything else (vng
# failing to start, a guest that never prints) is judged as it is.
boot_failed=
for boot in 1 2; do
	vpm_log "booting $kdir under virtme-ng (${kvm[*]:-kvm}, ${form}limit ${vm_limit}s${VPM_KERNEL_ARGS:+, kernel args: $VPM_KERNEL_ARGS}); console log: $log"
	set +e
	timeout --kill-after=30 "$vm_limit" \
		vng --run "$kdir" --user root "${kvm[@]}" --cpus 2 --memory 2G -v \
		-a "$append" --exec "$guest" </dev/null 2>&1 |
		tee "$log" | grep --line-buffered -E '^(PASS|FAIL|SKIP) |^    |^\| '
	vm_rc=${PIPESTATUS[0]}
	set -e
	[ "$boot" = 1 ] && [ "$vm_rc" != 124 ] && ! grep -qa 'VPM-GUEST' "$log" &&
		grep -qaE "$splat_re" "$log" || break
	sed -i 's/\r$//' "$log"
	boot_failed=${log%.log}.boot-failed.log
	mv "$log" "$boot_failed"
	echo "NOTE vm: the kernel crashed before the guest script started (log: $boot_failed); booting it again"
	grep -anE "$splat_re" "$boot_failed" | head -n 5 | sed 's/^/    /' || true
done
[ "$vm_rc" = 124 ] && echo "FAIL vm: no result within ${vm_limit}s"
# The serial console ends lines with CR LF.
sed -i 's/\r$//' "$log"
# What tests/vm/reliability.py needs to know about the run, and where the
# last run of each mode is.
printf 'VPM-RUN {"kernel":"%s","config_sha256":"%s","long":%d,"date":"%s","commit":"%s"}\n' \
	"$(basename "$(dirname "$kdir")")" "$(sha256sum "$kdir/.config" 2>/dev/null | cut -c1-12)" \
	"$VPM_LONG" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	"$(git -C "$VPM_ROOT" describe --always --dirty 2>/dev/null || echo unknown)" >>"$log"
ln -sf "$(basename "$log")" "$VPM_CACHE/logs/last-$mode.log"

# The benchmark's records: the host's facts first (the guest adds its own
# VPM-BENCH-META), then every VPM-BENCH line of the console, wherever it
# starts (report.py skips what precedes the marker).
if [ "$mode" = bench ]; then
	accel=tcg
	[ "${VPM_KVM:-0}" = 1 ] && accel=kvm
	cpu_model=$(sed -n '/^model name/{s/^[^:]*:[[:space:]]*//;s/["\\]//g;p;q}' /proc/cpuinfo)
	config_sha=$(sha256sum "$kdir/.config" 2>/dev/null | cut -c1-12) || config_sha=
	{
		printf 'VPM-BENCH-META {"date":"%s","accel":"%s","host_cpu_model":"%s","host_cpus":%d,"kernel_config_sha256":"%s"}\n' \
			"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$accel" "$cpu_model" "$(nproc)" "${config_sha:-unknown}"
		grep -a 'VPM-BENCH' "$log" || true
	} >"$bench_log"
	echo "benchmark records: $bench_log ($(grep -c 'VPM-BENCH ' "$bench_log" || true) records)"
fi

# ---- verdict ------------------------------------------------------------
# Splats are looked for in the whole console, not only during tests.
splats=$(grep -nE "$splat_re" "$log" | head -n 20 || true)
result=$(grep -E '^VPM-RESULT ' "$log" | tail -n1 || true)
taint=$(grep -E '^VPM-TAINT ' "$log" | tail -n1 | awk '{print $2}' || true)

passed=0 failed=0
if [ -n "$result" ]; then
	passed=$(echo "$result" | awk '{print $2}')
	failed=$(echo "$result" | awk '{print $3}')
else
	echo "FAIL vm: the guest did not report results (crash, panic or timeout)"
	failed=$((failed + 1))
fi
if [ -n "$splats" ]; then
	echo "FAIL kernel-log: splat in the console log:"
	echo "$splats" | sed 's/^/    /'
	failed=$((failed + 1))
fi
# Allowed taints: O (out-of-tree module, 4096), E (unsigned, 8192),
# TEST (KUnit ran, 262144).
if [ -n "$taint" ] && [ $((taint & ~(4096 | 8192 | 262144))) -ne 0 ]; then
	echo "FAIL taint: kernel tainted $taint"
	failed=$((failed + 1))
fi
echo "console log: $log"
[ -z "$boot_failed" ] || echo "the first boot crashed before the guest script started: $boot_failed"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
