#!/usr/bin/env bash
# vpm-timeout: 420
# vpm-timeout-long: 2400
# Teardown races (issue 11).  The harness then checks the kernel log (no
# splat, no hung task) and kmemleak after the final unload.
#  - unload and load vpm twice (50 times in the long form) while datagrams
#    flow through a fixed port and netlink requests run, with two
#    `vpmctl monitor` listeners attached at each unload: each monitor must
#    notice the unload and exit with its error;
#  - 8 network namespaces (200 in the long form), each with a populated
#    table and a translated flow, destroyed populated, while traffic
#    flows in another namespace.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

st() { python3 "$VPM_ROOT/tests/vm/lib/stress.py" "$@"; }

fresh_netns vpmtd
ip -n vpmtd link set lo up
load
st noise vpmtd "$work/stop" >"$work/noise" 2>&1 &
noise=$!
cycles=$(pick 2 50)
unload
st unload-cycles "$cycles" "$VPM_KO" vpmtd
touch "$work/stop"
expect "the noise maker survived every unload" wait $noise
cat "$work/noise"
printf 'VPM-REL {"suite":"teardown","case":"unload-under-load","inputs":%d,"expect":"every unload succeeds; monitors exit with a clear error","what":"%s","result":"pass"}\n' \
	"$cycles" "$(tr -d '"' <"$work/noise")"
load
subtest PASS unload-under-load

# Namespaces destroyed populated, with traffic in another one.
ip netns exec vpmtd vpmctl add --aid t --port 9000 >/dev/null
ip netns exec vpmtd vpmctl rule add --port 9000 --aid t
rm -f "$work/stop"
st noise vpmtd "$work/stop" >"$work/noise" 2>&1 &
noise=$!
st netns-storm "$(pick 8 200)"
touch "$work/stop"
expect "traffic went on meanwhile" wait $noise
subtest PASS netns-storm
