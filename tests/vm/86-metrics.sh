#!/usr/bin/env bash
# vpm-timeout: 240
# vpmctl metrics: the Prometheus text of a namespace's counters and of its
# allocations, printed once and scraped over HTTP (a fresh read on every
# scrape), equal to `vpmctl status --json` and to exactly what was sent;
# a scrape while the module is unloaded answers 503 and the server goes on.
#
#   +-- vpmc --------+           +-- vpms -------------------------+
#   | veth-c          |-----------| veth-s                           |
#   | 10.202.0.1/24   |           | 10.202.0.2/24                    |
#   +-----------------+           | a: 9000 -> anon (udp), default   |
#                                 | vpmctl metrics --listen 127.0.0.1|
#                                 +----------------------------------+
. "$VPM_ROOT/tests/vm/lib/lib.sh"

c() { ip netns exec vpmc "$@"; }
s() { ip netns exec vpms "$@"; }

load
fresh_netns vpmc vpms
# IPv6 off before any link is up: no neighbour discovery or MLD moves the
# counters while they are compared.
for n in vpmc vpms; do
	ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add veth-c netns vpmc type veth peer name veth-s netns vpms
printf '%s\n' "addr add 10.202.0.1/24 dev veth-c" "link set lo up" "link set veth-c up" | ip -n vpmc -b -
printf '%s\n' "addr add 10.202.0.2/24 dev veth-s" "link set lo up" "link set veth-s up" | ip -n vpms -b -
# The netns label: the namespace's inode, here read from its bind mount.
netns=$(stat -L -c %i /run/netns/vpms)

anon=$(s vpmctl add --aid a --port 9000 --proto udp --json | json anon_port)
s vpmctl rule add --port 9000 --aid a
# The instance: receives on the anonymous port.
ip netns exec vpms socat -u "UDP4-RECV:$anon" "OPEN:$work/udp,creat,trunc" &
rcv=$!
for _ in $(seq 50); do s ss -Huln "sport = :$anon" | grep -q . && break; sleep 0.1; done

