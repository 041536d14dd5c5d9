"""bench_e2e and bench_wan are too slow for the suite; their command lines are not.

Each script's --help must work (it imports the bench's modules and builds its
parser), and what it promises to print is described there.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

LIB = Path(__file__).resolve().parents[1] / "scripts" / "lib"


@pytest.mark.parametrize(("script", "words"), [
    ("bench_e2e.py", ["magic-wormhole", "--size", "--repeat", "CPU-seconds per GiB",
                      "durable copy"]),
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


def _bench(name: str) -> Any:
    """The bench module ``name`` from scripts/lib (not a package)."""
    sys.path.insert(0, str(LIB))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(LIB))


def test_bench_wan_reads_resends_and_idle_link_from_the_relay_log(tmp_path: Path) -> None:
    bench_wan = _bench("bench_wan")
    log = tmp_path / "relay.log"
    lines = [
        '{"ts": 100.5, "event": "request", "method": "POST", "route": "/v1/transfers", '
        '"status": 201, "duration_s": 0.02}',
        '{"ts": 103.0, "event": "request", "method": "PATCH", '
        '"route": "/v1/transfers/{id}/data", "status": 204, "duration_s": 2.0}',
        "not json: a line the relay printed before its logger",
        '{"ts": 104.0, "event": "request", "method": "PATCH", '
        '"route": "/v1/transfers/{id}/data", "status": 409, "duration_s": 0.5}',
        '{"ts": 106.0, "event": "request", "method": "PATCH", '
        '"route": "/v1/transfers/{id}/data", "status": 204, "duration_s": 2.0}',
        '{"ts": 106.2, "event": "request", "method": "POST", '
        '"route": "/v1/transfers/{id}/complete", "status": 200, "duration_s": 0.1}',
        '{"ts": 300.0, "event": "request", "method": "PATCH", '
        '"route": "/v1/transfers/{id}/data", "status": 204, "duration_s": 1.0}',
    ]
    log.write_text("\n".join(lines) + "\n")
    assert bench_wan.upload_answers(log) == {204: 3, 409: 1}
    before, after = bench_wan.idle_ends(log, 100.0, 106.5)  # the last PATCH is another send's
    assert before == pytest.approx(1.0) and after == pytest.approx(0.5)
    assert bench_wan.idle_ends(log, 200.0, 250.0) == (0.0, 0.0)


def test_the_durable_copy_baseline_copies_fsyncs_and_cleans_up(tmp_path: Path) -> None:
    bench_e2e = _bench("bench_e2e")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5_000_000)
    took = bench_e2e.durable_copy(src, tmp_path / "dst.bin")
    assert took > 0
    assert not (tmp_path / "dst.bin").exists()
    with pytest.raises(subprocess.CalledProcessError):  # a failed copy is not a time
        bench_e2e.durable_copy(tmp_path / "missing.bin", tmp_path / "dst.bin")
