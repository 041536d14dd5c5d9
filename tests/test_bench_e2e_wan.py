"""bench_e2e and bench_wan are too slow for the suite; their command lines are not.

Each script's --help must work (it imports the bench's modules and builds its
parser), and what it promises to print is described there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "scripts" / "lib"


@pytest.mark.parametrize(("script", "words"), [
    ("bench_e2e.py", ["magic-wormhole", "--size", "--repeat", "CPU-seconds per GiB"]),
    ("bench_wan.py", ["curl -T", "--rate", "tbf", "root"]),
])
def test_help_works_and_says_what_is_measured(script: str, words: list[str]) -> None:
    out = subprocess.run([sys.executable, str(LIB / script), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for word in words:
        assert word in text


def test_the_wormhole_baseline_is_pinned_and_not_a_runtime_dependency() -> None:
    reqs = (LIB / "wormhole-requirements.txt").read_text().splitlines()
    pins = [r for r in reqs if r and not r.startswith("#")]
    assert {p.split("==")[0] for p in pins} == {
        "magic-wormhole", "magic-wormhole-mailbox-server", "magic-wormhole-transit-relay"}
    assert all("==" in p for p in pins)
    pyproject = (LIB.parents[1] / "pyproject.toml").read_text()
    assert "wormhole" not in pyproject
