#!/usr/bin/env python3
"""docs/RELIABILITY.md from a VM run's console log (make stress).

    reliability.py LOG... [--out FILE]

Reads the VPM-REL records the reliability tests print (tests/vm/96-99,
their libraries in tests/vm/lib), the PASS/FAIL lines of those tests, the
harness's own verdicts (kmemleak, rmmod) and the VPM-RUN line tests/vm.sh
appends, and writes one page: each case, its input count and its result.
With several logs, each suite comes from the last one that ran it (a
suite run again after a change replaces its earlier records), and the
page names the run (kernel, commit, form) behind every section.
Without --out it prints the page.  Exits non-zero when the log holds no
record at all (the page would claim nothing was run).
"""
import argparse
import json
import re
import sys

SUITES = [
    ("malformed", "Malformed packets", "96-malformed",
     "Crafted packets (`tests/vm/lib/corpus.py`), each injected at PRE_ROUTING from a veth peer "
     "(`pre`), from uid 65534 in a user namespace behind a second veth (`pre-userns`), and at "
     "LOCAL_OUT through a raw socket towards the peer (`out`). Per injection: vpm's counters move "
     "exactly as expected and no other does (flows included), the stack's checksum error counters "
     "move only for a packet invalid as sent, the payload reaches the expected listener or none, "
     "and the bytes are unchanged where vpm must not write: an AF_PACKET tap's clone of each "
     "injected frame (shared data) and, for `out`, the peer's copy."),
    ("netlink-fuzz", "Netlink fuzzing", "97-nlfuzz",
     "Mutated and random messages against the `vpm` family (`tests/vm/lib/nlfuzz.py`): "
     "as root, then from uid 65534 with a user namespace of its own in the same network namespace. "
     "Root: every answer well-formed, the table consistent afterwards (one allocation per AID and "
     "port, anonymous ports unique, no more than the cap) and `vpmctl show` agrees with a raw dump. "
     "Unprivileged: no mutating command succeeds and the state is byte-identical afterwards."),
    ("churn", "Churn under load", "98-churn",
     "Allocations and rules added and deleted as fast as one process can (`tests/vm/lib/stress.py`) "
     "while traffic flows through a stable allocation; then a flood of SYNs from spoofed sources, more "
     "than the flow table's 8,192 slots, while control-plane round trips are timed and the kernel's slab "
     "memory sampled."),
    ("teardown", "Teardown races", "99-teardown",
     "Module unloads under traffic and netlink requests with `vpmctl monitor` listeners attached; "
     "network namespaces destroyed with populated tables while traffic flows elsewhere."),
]


