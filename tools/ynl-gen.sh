#!/usr/bin/env bash
# Generate vpm's netlink code from uapi/vpm.yaml with the kernel's ynl tool.
#
#   tools/ynl-gen.sh          regenerate the files in place
#   tools/ynl-gen.sh --check  fail if a committed file differs from the spec
#
# Outputs: uapi/linux/vpm.h (uapi enums, used by vpmctl too) and
# gen/vpm_nl_gen.{c,h} (kernel policies, split ops and the genl_family).
# The generator comes from the same Debian linux-source package as the test
# kernel, so its output only changes when that package does.
set -euo pipefail
. "$(dirname "$0")/env.sh"

check=
[ "${1:-}" = --check ] && check=1

tarball=/usr/src/linux-source-$VPM_KSERIES.tar.xz
[ -f "$tarball" ] || vpm_die "$tarball missing: run 'make deps'"
srcver=$(dpkg-query -W -f='${Version}' "linux-source-$VPM_KSERIES")
ynl=$VPM_CACHE/ynl-$srcver
if [ ! -f "$ynl/.done" ]; then
	vpm_log "extracting the ynl generator from $tarball"
	rm -rf "$ynl" && mkdir -p "$ynl"
	tar -xf "$tarball" -C "$ynl" --strip-components=1 --wildcards \
		'*/tools/net/ynl/pyynl/*' '*/Documentation/netlink/genetlink.yaml'
	touch "$ynl/.done"
fi
py=python3
[ -x "$VPM_VENV/bin/python" ] && py=$VPM_VENV/bin/python

# The generator expects a kernel tree: it validates a spec against
# ../<protocol>.yaml next to the spec's folder and names the spec relative to
# the directory holding MAINTAINERS.  Mimic that around a copy of ours.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/uapi" "$work/out/uapi/linux" "$work/out/gen"
touch "$work/MAINTAINERS"
cp "$VPM_ROOT/uapi/vpm.yaml" "$work/uapi/vpm.yaml"
cp "$ynl/Documentation/netlink/genetlink.yaml" "$work/genetlink.yaml"

gen() {
	"$py" "$ynl/tools/net/ynl/pyynl/ynl_gen_c.py" --spec "$work/uapi/vpm.yaml" "$@"
}
gen --mode uapi --header -o "$work/out/uapi/linux/vpm.h"
gen --mode kernel --header -o "$work/out/gen/vpm_nl_gen.h"
gen --mode kernel --source -o "$work/out/gen/vpm_nl_gen.c"

files=(uapi/linux/vpm.h gen/vpm_nl_gen.h gen/vpm_nl_gen.c)
if [ -n "$check" ]; then
	drift=0
	for f in "${files[@]}"; do
		if ! diff -u "$VPM_ROOT/$f" "$work/out/$f" >&2; then
			echo "vpm: $f is out of date with uapi/vpm.yaml" >&2
			drift=1
		fi
	done
	[ $drift = 0 ] || vpm_die "generated netlink files drifted from the spec: run 'make spec' and commit"
	vpm_log "generated netlink files match uapi/vpm.yaml"
else
	for f in "${files[@]}"; do
		mkdir -p "$(dirname "$VPM_ROOT/$f")"
		cp "$work/out/$f" "$VPM_ROOT/$f"
	done
	vpm_log "regenerated ${files[*]}"
fi
