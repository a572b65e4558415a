#!/usr/bin/env bash
# vpm-timeout: 240
# The kernel's own YNL tooling (tools/net/ynl/pyynl, from the same kernel
# source package as the test kernel) drives vpm from uapi/vpm.yaml alone:
# every command and both dumps, a refused request with its extended ack,
# and the events group, each checked against what vpmctl reports.
#
# cli.py is a thin argument parser over the YnlFamily class of its lib/;
# a cli.py start costs 15-20 s under emulation (Python parsing the YAML
# spec), so one cli.py dump checks the command line itself and one Python
# process makes the other requests through the same class.
. "$VPM_ROOT/tests/vm/lib/lib.sh"

cli=${VPM_YNL_CLI:-}
expect "the ynl CLI is there ($cli; tests/vm.sh passes tools/ynl-gen.sh --cli)" test -f "$cli"
fresh_netns vpmy
load

ip netns exec vpmy python3 - "$cli" "$VPM_ROOT/uapi/vpm.yaml" "$work" <<'PYEOF'
import ipaddress, json, os, subprocess, sys

cli, spec, work = sys.argv[1:4]
sys.path.insert(0, os.path.dirname(cli))
from lib import NlError, YnlFamily  # noqa: E402

def check(ok, what):
    if not ok:
        sys.exit(f"expected: {what}")

def vpmctl(*args, ok=True):
    r = subprocess.run(["vpmctl", *args], capture_output=True, text=True)
    check(r.returncode == 0 or not ok, f"vpmctl {' '.join(args)} succeeds: {r.stderr}")
    return r

def vjson(*args):
    return json.loads(vpmctl(*args, "--json").stdout)

ynl = YnlFamily(spec, schema="")
ynl.ntf_subscribe("events")

# get-status
st, vst = ynl.do("get-status", {}), vjson("status")
check(st["version"] == vst["version"], f"get-status version {st} = vpmctl's {vst['version']}")
check(st["hooks"] == vst["hooks"] == 0, "get-status hooks = 0 (no allocation yet) = vpmctl's")

# set-config, get-config
ynl.do("set-config", {"range-lo": 31000, "range-hi": 31099, "max-entries": 100})
cfg, vcfg = ynl.do("get-config", {}), vjson("config")
check((cfg["range-lo"], cfg["range-hi"], cfg["max-entries"]) == (31000, 31099, 100),
      f"get-config after set-config: {cfg}")
check((vcfg["range_lo"], vcfg["range_hi"], vcfg["max_entries"]) == (31000, 31099, 100),
      f"vpmctl config after set-config: {vcfg}")

# add-mapping, get-mapping, the mapping dump
ya = ynl.do("add-mapping", {"aid": "ya", "port": 9000})
yb = ynl.do("add-mapping", {"aid": "yb", "port": 9000, "proto": ["udp"], "anon-port": 31050})
vpmctl("add", "--aid", "yc", "--port", "7000", "--proto", "tcp")
st = ynl.do("get-status", {})
check(st["hooks"] == vjson("status")["hooks"] == 6, f"get-status hooks = 6 with allocations = vpmctl's: {st}")
vshow = vjson("show")
def vmap(aid, port):
    return next(m for m in vshow if m["aid"] == aid and m["port"] == port)
check(ya["anon-port"] == vmap("ya", 9000)["anon_port"], f"add-mapping's reply {ya} = vpmctl show")
check(sorted(ya["proto"]) == ["tcp", "udp"], f"add-mapping covers both protocols by default: {ya}")
check(yb["anon-port"] == 31050 and sorted(yb["proto"]) == ["udp"], f"add-mapping with proto and anon-port: {yb}")
check(vmap("yb", 9000)["proto"] == ["udp"], "vpmctl sees yb as udp only")
check(ynl.do("get-mapping", {"aid": "yb", "port": 9000})["anon-port"] == 31050, "get-mapping finds yb")
def ynl_maps(dump):
    return sorted((m["aid"], m["port"], m["anon-port"], tuple(sorted(m["proto"]))) for m in dump)
want = sorted((m["aid"], m["port"], m["anon_port"], tuple(sorted(m["proto"]))) for m in vshow)
got = ynl_maps(ynl.dump("get-mapping", {}))
check(got == want and len(got) == 3, f"dump get-mapping {got} = vpmctl show {want}")
# The same dump through the command line.
out = subprocess.run([sys.executable, cli, "--spec", spec, "--no-schema", "--output-json",
                      "--dump", "get-mapping"], capture_output=True, text=True, check=True).stdout
got = ynl_maps(json.loads(out))
check(got == want, f"cli.py --dump get-mapping {got} = vpmctl show {want}")

# add-rule, the rule dump
ynl.do("add-rule", {"port": 9000, "aid": "ya", "addr": "c0000200", "prefix-len": 24})
ynl.do("add-rule", {"port": 9000, "aid": "yb"})
def ynl_rule(r):
    addr = r.get("addr")
    if addr is not None:
        addr = str(ipaddress.ip_address(bytes.fromhex(addr) if isinstance(addr, str) else bytes(addr)))
    return (r["port"], r["aid"], addr, r.get("prefix-len"))
def vpm_rule(r):
    return (r["port"], r["aid"], r.get("addr"), r.get("prefix_len"))
got = sorted(map(ynl_rule, ynl.dump("get-rule", {})), key=str)
want = sorted(map(vpm_rule, vjson("rule", "show")), key=str)
check(got == want and len(got) == 2, f"dump get-rule {got} = vpmctl rule show {want}")
check((9000, "ya", "192.0.2.0", 24) in got, f"the /24 rule as sent: {got}")

# A refused request: ynl gets the extended ack vpmctl shows.
try:
    ynl.do("add-mapping", {"aid": "yd", "port": 9000, "anon-port": 80})
    check(False, "add-mapping with anon-port 80 outside the range is refused")
except NlError as e:
    ack = e.nl_msg.extack or {}
    check(e.error == 34, f"ERANGE for anon-port outside the range: {e}")
    msg = ack.get("msg", "")
    check("anon-port is outside the range 31000-31099" in msg, f"the extended ack says why: {e}")
    vmsg = vpmctl("add", "--aid", "yd", "--port", "9000", "--anon-port", "80", ok=False).stderr
    check(msg in vmsg, f"vpmctl shows the same message ({vmsg.strip()}; ynl: {msg})")

# del-rule, del-mapping, flush, and the events ynl received meanwhile
vpmctl("add", "--aid", "ye", "--port", "9000")
vpmctl("del", "--aid", "ye", "--port", "9000")
ynl.do("del-rule", {"port": 9000, "addr": "c0000200", "prefix-len": 24})
ynl.do("del-mapping", {"aid": "ya", "port": 9000})
vdel = vjson("show")
check(not any(m["aid"] == "ya" for m in vdel) and len(vdel) == 2, f"del-mapping removed ya: {vdel}")
check([vpm_rule(r) for r in vjson("rule", "show")] == [(9000, "yb", None, None)],
      "del-rule removed the /24 rule only")
ynl.do("flush", {})
check(vjson("show") == [], "flush removed everything")

events = [(n["name"], n["msg"].get("aid")) for n in ynl.poll_ntf(duration=1)]
for ev in [("mapping-new-ntf", "ya"), ("mapping-new-ntf", "ye"), ("mapping-del-ntf", "ye"),
           ("rule-new-ntf", "ya"), ("rule-del-ntf", "ya"), ("mapping-del-ntf", "ya"),
           ("flush-ntf", None)]:
    check(ev in events, f"the events group carried {ev}: {events}")
PYEOF
