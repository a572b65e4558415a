#!/usr/bin/env bash
# vpm-timeout: 150
# vpm-timeout-long: 360
# Every network namespace gets its own vpm state and hooks: namespaces
# created after the load (3; 10 in the long form), namespaces that existed
# before it (2; 3 in the long form), and the module unloads with
# namespaces alive.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

new=$(pick 3 10)
old=$(pick 2 3)

load
for i in $(seq "$new"); do fresh_netns "vpmt$i"; done
for i in $(seq "$new"); do
	expect_eq "hooks in netns vpmt$i" 6 "$(status_field "vpmt$i" hooks)"
done
for i in $(seq "$new"); do ip netns del "vpmt$i"; done

# Namespaces alive across unload and load.
for i in $(seq "$old"); do fresh_netns "vpmt$i"; done
rmmod vpm
insmod "$VPM_KO"
for i in $(seq "$old"); do
	expect_eq "hooks in pre-existing netns vpmt$i" 6 "$(status_field "vpmt$i" hooks)"
done
rmmod vpm
for i in $(seq "$old"); do ip netns del "vpmt$i"; done
insmod "$VPM_KO"
