"""What bench_e2e and bench_wan share: a loopback relay with two profiles, and
child processes measured by their own rusage (wall, CPU, peak RSS).

CPU-seconds (user + system, from wait4 for a child, from /proc/PID/stat for
the long-running relay) are printed beside wall times because they hold up on
a busy machine where wall times do not.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    """One finished child: wall seconds, CPU seconds (user, system), peak RSS in MB."""

    seconds: float
    user: float
    system: float
    max_rss_mb: float

    @property
    def cpu(self) -> float:
        return self.user + self.system


def measure(cmd: Sequence[str], *, env: dict[str, str] | None = None,
            stdout: Path | None = None, cwd: Path | None = None,
            prefix: Sequence[str] = (), quiet: bool = False) -> Proc:
    """Run ``cmd`` to completion (after ``prefix``, e.g. ``ip netns exec NS``);
    ``quiet``: its standard error is dropped."""
    fout = open(stdout or os.devnull, "wb")  # noqa: SIM115
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*prefix, *cmd], stdin=subprocess.DEVNULL, stdout=fout,
                                stderr=subprocess.DEVNULL if quiet else None, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
    finally:
        fout.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"benchmark command failed ({code}): {' '.join(cmd)}")
    return Proc(elapsed, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(x) for x in fields[11:15]) / _TICK


def hwm_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def reset_hwm(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def wait_for(path: Path, needle: bytes, proc: subprocess.Popen[bytes], what: str,
             timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists() or needle not in path.read_bytes():
        if time.time() > deadline or proc.poll() is not None:
            tail = path.read_text(errors="replace")[-2000:] if path.exists() else ""
            raise SystemExit(f"{what} did not start\n{tail}")
        time.sleep(0.05)


def compile_tree() -> None:
    """As an installed wheel would have it: with PYTHONDONTWRITEBYTECODE set (as in
    CI), an editable checkout otherwise recompiles every module on every run."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "client", "server", "crypto"],
                   cwd=root, check=False, capture_output=True)


class LoopbackRelay:
    """A relay (SQLite + files under ``d``) and two profiles, practice and lab, that
    know each other. ``prefix`` runs every process inside it (a network namespace)."""

    def __init__(self, d: Path, size: int, *, prefix: Sequence[str] = ()) -> None:
        self.d = d
        self.prefix = list(prefix)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
        self.sealdrop = str(BIN / "sealdrop")
        self._relay_cmd = str(BIN / "sealdrop-relay")
        self.data = d / "relay"
        subprocess.run([self._relay_cmd, "init", "--data", str(self.data)], env=self.env,
                       check=True, capture_output=True)
        (self.data / "relay.toml").write_text(
            f"max_transfer_bytes = {max(size * 2, 1 << 30)}\n"
            f"quota_bytes = {max(size * 8, 1 << 32)}\n", encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = d / "relay.log"
        self._log = open(self._log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*self.prefix, self._relay_cmd, "serve", "--data", str(self.data), "--host",
             "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=self._log, stderr=self._log)
        wait_for(self._log_path, b'"listening"', self.proc, "the relay")
        # With a prefix (ip netns exec) the relay is the prefix's child, or the
        # prefix exec'd into it: /proc/PID is then the relay itself.
        self.pid = self.proc.pid
        self.practice = self._user("bench-practice")
        self.lab = self._user("bench-lab")
        # Each side pins the other as verified (the safety number compared, as a
        # lab does once per practice): receive then takes its one-pass path.
        # An unverified sender is read twice and capped at 100 MiB by default.
        for a, b, their in ((self.practice, "bench-lab", self.lab),
                            (self.lab, "bench-practice", self.practice)):
            number = json.loads(subprocess.run(
                [*self.prefix, self.sealdrop, "whoami", "--json"], env=their, check=True,
                capture_output=True, text=True).stdout)["safety_number"]
            subprocess.run([*self.prefix, self.sealdrop, "contacts", "add", b,
                            "--fingerprint", number], env=a, check=True, capture_output=True)

    def _user(self, handle: str, *, work_factor: int | None = 12) -> dict[str, str]:
        """A profile on this relay. Its identity is sealed with scrypt at 2^12, not
        the default 2^18, so that the transfer is what gets measured: unlocking at
        the default is a fixed cost per command (``unlock_cost`` measures it)."""
        e = {**self.env, "SEALDROP_HOME": str(self.d / handle), "SEALDROP_PASSPHRASE": "bench",
             "SEALDROP_LAYOUT": "{flat}"}
        code = json.loads(subprocess.run(
            [self._relay_cmd, "invite", "create", "--data", str(self.data), "--json"],
            env=self.env, check=True, capture_output=True, text=True).stdout)["code"]
        factor = [] if work_factor is None else ["--work-factor", str(work_factor)]
        subprocess.run([*self.prefix, self.sealdrop, "init", "--relay", self.url, "--handle",
                        handle, "--invite", code, *factor],
                       env=e, check=True, capture_output=True)
        return e

    def unlock_cost(self, rounds: int = 3) -> tuple[Proc, Proc]:
        """One command that only opens a session (``inbox --json``: unlock, one relay
        call), for a profile at the default work factor and for the lab's at 2^12;
        the medians by wall time. Their difference is what every ``send`` and
        ``receive`` of a default profile pays on top of the rounds measured."""
        default = self._user("bench-default", work_factor=None)
        runs: dict[str, list[Proc]] = {"default": [], "low": []}
        for _ in range(rounds):
            for name, env in (("default", default), ("low", self.lab)):
                runs[name].append(measure([self.sealdrop, "inbox", "--json"], env=env,
                                          quiet=True, prefix=self.prefix))
        mid = rounds // 2
        return (sorted(runs["default"], key=lambda p: p.seconds)[mid],
                sorted(runs["low"], key=lambda p: p.seconds)[mid])

    def send(self, path: Path, out: Path, extra: Sequence[str] = ()) -> tuple[Proc, str]:
        """``sealdrop send`` of ``path`` to the lab; the run and the transfer id."""
        p = measure([self.sealdrop, "send", str(path), "--to", "bench-lab",
                     "--again", "--json", *extra],
                    env=self.practice, stdout=out, prefix=self.prefix)
        return p, str(json.loads(out.read_text())["transfer_id"])

    def receive(self, tid: str, into: Path) -> Proc:
        return measure([self.sealdrop, "receive", "--into", str(into), "--", tid],
                       env=self.lab, prefix=self.prefix)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def same_file(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
