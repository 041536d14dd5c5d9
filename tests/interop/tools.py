"""Helpers for driving the external age implementations in interop tests."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
NODE = shutil.which("node")
AGE_JS = HERE / "age_js.mjs"
TYPAGE = HERE / "node_modules" / "age-encryption" / "package.json"

KiB = 1024
MiB = 1024 * KiB
SIZES = [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 128 * KiB, 3 * MiB]

needs_age = pytest.mark.skipif(
    AGE is None or AGE_KEYGEN is None,
    reason="the age CLI is not installed (apt-get install age); .ci/run installs it",
)


def _typage_reason() -> str:
    if NODE is None:
        return "node is not installed; the typage interop tests need Node.js and npm"
    return "age-encryption is not installed: run `cd tests/interop && npm install`"


needs_typage = pytest.mark.skipif(NODE is None or not TYPAGE.exists(), reason=_typage_reason())


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(argv, input=input, capture_output=True, env=full_env, timeout=120)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        raise AssertionError(f"{' '.join(argv[:3])}… exited {proc.returncode}: {err}")
    return proc


def age_js(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    assert NODE is not None
    return run([NODE, str(AGE_JS), *args], env=env, check=check)


def run_tty(
    argv: list[str], answers: list[tuple[bytes, bytes]], timeout: float = 60
) -> tuple[int, bytes]:
    """Run argv on a fresh pseudo-terminal, typing each answer after its prompt.

    The age CLI reads passphrases from /dev/tty only, so this is the one way to
    drive ``age -p`` from a test.
    """
    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    seen = 0
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data:
                    break
                out += data
            if pending and pending[0][0] in out[seen:]:
                prompt, answer = pending.pop(0)
                seen = out.index(prompt, seen) + len(prompt)
                os.write(fd, answer + b"\n")
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                break
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out
