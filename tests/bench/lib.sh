# Helpers for the packet and control-plane benchmarks (tests/bench/2*.sh,
# 3*.sh); sourced after tests/vm/lib/lib.sh.  Not a test itself: guest.sh
# runs tests/bench/[0-9]*.sh only.
#
# Output protocol (read by the host-side report generator): every
# measurement is one line on stdout,
#
#   VPM-BENCH {"case":"D","metric":"udp_pps_1flow","entries":1,"rep":0,"value":123456.7,"unit":"pps"}
#
# compact JSON with exactly these six keys, and every script prints one
#
#   VPM-BENCH-META {"form":"short"|"long",...}
#
# line describing the machine and its own parameters (bench_meta).
# Anything else the scripts print is for people.

# bench_record CASE METRIC ENTRIES REP VALUE UNIT: one measurement.  VALUE
# must be a number (checked: a measurement that could not be taken fails
# the test instead of producing a record).
bench_record() {
	local case=$1 metric=$2 entries=$3 rep=$4 value=$5 unit=$6
	[[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || {
		echo "bench: $case $metric entries=$entries rep=$rep: not a number: '$value'" >&2
		return 1
	}
	printf 'VPM-BENCH {"case":"%s","metric":"%s","entries":%d,"rep":%d,"value":%s,"unit":"%s"}\n' \
		"$case" "$metric" "$entries" "$rep" "$value" "$unit"
	[ -z "${BENCH_LOG:-}" ] || echo "$case $metric $entries $value $unit" >>"$BENCH_LOG"
}

# bench_summary FILE: for people, the median, min, max and count of every
# case, metric and entries in FILE (what bench_record appended to
# $BENCH_LOG).  The report computes its own figures from the records.
bench_summary() {
	[ -s "$1" ] || return 0
	echo "summary: case metric entries: median (min-max) unit, runs"
	sort -k1,1 -k2,2 -k3,3n -k4,4g "$1" | awk '
		function flush() {
			if (n == 0) return
			m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
			printf "  %-3s %-15s %6d: %12.1f (%.1f-%.1f) %s, %d runs\n", c, mt, e, m, v[1], v[n], u, n
			n = 0
		}
		{ k = $1 " " $2 " " $3; if (k != last) { flush(); last = k } c = $1; mt = $2; e = $3; u = $5; v[++n] = $4 }
		END { flush() }'
}

# bench_virt: how this guest runs: "host" (no hypervisor flag in
# /proc/cpuinfo), "kvm" (the kernel found KVM's signature at boot), "tcg"
# (QEMU's software CPU: "QEMU TCG CPU" or "QEMU Virtual CPU" as the model
# name, no KVM signature) or "vm" (another hypervisor).
bench_virt() {
	if ! grep -qw hypervisor /proc/cpuinfo; then
		echo host
	elif dmesg 2>/dev/null | grep -q 'Hypervisor detected: KVM'; then
		echo kvm
	elif grep -qE '^model name.*QEMU (TCG|Virtual) CPU' /proc/cpuinfo; then
		echo tcg
	else
		echo vm
	fi
}

# bench_meta [KEY JSONVALUE]...: a VPM-BENCH-META line: form (short or
# long, as guest.sh says), CPU model, number of CPUs, kernel release, what
# the guest sees of its virtualization, and the extra pairs (KEY a bare
# name, JSONVALUE already JSON: a number or a quoted string).  The report
# merges every META line of a run into one set of keys, so the common keys
# carry the same values as guest.sh's line, and each script prefixes its
# own keys (pkt_, ctl_).
bench_meta() {
	local cpu extra=
	cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -n1 | tr -d '"\\')
	while [ $# -ge 2 ]; do
		extra="$extra,\"$1\":$2"
		shift 2
	done
	printf 'VPM-BENCH-META {"form":"%s","cpu_model":"%s","cpus":%d,"kernel":"%s","guest_virt":"%s"%s}\n' \
		"$(pick short long)" "$cpu" "$(nproc)" "$(uname -r)" "$(bench_virt)" "$extra"
}

# bench_median VALUE...: the median (the mean of the middle two for an
# even count), for the human-readable summaries only; the report computes
# its own from the records.
bench_median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---- memory -------------------------------------------------------------

# bench_kmem: kernel memory that module allocations can land in, in bytes:
# SUnreclaim (kmalloc, and kmalloc_large pages, which the kernel accounts
# as unreclaimable slab) + Percpu (alloc_percpu: populated chunk pages) +
# VmallocUsed (vmalloc, kvmalloc's fallback, the module image).  User
# pages, the page cache and reclaimable slab (dentries, inodes) are left
# out: they move with whatever the tools do, not with vpm's tables.
bench_kmem() {
	awk '/^(SUnreclaim|Percpu|VmallocUsed):/ { s += $2 } END { printf "%d\n", s * 1024 }' /proc/meminfo
}

# bench_sleep SECONDS: sleep without starting a process (each costs
# milliseconds under emulation): a read with a timeout on a pipe nobody
# writes to.
exec {BENCH_SLEEP_FD}<> <(:)
bench_sleep() {
	read -rt "$1" -u "$BENCH_SLEEP_FD" _ || true
}

# bench_settle: let RCU callbacks free replaced views and slab caches
# drain the objects of the processes that just exited before a reading.
bench_settle() {
	bench_sleep "${1:-1}"
}
