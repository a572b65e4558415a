#!/usr/bin/env bash
# Install everything vpm's build and tests need on a Debian 12 x86_64 host.
#
# Idempotent: each step checks first and does nothing when its piece is
# already there, so `make check` can call it on every run.  Steps that need
# root say so.  Package hosts are never named here: the extra apt suite reuses
# the URI and keyring of the machine's own Debian source.
set -euo pipefail
. "$(dirname "$0")/env.sh"

APT_PKGS=(
	# kernel build
	flex bison bc libelf-dev libssl-dev cpio kmod rsync xz-utils
	# vpmctl's socket hooks: clang's BPF target (bookworm's main suite has
	# clang-19), libbpf's headers, and libbpf-rs's build of libbpf
	clang-19 libbpf-dev zlib1g-dev pkg-config
	# the KASAN kernel flavor: an LLVM=-19 build (clang, lld, the llvm
	# binutils), whose bindgen takes libclang from llvm-19 as well
	lld-19 llvm-19
	# VM
	qemu-system-x86 busybox-static
	# userspace test tools used by tests/vm
	iproute2 nftables socat iperf3 ethtool tcpdump iputils-ping procps
	# tests/vm/85-install.sh: DKMS builds and installs vpm.ko in the guest
	dkms
)
SRC_LIST=/etc/apt/sources.list.d/vpm-$VPM_APT_SUITE.sources
PIN_FILE=/etc/apt/preferences.d/vpm-$VPM_APT_SUITE

need_root() {
	[ "$(id -u)" = 0 ] || vpm_die "$1 needs root (run 'sudo make deps' once)"
}

apt_missing() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	echo "${missing[@]:-}"
}

# Set by every step that changed something, so a no-op run stays quiet.
installed=
apt_updated=
apt_update() {
	[ -n "$apt_updated" ] && return
	vpm_log "apt-get update"
	apt-get update -qq || vpm_die "apt-get update failed: check the machine's apt sources"
	apt_updated=1
	installed=1
}

# Add the backports suite next to the machine's Debian source, pinned low so
# that nothing else on the system is upgraded from it.
ensure_suite() {
	[ -f "$SRC_LIST" ] && return
	need_root "adding the $VPM_APT_SUITE apt suite"
	local base uri keyring
	base=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v vpm- | head -n1)
	[ -n "$base" ] || vpm_die "no deb822 apt source in /etc/apt/sources.list.d to take the Debian mirror from"
	uri=$(awk '/^URIs:/ {print $2; exit}' "$base")
	keyring=$(awk '/^Signed-By:/ {print $2; exit}' "$base")
	[ -n "$uri" ] || vpm_die "cannot read a URIs: line from $base"
	vpm_log "adding apt suite $VPM_APT_SUITE (mirror taken from $base, pin priority 100)"
	{
		echo "Types: deb"
		echo "URIs: $uri"
		echo "Suites: $VPM_APT_SUITE"
		echo "Components: main"
		[ -n "$keyring" ] && echo "Signed-By: $keyring"
	} >"$SRC_LIST"
	printf 'Package: *\nPin: release n=%s\nPin-Priority: 100\n' "$VPM_APT_SUITE" >"$PIN_FILE"
	apt_updated=
}

install_apt() {
	local missing
	missing=$(apt_missing "${APT_PKGS[@]}")
	[ -z "$missing" ] && return
	need_root "installing $missing"
	apt_update
	vpm_log "apt-get install $missing"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
		vpm_die "could not install: $missing"
}

# linux-source-X.Y: the kernel tree the test kernel is built from.
install_kernel_source() {
	[ -n "$(apt_missing "linux-source-$VPM_KSERIES")" ] || return 0
	need_root "installing linux-source-$VPM_KSERIES"
	ensure_suite
	apt_update
	vpm_log "apt-get install -t $VPM_APT_SUITE linux-source-$VPM_KSERIES"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-t "$VPM_APT_SUITE" "linux-source-$VPM_KSERIES" >/dev/null ||
		vpm_die "could not install linux-source-$VPM_KSERIES from $VPM_APT_SUITE"
}

