#!/usr/bin/env bash
# vpm-timeout: 180
# vpmctl status in the initial and in a child namespace: version, hooks
# (registered with the first allocation, gone with the last, again with
# the next, seen at work over IPv4 and IPv6; never after a failed add, and
# an add whose hooks netfilter refuses is taken back whole), per-namespace
# counters, human and JSON output, no privilege needed.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

load

want_version=$(sed -n 's/.*const VERSION: &CStr = c"\([^"]*\)".*/\1/p' "$VPM_ROOT/vpm_mod.rs")
expect_eq "module version" "$want_version" "$(status_field version)"
# No allocation, no hooks: a namespace vpm has nothing for pays nothing.
expect_eq "hooks in init_net" 0 "$(status_field hooks)"

human=$(vpmctl status)
expect "human output names the version" grep -q "^vpm $want_version\$" <<<"$human"
expect "human output lists hooks" grep -qE '^  netfilter hooks +0$' <<<"$human"

# A fresh namespace has its own state: no packet seen yet, and none while
# it has no allocation.
fresh_netns vpms
expect_eq "hooks in child netns" 0 "$(status_field vpms hooks)"
expect_eq "packets seen in a fresh netns" 0 "$(status_field vpms pkts_seen)"
ip -n vpms link set lo up
# 3 pings over IPv4 and 3 over IPv6: 6 requests and 6 replies, each
# through LOCAL_OUT, POST_ROUTING and PRE_ROUTING (lo loops them back in),
# 36 hook passes, which only the hooks of both families see in full.
pings() {
	ip netns exec vpms ping -q -c 3 -W 2 127.0.0.1 >/dev/null
	ip netns exec vpms ping -6 -q -c 3 -W 2 ::1 >/dev/null
}
pings
expect_eq "packets seen without an allocation (no hooks)" 0 "$(status_field vpms pkts_seen)"
# An add that fails leaves the namespace as it was: no hooks either.
expect_fail 1 "anon-port is outside the range" ip netns exec vpms vpmctl add --aid s --port 9000 --anon-port 1
expect_eq "hooks after a failed add" 0 "$(status_field vpms hooks)"
ip netns exec vpms vpmctl add --aid s --port 9000 >/dev/null
expect_eq "hooks in child netns with an allocation" 6 "$(status_field vpms hooks)"
expect "human output lists the hooks" grep -qE '^  netfilter hooks +6$' <<<"$(ip netns exec vpms vpmctl status)"
pings
expect_eq "packets seen after 3 loopback pings of each family" 36 "$(status_field vpms pkts_seen)"
ip netns exec vpms vpmctl flush >/dev/null
expect_eq "hooks in child netns after a flush" 0 "$(status_field vpms hooks)"
pings
expect_eq "packets seen after the flush (hooks gone)" 36 "$(status_field vpms pkts_seen)"
# The same hooks registered again see packets again, and stay while any
# allocation is left.
ip netns exec vpms vpmctl add --aid s --port 9000 >/dev/null
ip netns exec vpms vpmctl add --aid t --port 9001 >/dev/null
ip netns exec vpms vpmctl del --aid t --port 9001
expect_eq "hooks with one of two allocations left" 6 "$(status_field vpms hooks)"
pings
expect_eq "packets seen by the hooks registered again" 72 "$(status_field vpms pkts_seen)"
ip netns exec vpms vpmctl del --aid s --port 9000
expect_eq "hooks after the last delete" 0 "$(status_field vpms hooks)"

# Netfilter allows 1024 hooks at one hook point.  With IPv6 PRE_ROUTING
# full (nftables base chains), the fourth of vpm's six hooks is refused
# after the three IPv4 ones went in: netfilter unwinds those, and vpm
# takes the allocation back whole (no hooks, no allocation, no reserved
# port).  One chain less, and the same add works.
fresh_netns vpmf
{
	echo 'table ip6 fill {'
	for i in $(seq 1024); do echo "chain c$i { type filter hook prerouting priority $i; }"; done
	echo '}'
} >"$work/fill.nft"
ip netns exec vpmf nft -f "$work/fill.nft"
expect_fail 1 "already has netfilter's limit of 1024 hooks" ip netns exec vpmf vpmctl add --aid f --port 9000
expect_eq "hooks after a refused registration" 0 "$(status_field vpmf hooks)"
expect_eq "allocations after a refused registration" 0 "$(ip netns exec vpmf vpmctl show --json | json_at '#')"
expect_eq "ports reserved after a refused registration" "" "$(ip netns exec vpmf cat /proc/sys/net/ipv4/ip_local_reserved_ports)"
ip netns exec vpmf nft delete chain ip6 fill c1024
anon=$(ip netns exec vpmf vpmctl add --aid f --port 9000 --json | json anon_port)
expect_eq "hooks once there is room" 6 "$(status_field vpmf hooks)"
expect_eq "the allocation's port reserved" "$anon" "$(ip netns exec vpmf cat /proc/sys/net/ipv4/ip_local_reserved_ports)"

# get-status needs no privilege (it only reveals the caller's namespace).
expect "status works as nobody" setpriv --reuid 65534 --regid 65534 --clear-groups \
	vpmctl status --json >/dev/null
