"""bench_load is a benchmark (run by hand, not by the suite); its command line,
its percentile and its job plan are checked here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "scripts" / "lib"
sys.path.insert(0, str(LIB))
import bench_load  # noqa: E402

sys.path.remove(str(LIB))


def test_help_names_both_deployments_and_the_error_line() -> None:
    out = subprocess.run([sys.executable, str(LIB / "bench_load.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for word in ("--transfers", "--concurrency", "nginx", "SeaweedFS", "p99", "errors=N",
                 "1.5x", "--breakdown"):
        assert word in text


def test_without_postgresql_it_says_what_to_give() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(LIB / "bench_load.py")], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode != 0 and "--pg" in out.stderr


def test_percentile_is_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert bench_load.percentile(xs, 50) == 50.0
    assert bench_load.percentile(xs, 99) == 99.0
    assert bench_load.percentile([3.0], 99) == 3.0
    assert bench_load.percentile([], 50) != bench_load.percentile([], 50)  # nan


def test_the_plan_is_the_same_for_both_deployments_and_within_bounds() -> None:
    from sealdrop.crypto import age

    accounts = [(f"a{i}", None, age.X25519Identity.generate(lambda n: bytes([i + 1]) * n))
                for i in range(4)]
    one = bench_load.plan(accounts, 30, recipients=2, min_size=100, max_size=10_000,
                          seed=7)  # type: ignore[arg-type]
    two = bench_load.plan(accounts, 30, recipients=2, min_size=100, max_size=10_000,
                          seed=7)  # type: ignore[arg-type]
    assert [len(j.blob) for j in one] == [len(j.blob) for j in two]
    assert [tuple(r[0] for r in j.recipients) for j in one] == \
        [tuple(r[0] for r in j.recipients) for j in two]
    for job in one:
        assert len(job.recipients) == 2 and job.sender not in job.recipients
        assert 100 < len(job.blob) <= 10_000 + 400  # plaintext + the age header and tag
    with pytest.raises(ValueError):
        bench_load.plan(accounts[:1], 1, recipients=1, min_size=1, max_size=2, seed=1)  # type: ignore[arg-type]