# The kernel builds `core` from source, so rust-src must match rustc exactly.
install_rust_src() {
	local rustv sysroot want have ver
	rustv=$(rustc --version | awk '{print $2}')
	sysroot=$(rustc --print sysroot)
	if [ -f "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ]; then
		return 0
	fi
	have=$(dpkg-query -W -f='${Version}' rust-src 2>/dev/null || true)
	if [ "${have%%+*}" != "$rustv" ]; then
		need_root "installing rust-src $rustv"
		ensure_suite
		apt_update
		ver=$(apt-cache madison rust-src | awk -v v="$rustv" '$3 ~ "^"v"[+~-]" {print $3; exit}')
		[ -n "$ver" ] || vpm_die "no Debian rust-src package matches rustc $rustv (apt-cache madison rust-src)"
		vpm_log "apt-get install rust-src=$ver"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"rust-src=$ver" >/dev/null || vpm_die "could not install rust-src=$ver"
	fi
	want=/usr/lib/rustlib/src
	[ -f "$want/rust/library/core/src/lib.rs" ] ||
		vpm_die "rust-src is installed but $want/rust/library/core/src/lib.rs is missing"
	mkdir -p "$sysroot/lib/rustlib"
	if [ -e "$sysroot/lib/rustlib/src" ] || [ -L "$sysroot/lib/rustlib/src" ]; then
		rm -rf "$sysroot/lib/rustlib/src"
	fi
	ln -s "$want" "$sysroot/lib/rustlib/src"
	installed=1
	vpm_log "linked $sysroot/lib/rustlib/src -> $want"
}

install_bindgen() {
	if command -v bindgen >/dev/null &&
		[ "$(bindgen --version | awk '{print $2}')" = "$VPM_BINDGEN_VERSION" ]; then
		return 0
	fi
	vpm_log "cargo install bindgen-cli $VPM_BINDGEN_VERSION (about 2 minutes)"
	installed=1
	cargo install --quiet --locked --force bindgen-cli --version "$VPM_BINDGEN_VERSION" ||
		vpm_die "cargo install bindgen-cli failed"
}

# Python side: libclang >= 17 for bindgen (Debian 12 has 14), virtme-ng, and
# the ynl generator's modules, in a private venv.
install_python() {
	local want=("libclang==$VPM_LIBCLANG_VERSION" "virtme-ng==$VPM_VIRTME_NG_VERSION" pyyaml jsonschema)
	if [ -x "$VPM_VENV/bin/vng" ] && [ -n "$(vpm_libclang_dir)" ] &&
		"$VPM_VENV/bin/python" -c 'import yaml, jsonschema' 2>/dev/null; then
		return 0
	fi
	vpm_log "creating python venv $VPM_VENV (${want[*]})"
	installed=1
	python3 -m venv "$VPM_VENV" || vpm_die "python3 -m venv failed"
	"$VPM_VENV/bin/pip" install -q --disable-pip-version-check "${want[@]}" ||
		vpm_die "pip install ${want[*]} failed"
}

# rustfmt and clippy come with rustup's default profile; `make check` runs
# both.  They cannot be downloaded here, so a toolchain without them is an
# error to fix by hand, said up front rather than midway through a check.
check_rust_tools() {
	local t
	for t in rustfmt cargo-clippy clippy-driver; do
		command -v "$t" >/dev/null ||
			vpm_die "$t is missing: install rustup's rustfmt and clippy components (rustup component add rustfmt clippy)"
	done
}

main() {
	check_rust_tools
	install_apt
	install_kernel_source
	install_rust_src
	install_bindgen
	install_python
	# Re-read env.sh so LIBCLANG_PATH is set for the check below.
	. "$(dirname "$0")/env.sh"
	[ -n "${LIBCLANG_PATH:-}" ] || vpm_die "libclang.so not found in $VPM_VENV"
	[ -z "$installed" ] || vpm_log "dependencies complete"
}
main "$@"