# The server, started directly so that $! is vpmctl itself; port 0: it
# logs the port it got.
ip netns exec vpms vpmctl metrics --listen 127.0.0.1:0 2>"$work/server.log" &
srv=$!
port=
for _ in $(seq 100); do
	if [[ $(cat "$work/server.log") =~ serving\ metrics\ on\ http://127\.0\.0\.1:([0-9]+)/metrics ]]; then
		port=${BASH_REMATCH[1]}
		break
	fi
	sleep 0.1
done
expect "the server logs where it listens (log: $(cat "$work/server.log"))" test -n "$port"

# scrape PATH FILE: the raw HTTP response to GET PATH, from inside vpms
# (bash's /dev/tcp: no HTTP client needed).
scrape() {
	s bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
		printf "GET %s HTTP/1.1\r\nHost: vpm\r\nConnection: close\r\n\r\n" "$2" >&3 &&
		cat <&3' _ "$port" "$1" >"$2"
}

scrape /metrics "$work/scrape0"
subtest PASS listen

# N datagrams of SIZE bytes to the fixed port, from one socket.
n=20 size=100
c ping -q -c 1 -W 2 10.202.0.2 >/dev/null # ARP resolved before
c python3 -c '
import socket, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(b"%0*d" % (size, i), ("10.202.0.2", 9000))
' $n $size
sleep 0.5
expect_eq "bytes the instance received" $((n * size)) "$(stat -c %s "$work/udp")"

# Once, between two reads of status; then a scrape, the same way.
s vpmctl status --json >"$work/st1a"
s vpmctl metrics >"$work/once"
s vpmctl status --json >"$work/st1b"
s vpmctl show --json >"$work/show"
s vpmctl status --json >"$work/st2a"
scrape /metrics "$work/scrape1"
s vpmctl status --json >"$work/st2b"
scrape /nothing "$work/scrape404"

# bytes_in counts from the IP header on (vpm_parse::Packet::len): an
# IPv4 header of 20 bytes, UDP's 8, the payload.
python3 - "$work" "$n" "$((n * (20 + 8 + size)))" "$anon" "$netns" <<'EOF'
import json, re, sys

work, n, nbytes, anon, netns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

# The namespace's metrics and the fields of `vpmctl status --json` they show.
NS = {
    "vpm_netfilter_hooks": "hooks",
    "vpm_packets_seen_total": "pkts_seen",
    "vpm_packets_translated_in_total": "pkts_xlat_in",
    "vpm_packets_translated_out_total": "pkts_xlat_out",
    "vpm_packets_no_aid_total": "pkts_no_aid",
    "vpm_packets_malformed_total": "pkts_malformed",
    "vpm_packets_fragments_total": "pkts_fragments",
    "vpm_packets_foreign_total": "pkts_foreign",
    "vpm_packets_peer_total": "pkts_peer",
    "vpm_icmp_errors_translated_total": "pkts_icmp_xlat",
    "vpm_packets_dropped_total": "pkts_dropped",
    "vpm_flows_active": "flows_active",
    "vpm_flows_pinned_total": "flows_new",
    "vpm_flows_expired_total": "flows_expired",
    "vpm_flows_evicted_total": "flows_evicted",
    "vpm_packets_unpinned_total": "flows_unpinned",
}
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)",?')


def fail(msg):
    sys.exit("expected: " + msg)


def parse(what, text):
    """The samples of exposition text (format 0.0.4), checked on the way."""
    if not text.endswith("\n"):
        fail(f"{what} ends with a newline")
    helps, types, samples = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, h = line[7:].partition(" ")
            if name in helps or not h:
                fail(f"{what}: one non-empty HELP per metric: {line}")
            helps[name] = h
        elif line.startswith("# TYPE "):
            name, _, t = line[7:].partition(" ")
            if name in types or t not in ("counter", "gauge"):
                fail(f"{what}: one TYPE counter|gauge per metric: {line}")
            if t == "counter" and not name.endswith("_total"):
                fail(f"{what}: a counter's name ends in _total: {line}")
            types[name] = t
        else:
            m = SAMPLE.fullmatch(line)
            if not m:
                fail(f"{what}: a sample line: {line!r}")
            name, rest, value = m.group(1), m.group(2) or "", m.group(3)
            if name not in helps or name not in types:
                fail(f"{what}: HELP and TYPE before {line}")
            labels = {}
            while rest:
                lm = LABEL.match(rest)
                if not lm:
                    fail(f"{what}: labels of {line}")
                labels[lm.group(1)] = re.sub(
                    r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), lm.group(2)
                )
                rest = rest[lm.end():]
            if labels.get("netns") != netns:
                fail(f"{what}: netns=\"{netns}\" on {line}")
            samples.append((name, labels, int(value)))
    return samples, types


def one(what, samples, name):
    got = [s for s in samples if s[0] == name]
    if len(got) != 1:
        fail(f"{what}: one {name}, got {got}")
    return got[0]


def http(what, path, code):
    # newline="": the \r\n of HTTP kept as they are.
    head, _, body = open(path, encoding="utf-8", newline="").read().partition("\r\n\r\n")
    lines = head.split("\r\n")
    got = int(lines[0].split()[1])
    headers = {k.lower(): v for k, _, v in (l.partition(": ") for l in lines[1:])}
    if got != code:
        fail(f"{what}: HTTP {code}, got {lines[0]}: {body}")
    return headers, body


