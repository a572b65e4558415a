#!/usr/bin/env bash
# vpm-timeout: 90
# vpm-timeout-long: 900
# vpm.ko loads and unloads cleanly twice in a row (20 times in the long
# form; 99-teardown unloads under load), its hooks registered in init_net
# for the first allocation and gone with the last one, and unloads with
# them registered or not;
# without it, vpmctl says so and exits with code 3.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

unload
n=$(pick 2 20)
for i in $(seq "$n"); do
	insmod "$VPM_KO"
	expect_eq "hooks in init_net after load $i of $n (no allocation yet)" 0 "$(status_field hooks)"
	vpmctl add --aid t --port 9000 >/dev/null
	expect_eq "hooks in init_net with an allocation ($i of $n)" 6 "$(status_field hooks)"
	# Every other round unloads with the hooks still registered.
	if [ $((i % 2)) = 1 ]; then
		vpmctl del --aid t --port 9000
		expect_eq "hooks in init_net after the last allocation went ($i of $n)" 0 "$(status_field hooks)"
	fi
	rmmod vpm
done

set +e
out=$(vpmctl status 2>&1)
rc=$?
set -e
expect_eq "vpmctl exit code without the module" 3 "$rc"
expect_eq "vpmctl message without the module" \
	"vpmctl: vpm kernel module not loaded, and the kernel could not load it: insmod vpm.ko, or install it (make install) for modprobe; dmesg may say why" "$out"
load
