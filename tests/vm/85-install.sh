#!/usr/bin/env bash
# vpm-timeout: 420
# vpm-timeout-long: 1800
# vpm installed the way an operator installs an out-of-tree module, into
# the guest's root (its /lib, /usr, /etc and /var are overlays: nothing
# reaches the host): modinfo, the load-time parameters, make install and
# depmod, modprobe by name, the module loaded on the first lookup of the
# "vpm" netlink family, the boot-restore unit's commands run by hand,
# make uninstall, and DKMS (add, build, install) from make dkms-src.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

unload
rel=$(uname -r)
mods=/lib/modules/$rel
version=$(sed -n 's/^pub(crate) const VERSION: &CStr = c"\([^"]*\)";$/\1/p' "$VPM_ROOT/vpm_mod.rs")
# make install's own tree: the kernel vpm.ko was built against, which
# virtme-ng links as the guest's /lib/modules/$rel/build.
kdir=$(readlink -f "$mods/build")
inst() { make --no-print-directory -s -C "$VPM_ROOT" KDIR="$kdir" VPMCTL="$VPMCTL" "$@"; }

# ---- modinfo ----------------------------------------------------------------
info() { modinfo -F "$1" "$VPM_KO"; }
expect_eq "modinfo version (get-status's)" "$version" "$(info version)"
expect_eq "modinfo alias (the genl family)" "net-pf-16-proto-16-family-vpm" "$(info alias)"
expect "modinfo has a description" test -n "$(info description)"
parms=$(info parm)
for p in anon_port_min anon_port_max max_entries; do
	expect "modinfo documents $p with its range and default" \
		grep -qE "^$p:.*\(.*[0-9]+-.*default [0-9]+\)" <<<"$parms"
done
expect_eq "dkms.conf's version" "PACKAGE_VERSION=\"$version\"" "$(grep '^PACKAGE_VERSION=' "$VPM_ROOT/dkms.conf")"
subtest PASS modinfo

# ---- load-time parameters ---------------------------------------------------
# What every namespace starts with, the initial one and those created later.
insmod "$VPM_KO" anon_port_min=40000 anon_port_max=40009 max_entries=2
cfg=$(vpmctl config --json)
expect_eq "range from the parameters" "40000-40009" "$(json range_lo <<<"$cfg")-$(json range_hi <<<"$cfg")"
expect_eq "limit from the parameters" 2 "$(json max_entries <<<"$cfg")"
fresh_netns vpmi
cfg=$(ip netns exec vpmi vpmctl config --json)
expect_eq "a new namespace's range" "40000-40009" "$(json range_lo <<<"$cfg")-$(json range_hi <<<"$cfg")"
anon=$(vpmctl add --aid p1 --port 9000 --json | json anon_port)
expect "anonymous port in the parameters' range" test "$anon" -ge 40000 -a "$anon" -le 40009
vpmctl add --aid p2 --port 9000 >/dev/null
expect_fail 1 "entry limit 2 reached" vpmctl add --aid p3 --port 9000
rmmod vpm
# A range the table would refuse: the load fails, and says why.
dmesg -C
expect_not "a reversed range refuses to load" insmod "$VPM_KO" anon_port_min=5000 anon_port_max=4000
expect "the kernel log says why" grep -q 'anon_port_min=5000 anon_port_max=4000 max_entries=65535: the range must be' <<<"$(dmesg)"
expect_not "port 0 refuses to load" insmod "$VPM_KO" anon_port_min=0
expect_not "a limit of 0 refuses to load" insmod "$VPM_KO" max_entries=0
expect_not "not loaded after the refusals" loaded
subtest PASS parameters

# ---- make install -----------------------------------------------------------
# virtme-ng's /lib/modules/$rel is a link into the host's kernel tree
# (read-only): make a real one on the overlay, with the same contents.
links_to=$(readlink -f "$mods")
rm "$mods"
mkdir "$mods"
at_exit "rm -rf '$mods'; ln -sfn '$links_to' '$mods'"
for f in "$links_to"/*; do
	if [ "${f##*/}" = build ]; then ln -s "$kdir" "$mods/build"; else cp -rL "$f" "$mods/"; fi
done
depmod "$rel"
at_exit "make -s -C '$VPM_ROOT' KDIR='$kdir' uninstall"
inst install >/dev/null
expect "vpm.ko under updates/" test -f "$mods/updates/vpm.ko"
expect "depmod lists it" grep -q '^updates/vpm.ko:' "$mods/modules.dep"
expect "depmod knows the family alias" grep -q '^alias net-pf-16-proto-16-family-vpm vpm$' "$mods/modules.alias"
expect_eq "installed vpmctl" "vpmctl $version" "$(/usr/local/sbin/vpmctl --version)"
expect "man page vpmctl.8" grep -q '^\.TH vpmctl 8' /usr/local/share/man/man8/vpmctl.8
expect "man page vpmctl-add.8" test -s /usr/local/share/man/man8/vpmctl-add.8
expect "bash completion" grep -q 'vpmctl' /usr/local/share/bash-completion/completions/vpmctl
expect "zsh completion" grep -q '#compdef vpmctl' /usr/local/share/zsh/site-functions/_vpmctl
expect "fish completion" grep -q 'complete -c vpmctl' /usr/local/share/fish/vendor_completions.d/vpmctl.fish
units=/usr/local/lib/systemd/system
for u in vpm-restore.service vpm-metrics.service; do
	expect "$u installed with the prefix's vpmctl" grep -q '^ExecStart=/usr/local/sbin/vpmctl ' "$units/$u"
