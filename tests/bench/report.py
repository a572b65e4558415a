#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the benchmark's VPM-BENCH records into figures, targets and docs.

    report.py LOG --out-dir docs [--check] [--assert T1,T4]
        write DIR/benchmarks.json, DIR/BENCHMARKS.md and DIR/bench-cost.svg
    report.py LOG --summary [--check] [--assert T1,T4]
        print a compact table on stdout; writes nothing
    --check: exit 1 when an asserted target is missed or was not measured
        (default: every target whose inputs were measured is asserted;
        --assert all asserts all of them, --assert none none)

LOG is the file tests/vm.sh bench leaves in $VPM_BENCH_LOG (or a whole
console log): the guest scripts print one record per line,

    VPM-BENCH {"case":"D","metric":"udp_pps_1flow","entries":1,"rep":0,"value":123456.7,"unit":"pps"}
    VPM-BENCH-META {"form":"short", ...}

anywhere in the line (a kernel timestamp or other console output may
precede it; a trailing CR is ignored).  Cases A..R2 of one round share
its rep number, so figures against A are computed per round (paired),
then aggregated: median, min and max over the rounds, and the number of
runs.  Nothing is invented: a figure the log lacks is "not measured".

Python 3.11 standard library only.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys
from xml.sax.saxutils import escape

PACKET_CASES = ["A", "B", "C", "D", "R1", "R2"]
CASE_ORDER = PACKET_CASES + ["ctl", "mem", "micro"]
CASE_DESC = {
    "A": "no module",
    "B": "module loaded, empty table (no hooks until the first allocation)",
    "C": "module loaded, table miss",
    "D": "vpm hit and rewrite, flow pinning",
    "R1": "nftables stateless port rewrite",
    "R2": "nftables redirect/dnat, conntrack",
}
METRIC_DESC = {
    "udp_pps_1flow": "UDP packets/s, one flow",
    "udp_pps_flows": "UDP packets/s, many flows",
    "tcp4_mbps": "TCP throughput, IPv4",
    "tcp6_mbps": "TCP throughput, IPv6",
    "tcp_conn_rate": "TCP connection rate",
    "alloc_10000_ms": "10,000 allocations in one batch",
    "dump_65535_ms": "dump of 65,535 allocations",
    "bytes_per_alloc": "per allocation",
    "bytes_per_rule": "per rule",
    "bytes_per_flow_slot": "per flow slot",
    "module_total_65535": "module total at 65,535 allocations",
}
CTL_METRICS = ["alloc_10000_ms", "dump_65535_ms"]
MEM_METRICS = ["bytes_per_alloc", "bytes_per_rule", "bytes_per_flow_slot", "module_total_65535"]
UDP_SUFFIXES = ["1flow", "flows"]

TARGETS = [
    ("T1", "D loses at most 10% of A's UDP packet rate with one flow "
           "(median udp_pps_1flow: D >= 0.9 x A)"),
    ("T2", "D's added cost per packet is at most half of R1's "
           "(median udp_cost_ns_1flow: D <= 0.5 x R1)"),
    ("T3", "D's added cost per packet is at most a sixth of R2's "
           "(median udp_cost_ns_1flow: D <= R2 / 6)"),
    ("T4", "With many flows D beats R2 and does not fall below R1 "
           "(median udp_pps_flows: D > R2, D >= R1)"),
    ("T5", "D's TCP connection rate is at least 1.5 x R2's "
           "(median tcp_conn_rate)"),
    ("T6", "D's per-packet cost at the largest table is within 10% of its cost "
           "at 1 entry (micro-benchmark hook_udp4_hit, lower quartiles: largest <= 1.1 x 1 entry)"),
    ("T7", "10,000 allocations and a dump of 65,535 each take under 1 s "
           "(median alloc_10000_ms < 1000, dump_65535_ms < 1000)"),
    # Guards: regression bounds loose enough for make check's short form
    # (5 noisy repetitions under emulation), where T1-T7 are reported but
    # a miss by a few percent would fail runs at random.
    ("G1", "Guard: D's one-flow packet rate is at least 0.7 x R2's, conntrack NAT's "
           "(median udp_pps_1flow: D >= 0.7 x R2; rates, which the emulator's noise "
           "disturbs less than per-round costs)"),
    ("G2", "Guard: the hook at the largest table costs at most 1.5 x its cost at 1 entry "
           "(micro-benchmark hook_udp4_hit, lower quartiles)"),
    ("G3", "Guard: 10,000 allocations take under 3 s (median alloc_10000_ms < 3000)"),
]
TARGET_IDS = [t[0] for t in TARGETS]

NM = "not measured"
RECORD_RE = re.compile(r"VPM-BENCH(-META)?[ \t]+(\{.*)")


# ---- reading ---------------------------------------------------------------

