"""Shared helpers for the benchmark scripts: timing children and their peak RSS."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_mb: float
    # CPU-seconds of the child (wait4's rusage): they hold up on a busy machine
    # where wall time does not.
    user_s: float = 0.0
    sys_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def run(cmd: list[str], *, stdin: Path | None = None, stdout: Path | None = None,
        env: dict[str, str] | None = None) -> Run:
    """Run cmd to completion; wall time and the child's peak RSS (wait4)."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
    fout = open(stdout or os.devnull, "wb")  # noqa: SIM115
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
    finally:
        if stdin:
            fin.close()  # type: ignore[union-attr]
        fout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    return Run(elapsed, usage.ru_maxrss / 1024, usage.ru_utime, usage.ru_stime)


def best(runs: list[Run]) -> Run:
    """Fastest run, with the largest RSS seen (memory must hold on every run)."""
    return Run(min(r.seconds for r in runs), max(r.max_rss_mb for r in runs))


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("IB")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def make_random_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
            # vary the content so nothing downstream can deduplicate it
            block = block[1:] + block[:1] if left % (64 << 20) == 0 else block


def warm(path: Path) -> None:
    """Read a file once so every contender starts from the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(4 << 20)
        while f.readinto(buf):
            pass