def parse(path):
    recs, verdicts, run = [], {}, {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.search(r"VPM-REL (\{.*\})\s*$", line)
            if m:
                recs.append(json.loads(m.group(1)))
                continue
            m = re.search(r"VPM-RUN (\{.*\})\s*$", line)
            if m:
                run.update(json.loads(m.group(1)))
                continue
            m = re.match(r"^(PASS|FAIL) (\S+)", line)
            if m:
                verdicts[m.group(2)] = m.group(1)
            m = re.match(r"^VPM-RESULT (\d+) (\d+)", line)
            if m:
                run["result"] = (int(m.group(1)), int(m.group(2)))
    return recs, verdicts, run


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def malformed_table(rows):
    """One row per case: the packet, what is expected where it enters
    (PRE_ROUTING from the peer and from the user namespace expect the
    same), and the result of each injection."""
    cases = {}
    for r in rows:
        cases.setdefault(r["case"], []).append(r)
    out = ["| case | packet | at PRE_ROUTING (peer; user ns) | at LOCAL_OUT (raw socket) | results |",
           "|---|---|---|---|---|"]
    for name, rs in cases.items():
        by = {r["path"]: r for r in rs}
        pre = by.get("pre") or by.get("pre-userns")
        out_ = by.get("out")
        results = []
        for r in rs:
            res = "pass" if r["result"] == "pass" else "**FAIL**: " + "; ".join(r.get("problems", []))
            results.append(f"{r['path']} {res}")
        out.append(f"| {cell(name)} | {cell(rs[0].get('what', ''))} | {cell(pre['expect']) if pre else 'n/a'} | "
                   f"{cell(out_['expect']) if out_ else 'n/a'} | {cell(', '.join(results))} |")
    out += ["", f"{len(cases)} cases, {len(rows)} injections.", ""]
    return out


def describe(run):
    form = "long forms" if run.get("long") else "short forms"
    res = run.get("result")
    return (f"kernel `{run.get('kernel', '?')}` (config sha256 `{run.get('config_sha256', '?')}`), "
            f"{'commit `' + run['commit'] + '`' if run.get('commit') else 'commit not recorded'}, {form}, {run.get('date', '?')}"
            + (f"; the run as a whole (every test it ran): {res[0]} passed, {res[1]} failed" if res else ""))


def render(runs):
    """RUNS: (log path, records, verdicts, run facts) per console log, in
    the order given; each suite's section comes from the last log that
    has records of it."""
    names = [path.split("/")[-1] for path, _, _, _ in runs]
    out = ["# vpm reliability suite: results", "",
           "Generated by `tests/vm/reliability.py` from "
           + ("the console log" if len(runs) == 1 else "the console logs") + " below. "
           "Do not edit by hand: `make reliability` (part of `make stress`) writes it again from the long "
           "forms on the KASAN kernel.", ""]
    out += ["| console log | run | insmod | rmmod | kmemleak |", "|---|---|---|---|---|"]
    for name, (_, _, verdicts, run) in zip(names, runs):
        h = [verdicts.get(n, "not run") for n in ("insmod", "rmmod", "kmemleak")]
        out.append(f"| `{name}` | {cell(describe(run))} | {' | '.join(h)} |")
    out.append("")
    chosen = {}
    for key, _, _, _ in SUITES:
        for i, (_, recs, _, _) in enumerate(runs):
            if any(r.get("suite") == key for r in recs):
                chosen[key] = i
    recs_all = [r for key, i in chosen.items() for r in runs[i][1] if r.get("suite") == key]
    total = len(recs_all)
    failed = sum(r["result"] != "pass" for r in recs_all)
    inputs = sum(int(r.get("inputs", 0)) for r in recs_all)
    out += [f"**{total - failed} of {total} records passed**, {inputs:,} inputs in all. "
            "Every case also passes only if the kernel stays up and its log has no splat "
            "(KASAN, lockdep, RCU, a warning, a hung task: `tests/vm.sh`), the taint stays within "
            "O/E/TEST, and kmemleak finds nothing after the final unload.", ""]
    for key, title, test, what in SUITES:
        out += [f"## {title}", "", what, ""]
        if key not in chosen:
            out += ["No records.", ""]
            continue
        i = chosen[key]
        _, recs, verdicts, _ = runs[i]
        rows = [r for r in recs if r.get("suite") == key]
        tv = [f"`{n}`: {v}" for n, v in sorted(verdicts.items()) if n == test or n.startswith(test + ":")]
        out += [f"From `{names[i]}`. Test verdicts: " + (", ".join(tv) or "not run") + ".", ""]
        if key == "malformed":
            out += malformed_table(rows)
            continue
        out += ["| case | inputs | expected | detail | result |", "|---|---|---|---|---|"]
        for r in rows:
            res = r["result"].upper() if r["result"] != "pass" else "pass"
            if r.get("problems"):
                res += ": " + "; ".join(r["problems"])
            out.append(f"| {cell(r['case'])} | {int(r.get('inputs', 0)):,} | {cell(r.get('expect', ''))} | "
                       f"{cell(r.get('what', ''))} | {cell(res)} |")
        out.append("")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description="docs/RELIABILITY.md from VM console logs; "
                                 "a later log's records of a suite replace an earlier one's")
    ap.add_argument("logs", nargs="+", metavar="log")
    ap.add_argument("--out")
    a = ap.parse_args()
    runs = [(path, *parse(path)) for path in a.logs]
    if not any(recs for _, recs, _, _ in runs):
        sys.exit(f"{', '.join(a.logs)}: no VPM-REL records (did the reliability tests run?)")
    page = render(runs)
    if a.out:
        with open(a.out, "w") as f:
            f.write(page)
        print(f"wrote {a.out}: {sum(len(r) for _, r, _, _ in runs)} records")
    else:
        sys.stdout.write(page)


if __name__ == "__main__":
    main()