def _entries(v):
    """A record's table size: an int, or None when it has none."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError("entries is a boolean")
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    raise ValueError(f"entries {v!r} is not an integer")


class Data:
    """What a log holds: samples[(case, metric, entries)] = {rep: value}."""

    def __init__(self):
        self.samples = {}
        self.units = {}
        self.meta = {}
        self.derived = set()
        self.warnings = []
        self.nrecords = 0

    def add(self, case, metric, entries, rep, value, unit, derived=False):
        key = (case, metric, entries)
        reps = self.samples.setdefault(key, {})
        if rep is None:
            rep = ("seq", len(reps))
        elif rep in reps:
            self.warnings.append(
                f"{case} {metric} entries={entries} rep {rep} appears again: the last one counts")
        reps[rep] = value
        old = self.units.setdefault(key, unit)
        if old != unit:
            self.warnings.append(f"{case} {metric}: unit {unit!r} differs from {old!r}; {old!r} kept")
        if derived:
            self.derived.add(key)


def parse_lines(lines):
    data = Data()
    dec = json.JSONDecoder()
    for n, raw in enumerate(lines, 1):
        line = raw.replace("\r", "")
        m = RECORD_RE.search(line)
        if not m:
            continue
        try:
            obj, _ = dec.raw_decode(m.group(2))
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            data.warnings.append(f"line {n}: unreadable record skipped ({e}): {line.strip()[:120]}")
            continue
        if m.group(1):
            for k, v in obj.items():
                if k in data.meta and data.meta[k] != v:
                    data.warnings.append(f"line {n}: META {k}={v!r} replaces {data.meta[k]!r}")
                data.meta[k] = v
            continue
        try:
            case, metric = obj["case"], obj["metric"]
            if not (isinstance(case, str) and case and isinstance(metric, str) and metric):
                raise ValueError("case and metric must be non-empty strings")
            value = obj["value"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"value {value!r} is not a finite number")
            entries = _entries(obj.get("entries"))
            rep = obj.get("rep")
            if rep is not None and (isinstance(rep, bool) or not isinstance(rep, int)):
                raise ValueError(f"rep {rep!r} is not an integer")
            unit = str(obj.get("unit", ""))
        except (KeyError, ValueError) as e:
            data.warnings.append(f"line {n}: record skipped ({e}): {line.strip()[:120]}")
            continue
        data.add(case, metric, entries, rep, float(value), unit)
        data.nrecords += 1
    return data


def read_log(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_lines(f)


# ---- derived figures (per round, against A) -----------------------------------

def derived_names(metric):
    """(cost metric or None, ratio metric) derived from a metric of A's."""
    if metric.startswith("udp_pps_"):
        suffix = metric[len("udp_pps_"):]
        return "udp_cost_ns_" + suffix, "udp_ratio_" + suffix
    return None, metric + "_ratio"


def derive(data):
    """Per round: X/A for every metric A has, and for UDP packet rates the
    added cost per packet, 1e9/pps_X - 1e9/pps_A ns, paired by rep."""
    a_keys = {}
    for (case, metric, entries) in list(data.samples):
        if case == "A" and (case, metric, entries) not in data.derived:
            a_keys.setdefault(metric, []).append(entries)
    for (case, metric, entries), reps in sorted(data.samples.items(), key=lambda kv: sort_key(kv[0])):
        if case in ("A", "ctl", "mem", "micro") or (case, metric, entries) in data.derived:
            continue
        a_entries = a_keys.get(metric)
        if not a_entries:
            continue
        if entries in a_entries:
            base = ("A", metric, entries)
        elif len(a_entries) == 1:
            base = ("A", metric, a_entries[0])
        else:
            continue
        a_reps = data.samples[base]
        cost_m, ratio_m = derived_names(metric)
        for rep, x in sorted(reps.items(), key=lambda kv: str(kv[0])):
            if not isinstance(rep, int) or rep not in a_reps:
                continue
            a = a_reps[rep]
            if x <= 0 or a <= 0:
                data.warnings.append(f"{case} {metric} rep {rep}: a rate <= 0, no ratio or cost")
                continue
            data.add(case, ratio_m, entries, rep, x / a, "ratio", derived=True)
            if cost_m:
                data.add(case, cost_m, entries, rep, 1e9 / x - 1e9 / a, "ns", derived=True)


# ---- aggregation ---------------------------------------------------------------

def sort_key(key):
    case, metric, entries = key
    rank = CASE_ORDER.index(case) if case in CASE_ORDER else len(CASE_ORDER)
    return (rank, case, metric, -1 if entries is None else entries)


def num(x):
    """A figure as written to JSON: rounded, integral values as ints."""
    r = round(x, 4)
    if r == int(r) and abs(r) < 1e15:
        return int(r)
    return r


def overlap(lo1, hi1, lo2, hi2):
    return lo1 <= hi2 and lo2 <= hi1


