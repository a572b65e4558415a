#!/usr/bin/env bash
# vpm-timeout: 150
# vpm-timeout-long: 360
# Every network namespace gets its own vpm state, and its own hooks from
# its first allocation: namespaces created after the load (3; 10 in the
# long form), destroyed with their hooks registered; namespaces that
# existed before it (2; 3 in the long form); and the module unloads with
# namespaces alive, with and without hooks.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

new=$(pick 3 10)
old=$(pick 2 3)

load
for i in $(seq "$new"); do fresh_netns "vpmt$i"; done
for i in $(seq "$new"); do
	expect_eq "hooks in netns vpmt$i before its first allocation" 0 "$(status_field "vpmt$i" hooks)"
	ip netns exec "vpmt$i" vpmctl add --aid t --port 9000 >/dev/null
	expect_eq "hooks in netns vpmt$i with an allocation" 6 "$(status_field "vpmt$i" hooks)"
done
expect_eq "hooks in init_net (the others' allocations are theirs)" 0 "$(status_field hooks)"
for i in $(seq "$new"); do ip netns del "vpmt$i"; done

# Namespaces alive across unload and load.
for i in $(seq "$old"); do fresh_netns "vpmt$i"; done
rmmod vpm
insmod "$VPM_KO"
for i in $(seq "$old"); do
	expect_eq "hooks in pre-existing netns vpmt$i" 0 "$(status_field "vpmt$i" hooks)"
done
# Unload with hooks in the first of them only.
ip netns exec vpmt1 vpmctl add --aid t --port 9000 >/dev/null
expect_eq "hooks in pre-existing netns vpmt1 with an allocation" 6 "$(status_field vpmt1 hooks)"
rmmod vpm
for i in $(seq "$old"); do ip netns del "vpmt$i"; done
insmod "$VPM_KO"
