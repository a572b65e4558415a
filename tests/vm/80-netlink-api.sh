#!/usr/bin/env bash
# vpm-timeout: 400
# The netlink API under a client that is not vpmctl: strict validation,
# missing and malformed attributes with their extended-ack messages,
# unknown commands, and fuzzed messages (the kernel log is checked for
# splats by the harness afterwards).
. "$VPM_ROOT/tests/vm/lib.sh"

fresh_netns vpma
trap 'ip netns del vpma 2>/dev/null || true' EXIT
load
ip netns exec vpma python3 "$VPM_ROOT/tests/vm/nl_adversary.py"
