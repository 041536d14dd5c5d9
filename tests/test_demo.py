"""The README's first command, ``scripts/demo``, runs its main job end to end.

It is the first thing a new user runs; a change to the CLI's output once broke
it without a test noticing. It reuses the test run's virtualenv (the one
``scripts/test`` made), so only the demo itself is timed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_passes_its_own_checks() -> None:
    env = {**os.environ, "SEALDROP_VENV": str(Path(sys.executable).parents[1])}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "demo")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ok: 6 files byte-identical" in r.stdout
    assert "demo: all checks passed" in r.stdout
