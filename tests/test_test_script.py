"""scripts/test: two phases (parallel, then the `serial` tests alone), and an
exit status that fails the run when either phase fails or finds nothing.

Running the real suite here would recurse; instead the script runs against a
fake venv whose ``python`` records its arguments and exits with the status
the test chose for that phase (a stand-in, said so here: only python and npm
are replaced, the script is the real one).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test"

# Exits with $PHASE1_RC when called for the parallel phase, $PHASE2_RC for the
# serial one, $PLAIN_RC otherwise; each call is one line in $CALLS.
FAKE_PYTHON = """\
printf '%s\\n' "$*" >> "$CALLS"
case "$*" in
  *"-m not serial"*) exit "${PHASE1_RC:-0}" ;;
  *"-m serial"*) exit "${PHASE2_RC:-0}" ;;
  *) exit "${PLAIN_RC:-0}" ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path) -> tuple[dict[str, str], Path]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, body in (("python", FAKE_PYTHON), ("npm", "exit 0\n")):
        p = venv / "bin" / name
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    stamp = venv / ".sealdrop-installed"
    stamp.touch()
    # Newer than pyproject.toml, so _venv.sh installs nothing.
    later = (ROOT / "pyproject.toml").stat().st_mtime + 60
    os.utime(stamp, (later, later))
    calls = tmp_path / "calls"
    env = {k: v for k, v in os.environ.items() if k != "SEALDROP_TEST_WORKERS"}
    env.update(SEALDROP_VENV=str(venv), CALLS=str(calls))
    return env, calls


def _run(fake: tuple[dict[str, str], Path], *args: str, **rcs: str
         ) -> tuple[int, list[str], str]:
    env, calls = fake
    r = subprocess.run(["bash", str(SCRIPT), *args], env={**env, **rcs},
                       capture_output=True, text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return r.returncode, lines, r.stderr


def test_the_whole_suite_runs_in_two_phases(fake: tuple[dict[str, str], Path]) -> None:
    rc, calls, _ = _run(fake)
    assert rc == 0
    assert calls == [
        "-m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m not serial",
        "-m pytest -q -p no:cacheprovider -m serial",
    ]


@pytest.mark.parametrize(("phase1", "phase2", "want"), [
    ("1", "0", 1),  # a failure in the parallel phase
    ("0", "1", 1),  # a failure in the serial phase
    ("2", "1", 2),  # both: the first phase's status
    ("5", "0", 1),  # the whole suite's parallel phase found nothing
    ("0", "5", 1),  # the whole suite's serial phase found nothing
    ("5", "5", 1),
])
def test_either_phase_fails_the_whole_suite(fake: tuple[dict[str, str], Path], phase1: str,
                                            phase2: str, want: int) -> None:
    rc, calls, _ = _run(fake, PHASE1_RC=phase1, PHASE2_RC=phase2)
    assert rc == want
    assert len(calls) == 2  # the serial phase runs even after a failed first one


def test_arguments_reach_both_phases_and_one_empty_phase_is_fine(
        fake: tuple[dict[str, str], Path]) -> None:
    rc, calls, _ = _run(fake, "tests/crypto", "-x", PHASE2_RC="5")
    assert rc == 0  # tests/crypto has no serial test
    assert [c.endswith(" tests/crypto -x") for c in calls] == [True, True]
    rc, _, _ = _run(fake, "tests/crypto", PHASE1_RC="5")
    assert rc == 0
    rc, _, err = _run(fake, "tests/crypto", "-k", "nothing", PHASE1_RC="5", PHASE2_RC="5")
    assert rc == 1 and "collected no tests" in err
    rc, _, _ = _run(fake, "tests/crypto", PHASE1_RC="1", PHASE2_RC="5")
    assert rc == 1


@pytest.mark.parametrize("how", [("-m", "slow"), ("-mslow",), ("-n", "4"), ("-n4",)])
def test_a_marker_or_worker_count_of_your_own_runs_one_plain_pytest(
        fake: tuple[dict[str, str], Path], how: tuple[str, ...]) -> None:
    rc, calls, _ = _run(fake, "tests/e2e", *how)
    assert rc == 0
    assert calls == [" ".join(("-m pytest -q -p no:cacheprovider tests/e2e", *how))]


def test_no_workers_runs_one_plain_pytest_and_collecting_nothing_fails(
        fake: tuple[dict[str, str], Path]) -> None:
    env, _ = fake
    env["SEALDROP_TEST_WORKERS"] = "0"
    rc, calls, _ = _run(fake)
    assert rc == 0 and calls == ["-m pytest -q -p no:cacheprovider"]
    rc, _, err = _run(fake, PLAIN_RC="5")
    assert rc == 1 and "collected no tests" in err
    rc, _, _ = _run(fake, PLAIN_RC="3")
    assert rc == 3


def test_the_pty_outage_test_runs_in_the_serial_phase() -> None:
    """The test that timed out beside two workers is marked to run alone."""
    r = subprocess.run(
        [sys.executable, "-m", "pytest",
         "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "serial",
         "tests/e2e/test_outage.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("tests/e2e/test_outage.py::"
            "test_the_terminal_shows_the_retry_line_and_ctrl_c_says_how_to_resume") in r.stdout