def lower_quartile(values):
    """The lower quartile (inclusive method; the value itself for one)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=4, method="inclusive")[0]


def aggregate(data):
    """One record per case x metric x entries, in a stable order."""
    recs = {}
    for key in sorted(data.samples, key=sort_key):
        values = list(data.samples[key].values())
        case, metric, entries = key
        rec = {
            "case": case, "metric": metric, "entries": entries,
            "median": statistics.median(values), "min": min(values), "max": max(values),
            "q1": lower_quartile(values),
            "unit": data.units[key], "runs": len(values),
        }
        if key in data.derived:
            rec["derived"] = True
        recs[key] = rec
    # Differences beyond the spread: X against A, same metric, when their
    # [min, max] ranges do not overlap.
    for key, rec in recs.items():
        case, metric, entries = key
        if case in ("A", "ctl", "mem", "micro") or rec.get("derived"):
            continue
        a = recs.get(("A", metric, entries))
        if a is None:
            cands = [r for k, r in recs.items() if k[0] == "A" and k[1] == metric and not r.get("derived")]
            a = cands[0] if len(cands) == 1 else None
        if a is None:
            continue
        if overlap(rec["min"], rec["max"], a["min"], a["max"]):
            rec["vs_A"] = "within spread"
        else:
            rec["vs_A"] = "beyond spread, " + ("lower" if rec["max"] < a["min"] else "higher")
    return recs


class Figures:
    def __init__(self, data):
        self.data = data
        self.recs = aggregate(data)

    def get(self, case, metric, entries="base"):
        """The record of case/metric at entries; "base" picks a case's
        reference table size: 1 entry, else none given, else the smallest."""
        if entries != "base":
            return self.recs.get((case, metric, entries))
        have = [k[2] for k in self.recs if k[0] == case and k[1] == metric]
        if not have:
            return None
        for pref in (1, None, 0):
            if pref in have:
                return self.recs[(case, metric, pref)]
        return self.recs[(case, metric, min(e for e in have if e is not None))]

    def entries_of(self, case, metric):
        return sorted(k[2] for k in self.recs if k[0] == case and k[1] == metric and k[2] is not None)

    def metrics_of(self, case):
        return sorted({k[1] for k in self.recs if k[0] == case})

    def rounds(self):
        reps = set()
        for (case, _m, _e), r in self.data.samples.items():
            if case in PACKET_CASES:
                reps.update(x for x in r if isinstance(x, int))
        return len(reps)


# ---- targets ------------------------------------------------------------------------

def fmt(v, unit=""):
    if v is None:
        return NM
    if unit == "ratio":
        return f"{v:.2f}"
    a = abs(v)
    if a >= 1000:
        s = f"{v:,.0f}"
    elif a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s


def fmt_u(v, unit):
    if v is None:
        return NM
    if unit == "ratio":
        return f"{v:.2f}x"
    return f"{fmt(v, unit)} {unit}".rstrip()


def fmt_range(rec):
    if rec is None:
        return ""
    u = rec["unit"]
    return f"{fmt(rec['min'], u)} – {fmt(rec['max'], u)}"


def spread_note(lhs, rhs, factor=1.0):
    """Whether lhs's [min, max] and factor x rhs's overlap."""
    if lhs is None or rhs is None:
        return ""
    lo, hi = sorted((factor * rhs["min"], factor * rhs["max"]))
    return "within spread" if overlap(lhs["min"], lhs["max"], lo, hi) else "beyond spread"


class Part:
    """One comparison of a target: ok is True, False, or None (not measured)."""

    def __init__(self, ok, text, value=None, bound=None, spread=""):
        self.ok, self.text, self.value, self.bound, self.spread = ok, text, value, bound, spread


def _ratio_part(name, lhs, rhs, factor, strict, lhs_label, rhs_label):
    """lhs >= factor x rhs (strict: >), both records of rates."""
    if lhs is None or rhs is None:
        missing = [lab for lab, r in ((lhs_label, lhs), (rhs_label, rhs)) if r is None]
        return Part(None, f"{name}: {', '.join(missing)} {NM}")
    u = lhs["unit"]
    lv, rv = lhs["median"], rhs["median"]
    bound = factor * rv
    ok = lv > bound if strict else lv >= bound
    ratio = lv / rv if rv else None
    op = ">" if strict else ">="
    text = (f"{lhs_label} {fmt_u(lv, u)} vs {rhs_label} {fmt_u(rv, u)}"
            + (f" = {ratio:.2f}x" if ratio is not None else "")
            + f" (target {op} {factor:g}x)")
    if not ok:
        text += f"; short by {fmt_u(bound - lv, u)}"
        if ratio is not None:
            text += f" ({factor - ratio:.2f}x)"
    return Part(ok, text, ratio, factor, spread_note(lhs, rhs, factor))


def _cost_part(name, lhs, rhs, factor, factor_label, lhs_label, rhs_label):
    """lhs <= factor x rhs, both records of added ns per packet."""
    if lhs is None or rhs is None:
        missing = [lab for lab, r in ((lhs_label, lhs), (rhs_label, rhs)) if r is None]
        return Part(None, f"{name}: {', '.join(missing)} {NM}")
    lv, rv = lhs["median"], rhs["median"]
    bound = factor * rv
    ok = lv <= bound
    text = f"{lhs_label} adds {fmt_u(lv, 'ns')}, {rhs_label} adds {fmt_u(rv, 'ns')}"
    ratio = lv / rv if rv > 0 else None
    if ratio is not None:
        text += f" = {ratio:.2f}x (target <= {factor_label})"
    else:
        text += f" (target <= {factor_label}; {rhs_label} adds no measurable cost)"
    if not ok:
        text += f"; over the bound of {fmt_u(bound, 'ns')} by {fmt_u(lv - bound, 'ns')}"
    return Part(ok, text, ratio, factor, spread_note(lhs, rhs, factor))


def _limit_part(name, rec, limit):
    if rec is None:
        return Part(None, f"{name} {NM}")
    v, u = rec["median"], rec["unit"]
    ok = v < limit
    text = f"{name} {fmt_u(v, u)} (target < {limit:g})"
    if not ok:
        text += f"; over by {fmt_u(v - limit, u)}"
    beyond = rec["max"] < limit or rec["min"] >= limit
    return Part(ok, text, v, limit, "beyond spread" if beyond else "within spread")


def _d_label(rec):
    if rec is None or rec["entries"] is None:
        return "D"
    return f"D({rec['entries']})"


def evaluate_targets(fig):
    out = []
    g = fig.get
    for tid, title in TARGETS:
        parts = []
        notes = []
        if tid == "T1":
            d = g("D", "udp_pps_1flow")
            parts.append(_ratio_part(tid, d, g("A", "udp_pps_1flow"), 0.9, False, _d_label(d), "A"))
        elif tid in ("T2", "T3"):
            d = g("D", "udp_cost_ns_1flow")
            r = "R1" if tid == "T2" else "R2"
            factor, label = (0.5, "0.5x") if tid == "T2" else (1 / 6, "1/6 x")
            parts.append(_cost_part(tid, d, g(r, "udp_cost_ns_1flow"), factor, label, _d_label(d), r))
        elif tid == "T4":
            d = g("D", "udp_pps_flows")
            parts.append(_ratio_part(tid, d, g("R2", "udp_pps_flows"), 1.0, True, _d_label(d), "R2"))
            parts.append(_ratio_part(tid, d, g("R1", "udp_pps_flows"), 1.0, False, _d_label(d), "R1"))
        elif tid == "T5":
            d = g("D", "tcp_conn_rate")
            parts.append(_ratio_part(tid, d, g("R2", "tcp_conn_rate"), 1.5, False, _d_label(d), "R2"))
        elif tid == "G1":
            d = g("D", "udp_pps_1flow")
            parts.append(_ratio_part(tid, d, g("R2", "udp_pps_1flow"), 0.7, False, _d_label(d), "R2"))
        elif tid == "G3":
            parts.append(_limit_part("alloc_10000_ms", g("ctl", "alloc_10000_ms"), 3000))
        elif tid in ("T6", "G2"):
            bound = 1.1 if tid == "T6" else 1.5
            ents = [e for e in fig.entries_of("micro", "hook_udp4_hit") if e > 1]
            one = g("micro", "hook_udp4_hit", 1)
            big = g("micro", "hook_udp4_hit", max(ents)) if ents else None
            if one is None or big is None:
                what = []
                if one is None:
                    what.append("hook_udp4_hit at 1 entry")
                if big is None:
                    what.append("hook_udp4_hit at a larger table")
                parts.append(Part(None, f"{' and '.join(what)} {NM}"))
            else:
                # The lower quartile, not the median: the emulator's
                # bursts (tens of milliseconds, whole repetitions in a
                # row) only ever add time, and hit one table size or the
                # other at random; a table that is really slower is
                # slower in every repetition.
                e = big["entries"]
                lo_big, lo_one = big["q1"], one["q1"]
                ratio = lo_big / lo_one if lo_one > 0 else None
                ok = lo_big <= bound * lo_one
                text = (f"hook_udp4_hit lower quartile {fmt_u(lo_big, big['unit'])} at {e} entries vs "
                        f"{fmt_u(lo_one, one['unit'])} at 1"
                        + (f" = {ratio:.2f}x" if ratio is not None else "")
                        + f" (target <= {bound:.2f}x)")
                if not ok:
                    text += f"; over by {fmt_u(lo_big - bound * lo_one, big['unit'])}"
                parts.append(Part(ok, text, ratio, bound, spread_note(big, one, bound)))
                if e != 65535:
                    notes.append("65535 entries not measured")
            # Reported only: the packet rate's view of the same question.
            dents = [e for e in fig.entries_of("D", "udp_cost_ns_1flow") if e > 1]
            d1 = g("D", "udp_cost_ns_1flow", 1)
            if d1 is not None and dents:
                dbig = g("D", "udp_cost_ns_1flow", max(dents))
                notes.append(f"pktgen (reported only): D adds {fmt_u(dbig['median'], 'ns')} at "
                             f"{dbig['entries']} entries, {fmt_u(d1['median'], 'ns')} at 1")
        elif tid == "T7":
            parts.append(_limit_part("alloc_10000_ms", g("ctl", "alloc_10000_ms"), 1000))
            parts.append(_limit_part("dump_65535_ms", g("ctl", "dump_65535_ms"), 1000))
        if any(p.ok is False for p in parts):
            status = "MISS"
        elif any(p.ok is None for p in parts):
            status = NM
        else:
            status = "PASS"
        out.append({
            "id": tid, "target": title, "status": status,
            "measured": "; ".join(p.text for p in parts),
            "spread": "; ".join(p.spread for p in parts if p.spread),
            "notes": "; ".join(notes),
            "values": [None if p.value is None else num(p.value) for p in parts],
            "bounds": [None if p.bound is None else num(p.bound) for p in parts],
        })
    return out


def parse_assert(spec):
    """None (every measured target), or a list of target ids."""
    if spec is None or spec.strip() == "":
        return None
    s = spec.strip()
    if s.lower() == "all":
        return list(TARGET_IDS)
    if s.lower() == "none":
        return []
    ids = [x.strip().upper() for x in s.split(",") if x.strip()]
    bad = [x for x in ids if x not in TARGET_IDS]
    if bad:
        raise ValueError(f"unknown target(s) {', '.join(bad)}; known: {', '.join(TARGET_IDS)}")
    return ids


def check_failures(targets, asserted, nrecords):
    """The failures --check reports: asserted targets not PASS."""
    fails = []
    if nrecords == 0:
        fails.append("no VPM-BENCH records in the log")
    for t in targets:
        on = t["status"] != NM if asserted is None else t["id"] in asserted
        if on and t["status"] != "PASS":
            fails.append(f"{t['id']} {t['status']}: {t['measured']}")
    return fails


# ---- JSON -----------------------------------------------------------------------------

def machine_facts(meta):
    """(machine, accelerator) as text from the META keys, or NM."""
    m = meta
    accel = str(m.get("accel", "")).lower()
    accel_txt = {"tcg": "TCG (software emulation)", "kvm": "KVM"}.get(accel, m.get("accel") or NM)
    guest = []
    if m.get("cpu_model"):
        guest.append(str(m["cpu_model"]))
    if m.get("cpus") is not None:
        guest.append(f"{m['cpus']} vCPUs")
    host = []
    if m.get("host_cpu_model"):
        host.append(str(m["host_cpu_model"]))
    if m.get("host_cpus") is not None:
        host.append(f"{m['host_cpus']} CPUs")
    parts = []
    if guest:
        parts.append("guest: " + ", ".join(guest))
    if host:
        parts.append("host: " + ", ".join(host))
    return ("; ".join(parts) or NM), accel_txt


def build_json(fig, targets, meta):
    recs = []
    for key in sorted(fig.recs, key=sort_key):
        r = dict(fig.recs[key])
        for k in ("median", "min", "max"):
            r[k] = num(r[k])
        recs.append(r)
    return {
        "generated_by": "make bench (tests/bench/report.py)",
        "meta": {k: meta[k] for k in sorted(meta)},
        "rounds": fig.rounds(),
        "records": recs,
        "targets": targets,
    }


# ---- SVG --------------------------------------------------------------------------------

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5"]


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t < hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def svg_panel(x0, y0, w, h, title, categories, series, unit):
    """A bar chart: categories along x, one bar per series (median) with a
    min-max whisker; series = [(label, {category index: record})]."""
    out = [f'<g transform="translate({x0},{y0})">',
           f'<text x="{w / 2:.1f}" y="16" text-anchor="middle" font-size="14" font-weight="bold">'
           f'{escape(title)}</text>']
    left, top, right, bottom = 64, 34, 10, 40 + 16 * ((len(series) + 1) // 2)
    pw, ph = w - left - right, h - top - bottom
    recs = [r for _l, s in series for r in s.values()]
    if not categories or not recs:
        out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
        out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" text-anchor="middle" '
                   f'font-size="13" fill="#666">{NM}</text></g>')
        return "\n".join(out)
    lo = min(0.0, min(r["min"] for r in recs))
    hi = max(0.0, max(r["max"] for r in recs))
    ticks = nice_ticks(lo, hi)
    lo, hi = min(ticks[0], lo), max(ticks[-1], hi)

    def y(v):
        return top + ph - (v - lo) / (hi - lo) * ph

    for t in ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">{t:g}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>')
    out.append(f'<text transform="translate(14,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
               f'font-size="11">{escape(unit)}</text>')
    cw = pw / len(categories)
    bw = min(28.0, cw * 0.8 / max(1, len(series)))
    for ci, cat in enumerate(categories):
        cx = left + cw * (ci + 0.5)
        out.append(f'<text x="{cx:.1f}" y="{top + ph + 16}" text-anchor="middle" font-size="11">'
                   f'{escape(cat)}</text>')
        for si, (label, s) in enumerate(series):
            bx = cx - bw * len(series) / 2 + bw * si
            r = s.get(ci)
            if r is None:
                out.append(f'<text x="{bx + bw / 2:.1f}" y="{y(0) - 4:.1f}" text-anchor="middle" '
                           f'font-size="8" fill="#999">n/m</text>')
                continue
            color = PALETTE[si % len(PALETTE)]
            y1, y2 = sorted((y(r["median"]), y(0)))
            tip = (f'{cat}, {label}: median {fmt(r["median"])} {r["unit"]}, '
                   f'min {fmt(r["min"])}, max {fmt(r["max"])}, {r["runs"]} runs')
            out.append(f'<rect x="{bx + 1:.1f}" y="{y1:.1f}" width="{bw - 2:.1f}" height="{max(y2 - y1, 0.5):.1f}" '
                       f'fill="{color}"><title>{escape(tip)}</title></rect>')
            wx = bx + bw / 2
            out.append(f'<path d="M{wx:.1f},{y(r["min"]):.1f}V{y(r["max"]):.1f}'
                       f'M{wx - 4:.1f},{y(r["min"]):.1f}h8M{wx - 4:.1f},{y(r["max"]):.1f}h8" '
                       f'stroke="#222" fill="none"/>')
    for si, (label, _s) in enumerate(series):
        lx = left + (si % 2) * (pw / 2)
        ly = top + ph + 30 + 16 * (si // 2)
        out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{PALETTE[si % len(PALETTE)]}"/>')
        out.append(f'<text x="{lx + 14:.1f}" y="{ly}" font-size="11">{escape(label)}</text>')
    out.append("</g>")
    return "\n".join(out)


def build_svg(fig):
    # Panel 1: added ns per packet against A, by case, from pktgen.
    cases = [c for c in PACKET_CASES if c != "A"]
    cases += sorted({k[0] for k in fig.recs if k[1].startswith("udp_cost_ns_")} - set(cases))
    cats1, series1 = [], []
    for c in cases:
        d = fig.get(c, "udp_cost_ns_1flow") or fig.get(c, "udp_cost_ns_flows")
        cats1.append(c if d is None or d["entries"] is None else f"{c} ({d['entries']})")
    for suffix, label in (("1flow", "pktgen, 1 flow"), ("flows", "pktgen, many flows")):
        s = {i: fig.get(c, "udp_cost_ns_" + suffix) for i, c in enumerate(cases)}
        series1.append((label, {i: r for i, r in s.items() if r is not None}))
    # Panel 2: by table size: D's added ns from pktgen and the micro-benchmark's hooks.
    sources = [("D", "udp_cost_ns_1flow", "pktgen D, 1 flow"), ("D", "udp_cost_ns_flows", "pktgen D, many flows")]
    sources += [("micro", m, "micro " + m) for m in fig.metrics_of("micro") if m.startswith("hook_")]
    ents = sorted({e for c, m, _l in sources for e in fig.entries_of(c, m)})
    series2 = []
    for c, m, label in sources:
        s = {i: fig.get(c, m, e) for i, e in enumerate(ents)}
        s = {i: r for i, r in s.items() if r is not None}
        if s:
            series2.append((label, s))
    rows = max(len(series1), len(series2))
    h = 330 + 16 * ((rows + 1) // 2)
    w = 1000
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'font-family="sans-serif">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        svg_panel(0, 0, w / 2, h, "Added cost per packet vs A, by case", cats1, series1, "ns per packet"),
        svg_panel(w / 2, 0, w / 2, h, "Per-packet cost by table size (entries)",
                  [str(e) for e in ents], series2, "ns per packet"),
        f'<text x="{w - 6}" y="{h - 6}" text-anchor="end" font-size="10" fill="#666">'
        f'bars: median; whiskers: min-max; n/m: not measured</text>',
        "</svg>",
    ]
    return "\n".join(body) + "\n"


# ---- Markdown -----------------------------------------------------------------------------

def n_entries(e):
    return f"{e} entry" if e == 1 else f"{e} entries"


def cell(rec):
    """median (min – max) of a record, or NM."""
    if rec is None:
        return NM
    u = rec["unit"]
    if rec["runs"] == 1:
        return fmt_u(rec["median"], u)
    return f"{fmt_u(rec['median'], u)} ({fmt_range(rec)})"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def build_md(fig, targets, meta, config_hash, analysis, svg_name):
    shown = set()

    def get(case, metric, entries="base"):
        r = fig.get(case, metric, entries)
        if r is not None:
            shown.add((r["case"], r["metric"], r["entries"]))
        return r

    machine, accel = machine_facts(meta)
    form = meta.get("form") or NM
    rounds = fig.rounds()
    kernel = meta.get("kernel") or NM
    chash = config_hash or meta.get("kernel_config_sha256") or NM
    L = ["# vpm benchmarks", "",
         "<!-- Generated by `make bench` (tests/bench/report.py) from the run's VPM-BENCH "
         "records; do not edit by hand: the next run overwrites it. Explanations go in "
         "docs/bench-analysis.md, which this page includes. -->", "",
         "Generated by `make bench` from the records the run printed "
         "(`tests/bench/report.py`); do not edit by hand. Every figure is the median "
         "over the run's repetitions, with min – max beside it; anything the run did not "
         f"measure says \"{NM}\". The same figures are in "
         "[benchmarks.json](benchmarks.json).", "",
         table(["", ""], [
             ["date", meta.get("date") or NM],
             ["machine", machine],
             ["virtualization", accel],
             ["kernel", f"{kernel}, config sha256 {chash}"],
             ["form", form],
             ["rounds", f"{rounds} interleaved rounds of cases A-R2" if rounds else NM],
         ]), ""]

    # Targets.
    L += ["## Targets", "",
          "Ratios within this boot. \"within spread\": the two figures' min – max "
          "ranges overlap, so the verdict may flip between runs.", ""]
    L.append(table(["target", "status", "measured", "spread", "notes"], [
        [f"{t['id']}: {t['target']}", f"**{t['status']}**", t["measured"], t["spread"], t["notes"]]
        for t in targets]))
    L.append("")

    # Plot.
    L += ["## Per-packet cost", "", f"![Per-packet cost by case and by table size]({svg_name})", "",
          "Left: what each case adds per packet against A (no module), from pktgen's "
          "packet rate, per round. Right: by table size, case D's added cost and the "
          "micro-benchmark's hook timings. Bars are medians, whiskers min – max.", ""]

    # UDP.
    L += ["## UDP packet rate (pktgen)", "",
          "Counted at the receiver. Added ns per packet: 1e9/pps(case) - 1e9/pps(A), per "
          "round. Beyond spread: the case's min – max does not overlap A's.", ""]
    for suffix, what in (("1flow", "one flow"), ("flows", "many flows")):
        rows = []
        for c in PACKET_CASES + sorted({k[0] for k in fig.recs if k[1] == "udp_pps_" + suffix} - set(PACKET_CASES)):
            p = get(c, "udp_pps_" + suffix)
            label = c if p is None or p["entries"] is None else f"{c} ({n_entries(p['entries'])})"
            e = p["entries"] if p is not None else "base"
            ratio = get(c, "udp_ratio_" + suffix, e) if c != "A" else None
            cost = get(c, "udp_cost_ns_" + suffix, e) if c != "A" else None
            rows.append([label, CASE_DESC.get(c, ""), cell(p),
                         "—" if c == "A" else cell(ratio),
                         "—" if c == "A" else cell(cost),
                         "—" if c == "A" or p is None else p.get("vs_A", NM)])
        L += [f"### {what.capitalize()}", "",
              table(["case", "", "packets/s", "ratio to A", "added per packet", "vs A"], rows), ""]

    # TCP.
    def vs_a_cells(c, m):
        r = get(c, m)
        if c == "A":
            return [cell(r), "—", "—"]
        ratio = get(c, m + "_ratio", r["entries"]) if r is not None else None
        return [cell(r), cell(ratio), r.get("vs_A", NM) if r else NM]

    def case_label(c, m):
        r = fig.get(c, m)
        return c if r is None or r["entries"] is None else f"{c} ({n_entries(r['entries'])})"

    for m, title in (("tcp4_mbps", "TCP throughput over IPv4 (iperf3)"),
                     ("tcp6_mbps", "TCP throughput over IPv6 (iperf3)"),
                     ("tcp_conn_rate", "TCP connection rate (vpm-loadgen)")):
        rows = [[case_label(c, m), CASE_DESC[c]] + vs_a_cells(c, m) for c in PACKET_CASES]
        L += [f"## {title}", "", table(["case", "", METRIC_DESC[m], "ratio to A", "vs A"], rows), ""]

    # Scale.
    ents = sorted(set(fig.entries_of("D", "udp_pps_1flow")) | set(fig.entries_of("D", "udp_pps_flows"))
                  | set(fig.entries_of("micro", "hook_udp4_hit")))
    L += ["## Table size (case D)", ""]
    if ents:
        rows = []
        for e in ents:
            rows.append([e, cell(get("D", "udp_pps_1flow", e)), cell(get("D", "udp_cost_ns_1flow", e)),
                         cell(get("D", "udp_pps_flows", e)), cell(get("D", "udp_cost_ns_flows", e)),
                         cell(get("micro", "hook_udp4_hit", e))])
        L.append(table(["entries", "packets/s, 1 flow", "added per packet", "packets/s, many flows",
                        "added per packet", "micro hook_udp4_hit"], rows))
    else:
        L.append(NM + ".")
    L.append("")

    # Micro-benchmark.
    L += ["## Micro-benchmark (in-kernel, vpm's hook)", "",
          "Each run times the hook over prepared packets; figures are ns per packet.", ""]
    for title, pick in (("Hook", lambda m: not m.startswith("part_")),
                        ("Breakdown", lambda m: m.startswith("part_"))):
        ms = [m for m in fig.metrics_of("micro") if pick(m)]
        if title == "Breakdown":
            L += ["### Breakdown", ""]
        if not ms:
            L += [NM + ".", ""]
            continue
        ments = sorted({k[2] for k in fig.recs if k[0] == "micro" and k[1] in ms},
                       key=lambda e: -1 if e is None else e)
        rows = [[m] + [cell(get("micro", m, e)) if fig.get("micro", m, e) else NM for e in ments] for m in ms]
        L += [table(["metric"] + ["entries " + ("—" if e is None else str(e)) for e in ments], rows), ""]

    # Control plane and memory.
    for title, case, known in (("Control plane", "ctl", CTL_METRICS), ("Memory (slab accounting)", "mem", MEM_METRICS)):
        rows = []
        extra = [m for m in fig.metrics_of(case) if m not in known]
        for m in known + extra:
            ents_m = sorted({k[2] for k in fig.recs if k[0] == case and k[1] == m},
                            key=lambda e: -1 if e is None else e) or ["base"]
            for e in ents_m:
                r = get(case, m, e)
                rows.append([m, METRIC_DESC.get(m, ""), "—" if e in (None, "base") else e, cell(r)])
        L += [f"## {title}", "", table(["metric", "", "entries", "median (min – max)"], rows), ""]

    # Whatever the sections above did not show.
    # Ratios and costs derived from figures shown elsewhere are in the JSON.
    rest = [r for k, r in sorted(fig.recs.items(), key=lambda kv: sort_key(kv[0]))
            if k not in shown and not r.get("derived")]
    if rest:
        L += ["## Other figures", "",
              table(["case", "metric", "entries", "median (min – max)", "runs"],
                    [[r["case"], r["metric"], "—" if r["entries"] is None else r["entries"], cell(r), r["runs"]]
                     for r in rest]), ""]

    # Run facts.
    if meta:
        L += ["## Run parameters", "", "As the run reported them (VPM-BENCH-META).", "",
              table(["key", "value"], [[k, str(meta[k]).replace("|", "\\|")] for k in sorted(meta)]), ""]

    L += ["## Analysis", ""]
    if analysis:
        L += [analysis.rstrip("\n"), ""]
    else:
        L += ["No analysis written yet (docs/bench-analysis.md, included here when it exists).", ""]
    return "\n".join(L)


# ---- summary ------------------------------------------------------------------------------

def build_summary(fig, targets, meta, asserted):
    machine, accel = machine_facts(meta)
    lines = [f"vpm bench: form {meta.get('form', NM)}, {fig.rounds()} rounds, {accel}, "
             f"kernel {meta.get('kernel', NM)}"]
    lines.append(f"{'case':6} {'metric':22} {'entries':>7} {'median':>12}  {'min – max':27} {'unit':8} runs")
    for key in sorted(fig.recs, key=sort_key):
        r = fig.recs[key]
        if r.get("derived") and not r["metric"].startswith("udp_cost_ns_"):
            continue
        e = "" if r["entries"] is None else str(r["entries"])
        lines.append(f"{r['case']:6} {r['metric']:22} {e:>7} {fmt(r['median'], r['unit']):>12}  "
                     f"{fmt_range(r):27} {r['unit']:8} {r['runs']}")
    lines.append("targets:")
    for t in targets:
        on = t["status"] != NM if asserted is None else t["id"] in asserted
        lines.append(f"  {t['id']} {t['status']:12} {'asserted' if on else 'reported':8} {t['measured']}")
    return "\n".join(lines) + "\n"


# ---- main ---------------------------------------------------------------------------------

def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", help="file with the VPM-BENCH lines (tests/vm.sh bench writes $VPM_BENCH_LOG)")
    ap.add_argument("--out-dir", help="write benchmarks.json, BENCHMARKS.md, bench-cost.svg there")
    ap.add_argument("--summary", action="store_true", help="print a compact table on stdout")
    ap.add_argument("--check", action="store_true", help="exit 1 when an asserted target is not PASS")
    ap.add_argument("--assert", dest="asserted", metavar="LIST",
                    help="targets --check asserts: T1,T4,... | all | none "
                         "(default: every target whose inputs were measured)")
    ap.add_argument("--config-hash", help="the kernel config's sha256 (12 hex digits) for the header "
                                          "(default: the log's kernel_config_sha256)")
    ap.add_argument("--analysis", help="hand-written analysis included in BENCHMARKS.md "
                                       "(default: OUT_DIR/bench-analysis.md if it exists)")
    args = ap.parse_args(argv)
    try:
        asserted = parse_assert(args.asserted)
    except ValueError as e:
        ap.error(str(e))
    try:
        data = read_log(args.log)
    except OSError as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 2
    derive(data)
    fig = Figures(data)
    targets = evaluate_targets(fig)
    meta = dict(data.meta)
    if args.config_hash:
        meta["kernel_config_sha256"] = args.config_hash
    for w in data.warnings:
        print(f"report.py: warning: {w}", file=sys.stderr)

    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        apath = args.analysis or os.path.join(args.out_dir, "bench-analysis.md")
        analysis = None
        if os.path.exists(apath):
            with open(apath, encoding="utf-8") as f:
                analysis = f.read()
        elif args.analysis:
            print(f"report.py: {apath} not found", file=sys.stderr)
            return 2
        write_atomic(os.path.join(args.out_dir, "benchmarks.json"),
                     json.dumps(build_json(fig, targets, meta), indent=2, ensure_ascii=False) + "\n")
        write_atomic(os.path.join(args.out_dir, "bench-cost.svg"), build_svg(fig))
        write_atomic(os.path.join(args.out_dir, "BENCHMARKS.md"),
                     build_md(fig, targets, meta, args.config_hash, analysis, "bench-cost.svg"))
        print(f"report.py: wrote {args.out_dir}/BENCHMARKS.md, benchmarks.json, bench-cost.svg "
              f"({len(fig.recs)} figures from {data.nrecords} records)")
    if args.summary or not (args.out_dir or args.check):
        sys.stdout.write(build_summary(fig, targets, meta, asserted))
    if args.check:
        fails = check_failures(targets, asserted, data.nrecords)
        for f in fails:
            print(f"FAIL bench-target {f}")
        if fails:
            return 1
        print("bench targets: all asserted targets pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
