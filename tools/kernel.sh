#!/usr/bin/env bash
# Build (or find) the cached test kernel.
#
#   tools/kernel.sh build [debug|base]   build it unless the cache has it
#   tools/kernel.sh dir   [debug|base]   print the kernel tree's directory
#   tools/kernel.sh llvm  KDIR           print the LLVM= value modules for
#                                        the tree in KDIR are built with
#
# The tree lives in $VPM_CACHE/kernel/<flavor>-<key>, where the key hashes
# the Debian source package version, the config fragments' options (not
# their comments), rustc and bindgen: change any of them and a new tree is
# built beside the old one.
# "debug" is base.config + debug.config (functional tests); "base" alone is
# the lean config for benchmarks; "kasan" is debug with KASAN in place of
# KFENCE and SLUB/page poisoning (kasan.config), built with LLVM 19.
set -euo pipefail
. "$(dirname "$0")/env.sh"

cmd=${1:-build}

# A module is built with the toolchain its kernel was: nothing for GCC
# (LLVM= empty), clang's version suffix (-19) when that clang is
# installed under its versioned name, else LLVM=1 (the unversioned one).
if [ "$cmd" = llvm ]; then
	cfg=${2:?usage: $0 llvm KDIR}/.config
	[ -f "$cfg" ] || vpm_die "$cfg missing: is ${2} a configured kernel tree?"
	ver=$(sed -n 's/^CONFIG_CLANG_VERSION=\([0-9]*\)$/\1/p' "$cfg")
	if [ -z "$ver" ] || [ "$ver" = 0 ]; then
		echo ""
	elif command -v "clang-$((ver / 10000))" >/dev/null; then
		echo "-$((ver / 10000))"
	else
		echo 1
	fi
	exit 0
fi
flavor=${2:-${VPM_KFLAVOR:-debug}}
case $flavor in
debug) fragments=("$VPM_ROOT/tests/kernel/base.config" "$VPM_ROOT/tests/kernel/debug.config") ;;
base) fragments=("$VPM_ROOT/tests/kernel/base.config") ;;
kasan) fragments=("$VPM_ROOT/tests/kernel/base.config" "$VPM_ROOT/tests/kernel/debug.config"
	"$VPM_ROOT/tests/kernel/kasan.config") ;;
*) vpm_die "unknown kernel flavor '$flavor' (use debug, base or kasan)" ;;
esac
# The toolchain: GCC (LLVM= empty), or clang/lld/llvm 19 for KASAN with
# Rust; an LLVM build's bindgen then uses llvm-19's own libclang.
llvm=
if [ "$flavor" = kasan ]; then
	llvm=-19
	LIBCLANG_PATH=/usr/lib/llvm-19/lib
	export LIBCLANG_PATH
fi

tarball=/usr/src/linux-source-$VPM_KSERIES.tar.xz
srcver=$(dpkg-query -W -f='${Version}' "linux-source-$VPM_KSERIES" 2>/dev/null) ||
	vpm_die "linux-source-$VPM_KSERIES is not installed: run 'make deps'"
key=$({
	echo "$srcver"
	grep -hEv '^[[:space:]]*(#|$)' "${fragments[@]}"
	grep -h '^# CONFIG_.* is not set$' "${fragments[@]}" || true
	rustc --version
	bindgen --version 2>/dev/null || echo "no bindgen"
	[ -z "$llvm" ] || clang$llvm --version | head -n1
} | sha256sum | cut -c1-12)
dir=$VPM_CACHE/kernel/$flavor-$key
tree=$dir/linux

if [ "$cmd" = dir ]; then
	[ -f "$dir/.built" ] || vpm_die "no $flavor test kernel built for this configuration: run 'make kernel'"
	echo "$tree"
	exit 0
fi
[ "$cmd" = build ] || vpm_die "usage: $0 build|dir [debug|base]"

if [ -f "$dir/.built" ]; then
	vpm_log "test kernel ($flavor) is cached: $tree"
	exit 0
fi
[ -f "$tarball" ] || vpm_die "$tarball missing: run 'make deps'"
[ -n "${LIBCLANG_PATH:-}" ] || vpm_die "libclang >= 17 not found: run 'make deps'"
[ -z "$llvm" ] || command -v "clang$llvm" "ld.lld$llvm" "llvm-ar$llvm" >/dev/null ||
	vpm_die "the $flavor flavor needs clang$llvm, lld$llvm and llvm$llvm: run 'make deps'"
command -v bindgen >/dev/null || vpm_die "bindgen not found: run 'make deps'"

if [ ! -f "$tree/Makefile" ]; then
	vpm_log "unpacking $tarball ($srcver) into $tree"
	rm -rf "$dir"
	mkdir -p "$tree"
	tar -xf "$tarball" -C "$tree" --strip-components=1
fi

kmake() {
	make -C "$tree" ARCH=x86_64 LLVM="$llvm" "$@"
}

vpm_log "checking the Rust toolchain (make rustavailable)"
kmake rustavailable >"$dir/rustavailable.log" 2>&1 || {
	cat "$dir/rustavailable.log" >&2
	vpm_die "the kernel rejects the Rust toolchain (see above); run 'make deps'"
}

vpm_log "configuring ($flavor: ${fragments[*]##*/})"
cat "${fragments[@]}" >"$dir/fragment.config"
kmake KCONFIG_ALLCONFIG="$dir/fragment.config" allnoconfig >"$dir/config.log" 2>&1 ||
	{ tail -n 30 "$dir/config.log" >&2; vpm_die "allnoconfig failed"; }
kmake olddefconfig >>"$dir/config.log" 2>&1 || vpm_die "olddefconfig failed"
# Kconfig silently drops options whose dependencies are not met: insist on
# every option we asked for, as the last fragment to mention it says
# ("=y" or "is not set").
missing=$(sed -nE 's/^(CONFIG_[A-Za-z0-9_]+)=.*/\1 &/p; s/^# (CONFIG_[A-Za-z0-9_]+) is not set$/\1 &/p' \
	"${fragments[@]}" | tac | sort -s -u -k1,1 | cut -d' ' -f2- | while read -r line; do
	case $line in
	"# "*) ! grep -q "^${line:2:-11}=" "$tree/.config" || echo "$line" ;;
	*) grep -qxF "$line" "$tree/.config" || echo "$line" ;;
	esac
done)
[ -z "$missing" ] || vpm_die "kernel config lacks options the fragments ask for:
$missing"

jobs=$(($(nproc) + 1))
vpm_log "building the kernel with -j$jobs (several minutes; log: $dir/build.log)"
(
	while sleep 60; do
		vpm_log "  still building: $(grep -c '^  [A-Z]' "$dir/build.log" 2>/dev/null || echo 0) steps done"
	done
) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
if ! kmake -j"$jobs" >"$dir/build.log" 2>&1; then
	grep -E 'error|Error' "$dir/build.log" | head -n 20 >&2
	vpm_die "kernel build failed: see $dir/build.log"
fi
kill $ticker 2>/dev/null || true
[ -f "$tree/arch/x86/boot/bzImage" ] || vpm_die "kernel build produced no bzImage"
touch "$dir/.built"
vpm_log "test kernel ready: $tree"
