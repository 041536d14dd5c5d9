"""bench_tlog is a benchmark (run by hand, not by the suite): its help, and one
tiny run on SQLite against a real relay whose output has every line it promises.
No figure is asserted: timing lives in the benchmark, never in tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lib" / "bench_tlog.py"
NUM = r"[0-9]+\.[0-9]+"


def test_help_says_what_it_measures() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for word in ("--appends", "--entries", "--pg", "tlog.append", "/v1/log/checkpoint",
                 "consistency proof", "tlog_hashes", "load average", "Ratios only"):
        assert word in text


def test_a_tiny_run_prints_every_figure() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEALDROP_TEST_PG_URL"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--appends", "20", "--entries", "300",
                          "--rounds", "1"], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(rf"load average at start: {NUM} {NUM} {NUM}", lines[0])
    assert re.fullmatch(rf"load average at end: {NUM} {NUM} {NUM}", lines[-1])
    assert re.search(rf"sqlite +baseline {NUM} ms/tx +with log {NUM} ms/tx +ratio {NUM}x "
                     rf"+tlog_hashes rows/entry {NUM}", out.stdout)
    assert "postgresql" not in out.stdout  # neither --pg nor the variable: SQLite only
    got = {}
    for label in ("(a) checkpoint GET + open", "(b) first read, all tiles",
                  "(c) advance by 1 entry"):
        m = re.search(re.escape(label) + rf" +{NUM} ms +requests +(\d+) +bytes +(\d+) "
                      rf"+ratio +{NUM}x", out.stdout)
        assert m, (label, out.stdout)
        got[label[:3]] = int(m.group(1)), int(m.group(2))
    # Shape, not speed: 300 entries are two entry tiles (256 + 44) plus level-0
    # hash tiles and the checkpoint; one GET for the bare checkpoint.
    assert got["(a)"][0] == 1
    assert got["(b)"][0] >= 3 and got["(b)"][1] > got["(a)"][1]
    assert got["(c)"][0] >= 2
