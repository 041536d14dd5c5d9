"""scripts/_venv.sh shows pip's progress, keeps its log, and fails loudly.

Running a real install here would take minutes and the network; instead the
script runs against a fake venv whose ``pip`` prints a real pip's kind of
output (a stand-in, said so here: only pip is replaced, the script is the
real one, sourced by bash as scripts/* source it).
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "_venv.sh"

PIP_OUTPUT = """\
Obtaining file:///work/sealdrop
  Installing build dependencies: started
  Installing build dependencies: finished with status 'done'
Collecting pynacl>=1.5 (from sealdrop==0.1.0)
  Downloading PyNaCl-1.5.0-cp36-abi3-manylinux_2_17_x86_64.whl (856 kB)
Collecting aiohttp>=3.9 (from sealdrop==0.1.0)
  Using cached aiohttp-3.9.5-cp311-cp311-manylinux_2_17_x86_64.whl (1.3 MB)
Building wheels for collected packages: sealdrop
  Building editable for sealdrop (pyproject.toml): started
  Building editable for sealdrop (pyproject.toml): finished with status 'done'
Installing collected packages: pynacl, aiohttp, sealdrop
Successfully installed aiohttp-3.9.5 pynacl-1.5.0 sealdrop-0.1.0
"""


def _fake_venv(tmp_path: Path, *, exit_code: int) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, body in (("python", "exit 0\n"),
                       ("pip", f"cat <<'PIP'\n{PIP_OUTPUT}PIP\n"
                               f"echo \"args: $*\"\n"
                               + ("echo 'ERROR: No matching distribution found for pynacl' >&2\n"
                                  if exit_code else "")
                               + f"exit {exit_code}\n")):
        p = venv / "bin" / name
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return venv


def _source(venv: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEALDROP_VENV": str(venv)}
    # stderr is a pipe, not a terminal: one line per step.
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}"; echo "PATH=$PATH"'], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_script_parses() -> None:
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_progress_one_line_per_step_and_the_whole_log(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path, exit_code=0)
    r = _source(venv)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"sealdrop: installing into {venv}, a few minutes")
    assert lines[1:-1] == [
        "  [1] Obtaining file:///work/sealdrop",
        "  [2] Collecting pynacl>=1.5",
        "  [3] Downloading PyNaCl-1.5.0-cp36-abi3-manylinux_2_17_x86_64.whl",
        "  [4] Collecting aiohttp>=3.9",
        "  [5] Building editable for sealdrop",
        "  [6] Installing collected packages: pynacl, aiohttp, sealdrop",
        "  [7] Successfully installed aiohttp-3.9.5 pynacl-1.5.0 sealdrop-0.1.0",
    ]
    assert lines[-1] == "sealdrop: installed"
    log = (venv / "install.log").read_text()
    assert log.startswith(PIP_OUTPUT) and f"args: install --progress-bar off -e {ROOT}[test]" \
        in log
    assert (venv / ".sealdrop-installed").exists()
    assert f"PATH={venv}/bin:" in r.stdout
    # Installed once: the next run is silent.
    again = _source(venv)
    assert again.returncode == 0 and again.stderr == ""


def test_a_failed_install_shows_the_logs_tail_and_stops(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path, exit_code=1)
    r = _source(venv)
    assert r.returncode == 1
    assert "PATH=" not in r.stdout  # the sourcing script stopped
    assert "ERROR: No matching distribution found for pynacl" in r.stderr
    assert r.stderr.rstrip().endswith(f"sealdrop: pip install failed; see {venv}/install.log")
    assert "sealdrop: installed" not in r.stderr
    assert not (venv / ".sealdrop-installed").exists()
    assert "No matching distribution" in (venv / "install.log").read_text()
