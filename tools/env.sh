# Shared settings for vpm's build and test scripts; sourced, never executed.
#
# Everything vpm installs or builds outside the repository lives under
# VPM_CACHE so that a second run is fast and `rm -rf "$VPM_CACHE"` is a clean
# slate.  Every variable can be overridden from the environment.

: "${VPM_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/vpm}"
# Python tools (libclang for bindgen, virtme-ng, the ynl generator's deps).
: "${VPM_VENV:=$VPM_CACHE/venv}"
# Kernel series the test kernel is built from (Debian linux-source-$VPM_KSERIES).
: "${VPM_KSERIES:=7.3}"
# Debian suite that carries linux-source-$VPM_KSERIES and a matching rust-src.
: "${VPM_APT_SUITE:=trixie-backports}"
: "${VPM_LIBCLANG_VERSION:=18.1.1}"
: "${VPM_VIRTME_NG_VERSION:=1.42}"
: "${VPM_BINDGEN_VERSION:=0.73.2}"

VPM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# libclang.so shipped by the PyPI "libclang" wheel; bindgen finds it here.
vpm_libclang_dir() {
	local d
	d=$(ls -d "$VPM_VENV"/lib/python3*/site-packages/clang/native 2>/dev/null | head -n1)
	[ -n "$d" ] && echo "$d"
}

export VPM_CACHE VPM_VENV VPM_KSERIES VPM_ROOT
export PATH="$VPM_VENV/bin:$HOME/.cargo/bin:$PATH"
if d=$(vpm_libclang_dir); then
	export LIBCLANG_PATH="$d"
fi

# vpm_test_limit SCRIPT: the time limit in seconds a VM test declares in its
# first lines as "# vpm-timeout: N" (VPM_TEST_TIMEOUT, default 600, when it
# declares none), times VPM_TIMEOUT_SCALE (an integer, default 1, for a
# machine known to be slow).  With VPM_LONG=1 (make stress: the tests' long
# forms) a "# vpm-timeout-long: N" line takes its place when the script
# has one.  tests/vm/lib/guest.sh applies the same rule inside the VM.
vpm_test_limit() {
	local n=
	[ "${VPM_LONG:-0}" = 1 ] &&
		n=$(sed -n '1,15s/^# vpm-timeout-long: *\([0-9][0-9]*\) *$/\1/p' "$1" | head -n1)
	[ -n "$n" ] ||
		n=$(sed -n '1,15s/^# vpm-timeout: *\([0-9][0-9]*\) *$/\1/p' "$1" | head -n1)
	echo $((${n:-${VPM_TEST_TIMEOUT:-600}} * ${VPM_TIMEOUT_SCALE:-1}))
}

# Progress lines carry the elapsed time since the calling script started.
VPM_T0=${VPM_T0:-$(date +%s)}
export VPM_T0
vpm_log() {
	printf '[vpm %4ds] %s\n' "$(($(date +%s) - VPM_T0))" "$*" >&2
}
vpm_die() {
	printf 'vpm: error: %s\n' "$*" >&2
	exit 1
}
