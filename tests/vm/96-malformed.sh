#!/usr/bin/env bash
# vpm-timeout: 600
# Malformed packets (issue 11, tests/vm/lib/corpus.py): a corpus of crafted
# packets, each with its expected outcome, injected at PRE_ROUTING from a
# veth peer, from an unprivileged user in a user namespace behind a
# second veth, and at LOCAL_OUT through raw sockets.  Counters, deliveries
# and bytes are checked per packet; the harness checks the kernel log
# (splats, KASAN/KFENCE reports) and kmemleak afterwards.  The corpus is
# the same in both forms: the long one injects each case on every path
# (about 180 injections), the short one each case once, the paths taking
# turns.
#
#   vpmmc (peer) veth-mc 02:..:06:01 ---- veth-mr 02:..:06:02 vpmmr (vpm)
#   user ns      veth-mup 02:..:06:03 --- veth-mu 02:..:06:04 10.206.1.2 fd00:206::2
. "$VPM_ROOT/tests/vm/lib/lib.sh"

load
fresh_netns vpmmr vpmmc
for n in vpmmr vpmmc; do
	# No router solicitations, no reverse-path filter (the corpus's
	# sources are spoofed; the vpm side has no route back on purpose).
	ip netns exec $n sysctl -qw net.ipv6.conf.default.router_solicitations=0 \
		net.ipv6.conf.all.router_solicitations=0 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.default.rp_filter=0
done
# One ip process per namespace (ip -batch): every process start costs
# about a second in the debug guest.
ip -b - <<'EOF'
link add veth-mc address 02:00:00:00:06:01 netns vpmmc type veth peer name veth-mr address 02:00:00:00:06:02 netns vpmmr
link add veth-mup address 02:00:00:00:06:03 netns vpmmc type veth peer name veth-mu address 02:00:00:00:06:04 netns vpmmr
EOF
ip -n vpmmr -b - <<'EOF'
link set veth-mr addrgenmode none
link set veth-mu addrgenmode none
addr add 10.206.1.2/24 dev veth-mr
addr add fd00:206::2/64 dev veth-mr nodad
link set lo up
link set veth-mr up
link set veth-mu up
EOF
ip -n vpmmc -b - <<'EOF'
link set veth-mc addrgenmode none
link set veth-mup addrgenmode none
link set veth-mc up
EOF
# Software checksums and segmentation on the way out: what the peer
# captures is what a wire would carry.
ip netns exec vpmmr ethtool -K veth-mr tx off >/dev/null
# The peer has no address (its stack answers nothing); vpm's side knows
# its link-layer address, so no neighbour discovery runs during the corpus.
ip -n vpmmr -b - <<'EOF'
neigh add 10.206.1.1 lladdr 02:00:00:00:06:01 dev veth-mr nud permanent
neigh add fd00:206::1 lladdr 02:00:00:00:06:01 dev veth-mr nud permanent
EOF

A=$(ip netns exec vpmmr vpmctl add --aid a --port 9000 --json | json anon_port)
ip netns exec vpmmr vpmctl rule add --port 9000 --aid a

python3 "$VPM_ROOT/tests/vm/lib/corpus.py" vpmmr vpmmc "$A"
