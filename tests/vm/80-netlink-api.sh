#!/usr/bin/env bash
# vpm-timeout: 150
# vpm-timeout-long: 400
# The netlink API under a client that is not vpmctl: strict validation,
# missing and malformed attributes with their extended-ack messages,
# unknown commands, and fuzzed messages, 1,000 (3,000 in the long form;
# the kernel log is checked for splats by the harness afterwards).
. "$VPM_ROOT/tests/vm/lib/lib.sh"

fresh_netns vpma
load
VPM_FUZZ_COUNT=$(pick 1000 3000) ip netns exec vpma python3 "$VPM_ROOT/tests/vm/lib/nl_adversary.py"
