#!/usr/bin/env bash
# vpm-timeout: 90
# vpmctl status in the initial and in a child namespace: version, hooks
# (registered with the first allocation, gone with the last, again with
# the next; never after a failed add), per-namespace counters, human and
# JSON output, no privilege needed.
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
ip netns exec vpms ping -q -c 3 -W 2 127.0.0.1 >/dev/null
expect_eq "packets seen without an allocation (no hooks)" 0 "$(status_field vpms pkts_seen)"
# An add that fails leaves the namespace as it was: no hooks either.
expect_fail 1 "anon-port is outside the range" ip netns exec vpms vpmctl add --aid s --port 9000 --anon-port 1
expect_eq "hooks after a failed add" 0 "$(status_field vpms hooks)"
ip netns exec vpms vpmctl add --aid s --port 9000 >/dev/null
expect_eq "hooks in child netns with an allocation" 6 "$(status_field vpms hooks)"
expect "human output lists the hooks" grep -qE '^  netfilter hooks +6$' <<<"$(ip netns exec vpms vpmctl status)"
ip netns exec vpms ping -q -c 3 -W 2 127.0.0.1 >/dev/null
# 3 requests and 3 replies, each through LOCAL_OUT, POST_ROUTING and
# PRE_ROUTING (lo loops them back in).
expect_eq "packets seen after 3 loopback pings" 18 "$(status_field vpms pkts_seen)"
ip netns exec vpms vpmctl flush >/dev/null
expect_eq "hooks in child netns after a flush" 0 "$(status_field vpms hooks)"
ip netns exec vpms ping -q -c 3 -W 2 127.0.0.1 >/dev/null
expect_eq "packets seen after the flush (hooks gone)" 18 "$(status_field vpms pkts_seen)"
# The same hooks registered again see packets again, and stay while any
# allocation is left.
ip netns exec vpms vpmctl add --aid s --port 9000 >/dev/null
ip netns exec vpms vpmctl add --aid t --port 9001 >/dev/null
ip netns exec vpms vpmctl del --aid t --port 9001
expect_eq "hooks with one of two allocations left" 6 "$(status_field vpms hooks)"
ip netns exec vpms ping -q -c 3 -W 2 127.0.0.1 >/dev/null
expect_eq "packets seen by the hooks registered again" 36 "$(status_field vpms pkts_seen)"
ip netns exec vpms vpmctl del --aid s --port 9000
expect_eq "hooks after the last delete" 0 "$(status_field vpms hooks)"

# get-status needs no privilege (it only reveals the caller's namespace).
expect "status works as nobody" setpriv --reuid 65534 --regid 65534 --clear-groups \
	vpmctl status --json >/dev/null
