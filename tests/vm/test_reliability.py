"""Unit tests of reliability.py (make host-test): the page it writes from
a console log."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reliability  # noqa: E402

LOG = """\
[    1.0] boot
PASS insmod
VPM-REL {"suite": "malformed", "case": "v4-udp-ok", "path": "pre", "inputs": 1, "expect": "seen +1", "what": "ok UDP", "result": "pass"}
VPM-REL {"suite": "malformed", "case": "v4-udp-ok", "path": "out", "inputs": 1, "expect": "seen +2", "what": "ok UDP", "result": "fail", "problems": ["pkts_seen moved by 1, expected 2"]}
VPM-REL {"suite":"netlink-fuzz","case":"root-seed-1","inputs":2000,"expect":"consistent","what":"x","result":"pass"}
FAIL 96-malformed (exit 1, 60s)
PASS 97-nlfuzz (100s of 420s)
PASS 97-nlfuzz:root (40s)
PASS rmmod
PASS kmemleak
VPM-RESULT 5 1
VPM-RUN {"kernel":"kasan-abc","config_sha256":"123","long":1,"date":"2026-12-03T00:00:00Z","commit":"abc1234"}
"""

LATER = """\
PASS insmod
VPM-REL {"suite": "malformed", "case": "v6-new", "path": "pre", "inputs": 1, "expect": "seen +1", "what": "new", "result": "pass"}
PASS 96-malformed (50s of 600s)
PASS rmmod
PASS kmemleak
VPM-RESULT 3 0
VPM-RUN {"kernel":"kasan-abc","config_sha256":"123","long":1,"date":"2026-12-04T00:00:00Z","commit":"def5678"}
"""


class Page(unittest.TestCase):
    def log(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return f.name

    def page(self, *texts):
        paths = [self.log(t) for t in texts]
        return reliability.render([(p, *reliability.parse(p)) for p in paths]), paths[-1]

    def test_counts_cases_and_failures(self):
        page, _ = self.page(LOG)
        self.assertIn("**2 of 3 records passed**, 2,002 inputs", page)
        self.assertIn("kernel `kasan-abc`", page)
        self.assertIn("commit `abc1234`", page)
        self.assertIn("long forms", page)
        # One row per malformed case, with both paths' results.
        self.assertIn("pre pass, out **FAIL**: pkts_seen moved by 1, expected 2", page)
        self.assertIn("1 cases, 2 injections.", page)
        self.assertIn("`96-malformed`: FAIL", page)
        self.assertIn("`97-nlfuzz:root`: PASS", page)
        self.assertIn("| PASS | PASS | PASS |", page)
        self.assertIn("5 passed, 1 failed", page)
        # A suite without records says so.
        self.assertIn("## Teardown races", page)
        self.assertIn("No records.", page)

    def test_a_later_log_replaces_a_suite(self):
        page, later = self.page(LOG, LATER)
        # The malformed suite from the later log only; nlfuzz from the first.
        self.assertIn("**2 of 2 records passed**, 2,001 inputs", page)
        self.assertIn("v6-new", page)
        self.assertNotIn("v4-udp-ok", page)
        self.assertIn(f"From `{later.split('/')[-1]}`. Test verdicts: `96-malformed`: PASS", page)
        self.assertIn("commit `def5678`", page)
        self.assertIn("commit `abc1234`", page)

    def test_no_records_fails(self):
        _, path = self.page("PASS insmod\n")
        r = subprocess.run([sys.executable, os.path.join(HERE, "reliability.py"), path],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no VPM-REL records", r.stderr)


if __name__ == "__main__":
    unittest.main()
