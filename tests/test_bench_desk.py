"""bench_desk is a benchmark (run by hand, not by the suite): its help, and one
tiny run through a real desk in chromium whose output has every line it
promises. No figure is asserted: timing lives in the benchmark, never in tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.desk.browserkit import needs_browser

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lib" / "bench_desk.py"
NUM = r"[0-9]+\.[0-9]+"


def test_help_says_what_it_measures() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for word in ("--size", "--rounds", "sealdrop send", "chromium", "VmHWM", "wait4",
                 "scrypt 2^18", "load average"):
        assert word in text, word


@needs_browser
def test_a_tiny_run_prints_every_figure() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--size", "1MiB", "--rounds", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(rf"round 1: cli {NUM} s, {NUM} CPU-s, \d+ MB peak; desk stage {NUM} s "
                     rf"\+ send {NUM} s, {NUM} CPU-s, \d+ MB peak", text), text
    assert re.search(rf"ratio desk/cli: total {NUM}x, send alone {NUM}x, CPU {NUM}x, "
                     rf"peak RSS {NUM}x", text), text
    m = re.search(rf"desk unlocking a default profile \(scrypt 2\^18\): {NUM} s, (\d+) MB", text)
    assert m, text
    # Shape, not speed: scrypt at 2^18 holds 256 MiB, so the peak is above it.
    assert int(m.group(1)) > 256
    assert re.search(rf"load average at end: {NUM} {NUM} {NUM}", text)
