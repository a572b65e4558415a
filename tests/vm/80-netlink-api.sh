#!/usr/bin/env bash
# vpm-timeout: 400
# The netlink API under a client that is not vpmctl: strict validation,
# missing and malformed attributes with their extended-ack messages,
# unknown commands, and fuzzed messages (the kernel log is checked for
# splats by the harness afterwards).
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpma
load
ip netns exec vpma python3 "$VPM_ROOT/tests/vm/lib/nl_adversary.py"
