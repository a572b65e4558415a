#!/usr/bin/env bash
# vpm-timeout: 240
# Every network namespace gets its own vpm state and hooks: namespaces
# created after the load, namespaces that existed before it, and the module
# unloads with namespaces alive.
. "$VPM_ROOT/tests/vm/lib/lib.sh"


load
for i in $(seq 10); do fresh_netns "vpmt$i"; done
for i in $(seq 10); do
	expect_eq "hooks in netns vpmt$i" 6 "$(status_field "vpmt$i" hooks)"
done
for i in $(seq 10); do ip netns del "vpmt$i"; done

# Namespaces alive across unload and load.
for i in 1 2 3; do fresh_netns "vpmt$i"; done
rmmod vpm
insmod "$VPM_KO"
for i in 1 2 3; do
	expect_eq "hooks in pre-existing netns vpmt$i" 6 "$(status_field "vpmt$i" hooks)"
done
rmmod vpm
for i in 1 2 3; do ip netns del "vpmt$i"; done
insmod "$VPM_KO"