done
subtest PASS install

# ---- modprobe, and the module loaded by its netlink family ------------------
modprobe vpm
expect "modprobe vpm loads it" loaded
expect_eq "the installed module runs" "$version" "$(status_field version)"
modprobe -r vpm
expect_not "modprobe -r unloads it" loaded
# Just using vpmctl: the family lookup makes the kernel load the module.
anon=$(vpmctl add --aid auto --port 9000 --json | json anon_port)
expect "vpmctl add loaded the module" loaded
expect_eq "and the allocation is there" "$anon" "$(vpmctl show --json | json_at aid=auto anon_port)"
rmmod vpm
# Anyone may look a family up; the kernel loads the module all the same
# (what the alias allows is only loading vpm.ko, as modprobe would).
expect_eq "status as nobody loads it" "$version" \
	"$(setpriv --reuid 65534 --regid 65534 --clear-groups vpmctl status --json | json version)"
subtest PASS modprobe+autoload

# ---- the boot-restore unit's commands ---------------------------------------
vpmctl config --range 30000-30999 >/dev/null
vpmctl add --aid web --port 8080 --proto tcp >/dev/null
vpmctl add --aid dns --port 5353 --proto udp >/dev/null
vpmctl rule add --port 8080 --aid web --from 192.0.2.0/24 >/dev/null
mkdir -p /etc/vpm
vpmctl save >/etc/vpm/state.json
want_show=$(vpmctl show --json)
want_rules=$(vpmctl rule show --json)
rmmod vpm
unit=$units/vpm-restore.service
expect "the unit waits for a saved state" grep -qx 'ConditionPathExists=/etc/vpm/state.json' "$unit"
# As systemd would: the ExecStartPre and ExecStart lines, in order.
while IFS= read -r cmd; do
	eval "$cmd"
done < <(sed -n 's/^ExecStartPre=//p; s/^ExecStart=//p' "$unit")
expect_eq "allocations after the unit's commands" "$want_show" "$(vpmctl show --json)"
expect_eq "rules after the unit's commands" "$want_rules" "$(vpmctl rule show --json)"
expect_eq "range after the unit's commands" 30000 "$(vpmctl config --json | json range_lo)"
rmmod vpm
# systemd's own check of the units (a few seconds each under emulation).
if long && command -v systemd-analyze >/dev/null; then
	for u in vpm-restore.service vpm-metrics.service; do
		out=$(systemd-analyze verify "$units/$u" 2>&1) ||
			expect "systemd-analyze verify $u (said: $out)" false
	done
fi
subtest PASS restore-unit

# ---- make uninstall ---------------------------------------------------------
inst uninstall >/dev/null
expect_not "vpm.ko removed" test -e "$mods/updates/vpm.ko"
expect_not "modprobe no longer finds it" modprobe -n -q vpm
for f in /usr/local/sbin/vpmctl /usr/local/share/man/man8/vpmctl.8 \
	/usr/local/share/bash-completion/completions/vpmctl "$units/vpm-restore.service"; do
	expect_not "$f removed" test -e "$f"
done
subtest PASS uninstall

# ---- DKMS -------------------------------------------------------------------
# Every make vm-test has DKMS build vpm.ko on the host for this kernel,
# from make dkms-src's tree, and pack it (dkms mktarball --binaries-only).
# The long form has the guest's DKMS load that package, install it and
# modprobe it, then build from source in here and do the same (DKMS's
# steps take minutes under emulation: it is a large shell script, and the
# Rust compiler runs emulated).
dkms_pkg=$(dirname "$(dirname "$VPMCTL")")/dkms/vpm.dkms.tar.gz
expect "make vm-test left DKMS's package ($dkms_pkg)" test -f "$dkms_pkg"
if ! long; then
	subtest PASS dkms-package
	exit 0
fi
at_exit "dkms remove vpm/$version --all; rm -rf /usr/src/vpm-$version"
# run CMD...: CMD's output only if it fails, and then the test fails.
run() {
	local out
	out=$("$@" 2>&1) || { echo "failed: $*" >&2; tail -n 20 <<<"$out" >&2; exit 1; }
}
dkms_installs() {
	run dkms install "vpm/$version" -k "$rel"
	expect "dkms put vpm.ko under updates/dkms ($1)" test -f "$mods/updates/dkms/vpm.ko"
	expect "dkms status says installed ($1)" grep -q "^vpm/$version, $rel, .*: installed" <<<"$(dkms status vpm)"
	modprobe vpm
	expect_eq "the module DKMS installed runs ($1)" "$version" "$(status_field version)"
	rmmod vpm
	run dkms remove "vpm/$version" --all
	expect_not "dkms remove takes it away ($1)" modprobe -n -q vpm
}
# DKMS 3.0.10's ldtarball of a binaries-only package exits 1 when no
# source tree /usr/src/vpm-<version> exists, the normal case for such a
# package (its load_tarball ends on that test): the module it loaded is
# checked instead.
dkms ldtarball "$dkms_pkg" >/dev/null 2>&1 || true
expect "ldtarball loaded the package" test -f "/var/lib/dkms/vpm/$version/$rel/$(uname -m)/module/vpm.ko"
dkms_installs "built on the host"
inst dkms-src >/dev/null
run dkms add "vpm/$version"
out=$(dkms build "vpm/$version" -k "$rel" 2>&1) || {
	tail -n 30 "/var/lib/dkms/vpm/$version/build/make.log" >&2
	expect "dkms build (said: $out)" false
}
dkms_installs "built in the guest"
subtest PASS dkms