def check(what, text, pkts, nb, before=None, after=None):
    samples, types = parse(what, text)
    alloc = {"netns": netns, "aid": "a", "port": "9000", "anon_port": anon, "proto": "udp"}
    for name, want in (
        ("vpm_allocation_in_packets_total", pkts),
        ("vpm_allocation_in_bytes_total", nb),
        ("vpm_allocation_out_packets_total", 0),
        ("vpm_allocation_out_bytes_total", 0),
    ):
        _, labels, v = one(what, samples, name)
        if (labels, v) != (alloc, want):
            fail(f"{what}: {name}{alloc} = {want}, got {labels} {v}")
        if types[name] != "counter":
            fail(f"{what}: {name} is a counter")
    if one(what, samples, "vpm_allocations")[2] != 1:
        fail(f"{what}: vpm_allocations = 1")
    if before is None:
        return
    _, labels, v = one(what, samples, "vpm_info")
    if (labels.get("version"), v) != (before["version"], 1):
        fail(f"{what}: vpm_info{{version=\"{before['version']}\"}} 1, got {labels} {v}")
    for name, field in NS.items():
        v = one(what, samples, name)[2]
        want = "gauge" if field in ("hooks", "flows_active") else "counter"
        if types[name] != want:
            fail(f"{what}: {name} is a {want}")
        lo, hi = sorted((before[field], after[field]))
        if not lo <= v <= hi:
            fail(f"{what}: {name} = status {field} ({before[field]} before, {after[field]} after), got {v}")
    print(f"{what}: {pkts} packets, {nb} bytes in; translated in {one(what, samples, 'vpm_packets_translated_in_total')[2]}")


st = {k: json.load(open(f"{work}/{k}")) for k in ("st1a", "st1b", "st2a", "st2b")}
show = json.load(open(f"{work}/show"))
m = next(m for m in show if m["aid"] == "a")
if (m["pkts_in"], m["bytes_in"]) != (n, nbytes):
    fail(f"show: {n} packets and {nbytes} bytes in, got {m['pkts_in']} and {m['bytes_in']}")
if st["st1a"]["pkts_xlat_in"] != n:
    fail(f"status: {n} packets translated in, got {st['st1a']['pkts_xlat_in']}")

check("vpmctl metrics", open(f"{work}/once", encoding="utf-8").read(), n, nbytes, st["st1a"], st["st1b"])
for scrape in ("scrape0", "scrape1"):
    headers, body = http(scrape, f"{work}/{scrape}", 200)
    if headers.get("content-type") != "text/plain; version=0.0.4; charset=utf-8":
        fail(f"{scrape}: the text format's content type, got {headers}")
    if scrape == "scrape0":
        check("scrape before the traffic", body, 0, 0)
    else:
        check("scrape", body, n, nbytes, st["st2a"], st["st2b"])
headers, body = http("GET /nothing", f"{work}/scrape404", 404)
EOF
subtest PASS once-and-scraped-equal-status-and-traffic

# The module unloaded: the scrape says so (503), the server goes on, and
# the next scrape after the load reads the new module (no allocation).
unload
scrape /metrics "$work/scrape503"
expect "503 while the module is unloaded ($(head -c 300 "$work/scrape503"))" \
	grep -q '^HTTP/1.1 503 ' "$work/scrape503"
expect "the 503 says why" grep -qF "vpmctl: vpm kernel module not loaded" "$work/scrape503"
load
scrape /metrics "$work/scrape2"
expect "200 after the load ($(head -c 300 "$work/scrape2"))" grep -q '^HTTP/1.1 200 ' "$work/scrape2"
expect "a fresh read: no allocation in the new module" \
	grep -qx "vpm_allocations{netns=\"$netns\"} 0" <(tr -d '\r' <"$work/scrape2")
expect "the server is still running" running $srv
expect "the server logged the failed scrape ($(cat "$work/server.log"))" \
	grep -qF "scrape failed: vpm kernel module not loaded" "$work/server.log"
expect "and that scrapes work again" grep -qF "scrapes work again" "$work/server.log"
subtest PASS not-loaded-then-fresh

kill $srv
kill $rcv 2>/dev/null || true
wait $srv $rcv 2>/dev/null || true
if running $srv; then
	echo "expected the server to end on SIGTERM" >&2
	exit 1
fi
subtest PASS stopped
