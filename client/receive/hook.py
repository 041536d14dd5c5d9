"""``watch --on-receive CMD``: run the lab's own command once per verified case.

For a desktop notification, a mail to the front desk or a LIMS hook. The
command runs after a transfer was verified and placed, never before, and:

- without a shell: ``CMD`` is split like a shell would (``shlex``) and run
  directly, so nothing the sender wrote (note, names, label) is ever parsed
  by a shell. Who wants one writes ``sh -c '…'`` themselves; the case's
  fields are in the environment (``$SEALDROP_SENDER``), never in ``CMD``.
- with the case in its environment (``SEALDROP_*``, below), patient-free
  unless ``phi``: the patient's name, the study date, the note's first line,
  the sender's label and the case folder's path (named from the sender and
  label) only with ``--on-receive-phi``.
- with stdin closed (``/dev/null``), stdout discarded, and the last bytes of
  its stderr kept for the log line.
- in its own process group, killed whole after ``timeout`` seconds, or when
  watch is asked to stop (SIGTERM, Ctrl-C), so that a hung command stops
  neither the loop nor the service.

A failure, a hang or a command that cannot start never stops watch: it
becomes a ``HookOutcome``, which the caller logs in one line (relay id, exit
status, the stderr tail; no field of the case). The secrets watch was started
with (``SEALDROP_PASSPHRASE``, ``SEALDROP_PASSPHRASE_FILE``) are not passed on.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from ..dicom.display import iso_date, phi_free, read_studies
from ..errors import ClientError
from .interrupt import stop_requested
from .transfer import ReceiveResult

DEFAULT_TIMEOUT = 60.0
STDERR_TAIL = 300  # characters of the command's stderr in the log line
MAX_FIELD = 500  # characters of one sender-written field in the environment
_POLL = 0.2  # seconds between checks for a stop request while the command runs
_REAP = 5.0  # seconds to wait for a killed command to be reaped

# Every variable the hook sets; any of them inherited from watch's own
# environment is dropped first, so a field left out (no PHI) is truly absent.
PLAIN_FIELDS = ("SEALDROP_TRANSFER_ID", "SEALDROP_SENDER", "SEALDROP_SENDER_VERIFIED",
                "SEALDROP_INTO", "SEALDROP_FILE_COUNT", "SEALDROP_TOTAL_SIZE",
                "SEALDROP_MODALITIES", "SEALDROP_IMAGE_COUNT", "SEALDROP_STUDY_COUNT")
PHI_FIELDS = ("SEALDROP_PATIENT_NAME", "SEALDROP_STUDY_DATE", "SEALDROP_NOTE",
              "SEALDROP_LABEL", "SEALDROP_CASE_FOLDER")
# Secrets of the watch process: the hook is the lab's program, not ours.
WITHHELD = ("SEALDROP_PASSPHRASE", "SEALDROP_PASSPHRASE_FILE")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hook:
    """What ``--on-receive``, ``--on-receive-timeout`` and ``--on-receive-phi`` chose."""

    argv: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT
    phi: bool = False


def parse_command(command: str) -> tuple[str, ...]:
    """``CMD`` split as a shell would, its program checked now rather than at the first case."""
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise ClientError(f"--on-receive: cannot split the command ({exc})",
                          hint="quote as in a shell: --on-receive 'notify-send \"new case\"'"
                          ) from exc
    if not argv:
        raise ClientError("--on-receive is empty", hint="give a program to run per case")
    program = argv[0]
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise ClientError(f"--on-receive: {program} is not an executable file",
                              hint=f"check the path, and chmod +x {program}")
    elif shutil.which(program) is None:
        raise ClientError(f"--on-receive: no program named {program!r} on PATH",
                          hint="give its full path, or use sh -c '…' for a shell command")
    return argv


# -- what the command is told -------------------------------------------------


def case_folder(r: ReceiveResult) -> Path:
    """The folder the case was placed in (``into`` itself under the flat layout)."""
    return r.folder


def case_label(r: ReceiveResult) -> str:
    """The sender's label for the case, from its verified case card ("" if none)."""
    return r.label


def _field(text: str) -> str:
    """Sender-written text made safe for an environment variable and a script's echo:
    no NUL (which the OS refuses) and no control character (which a terminal obeys)."""
    text = unicodedata.normalize("NFC", text)[:MAX_FIELD]
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def case_fields(r: ReceiveResult, *, phi: bool) -> dict[str, str]:
    """The case as ``SEALDROP_*`` variables; patient-identifying ones only with ``phi``."""
    files = r.manifest.files
    safe = phi_free(r.manifest.dicom)
    studies = safe.get("studies", []) if isinstance(safe, dict) else []
    modalities = dict.fromkeys(m for s in studies for m in s["modalities"] if m and m != "?")
    out = {
        "SEALDROP_TRANSFER_ID": _field(r.relay_id),
        "SEALDROP_SENDER": _field(r.sender),
        "SEALDROP_SENDER_VERIFIED": "true" if r.sender_verified else "false",
        "SEALDROP_INTO": str(r.into),
        "SEALDROP_FILE_COUNT": str(len(files)),
        "SEALDROP_TOTAL_SIZE": str(sum(f.size for f in files)),
        "SEALDROP_MODALITIES": ",".join(modalities),
        "SEALDROP_IMAGE_COUNT": str(sum(int(s["instance_count"]) for s in studies)),
        "SEALDROP_STUDY_COUNT": str(len(studies)),
    }
    if phi:
        views = read_studies(r.manifest.dicom) or []
        out |= {
            # Several studies (rare: one case, one patient) are joined with "; ".
            "SEALDROP_PATIENT_NAME": _field("; ".join(
                dict.fromkeys(v.patient_name for v in views if v.patient_name))),
            "SEALDROP_STUDY_DATE": _field("; ".join(
                dict.fromkeys(iso_date(v.study_date) for v in views if v.study_date))),
            "SEALDROP_NOTE": _field(_first_line(r.manifest.note)),
            "SEALDROP_LABEL": _field(case_label(r)),
            "SEALDROP_CASE_FOLDER": str(case_folder(r)),
        }
    return out


def hook_env(r: ReceiveResult, *, phi: bool, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (watch's environment: PATH, DISPLAY…) without our secrets and fields,
    plus the case."""
    drop = set(PLAIN_FIELDS) | set(PHI_FIELDS) | set(WITHHELD)
    env = {k: v for k, v in base.items() if k not in drop}
    return env | case_fields(r, phi=phi)


# -- running it ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HookOutcome:
    relay_id: str
    status: int | None  # the exit status; None if it did not start or was killed
    seconds: float
    timed_out: bool = False
    stopped: bool = False  # killed because watch was asked to stop
    not_started: str = ""  # why it could not start
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0

    def line(self, timeout: float) -> str:
        """One line for the log: what happened, never a field of the case."""
        what = f"on-receive command for {self.relay_id}"
        if self.not_started:
            text = f"{what} could not start: {self.not_started}"
        elif self.timed_out:
            text = f"{what} killed after {_secs(timeout)} (--on-receive-timeout)"
        elif self.stopped:
            text = f"{what} killed: watch is stopping"
        elif self.status is not None and self.status < 0:
            text = f"{what} ended by signal {-self.status} after {_secs(self.seconds)}"
        elif self.ok:
            text = f"{what} done in {_secs(self.seconds)}"
        else:
            text = f"{what} failed with exit status {self.status} after {_secs(self.seconds)}"
        return f"{text}; stderr: {self.stderr_tail}" if self.stderr_tail else text

    def to_json(self) -> dict[str, object]:
        return {"transfer_id": self.relay_id, "ok": self.ok, "exit_status": self.status,
                "timed_out": self.timed_out, "stopped": self.stopped,
                "not_started": self.not_started or None, "stderr_tail": self.stderr_tail}


def _secs(x: float) -> str:
    return f"{x:.1f} s" if x < 10 else f"{x:.0f} s"


class _Tail:
    """Reads a pipe to its end in a thread, keeping only its last bytes: a command
    writing gigabytes to stderr costs no memory, and never blocks on a full pipe.

    The thread owns the pipe and closes it at its end: a background child of
    the command may keep it open long after the command exited, and closing a
    buffered pipe under a blocked reader would block the closer.
    """

    def __init__(self, pipe: IO[bytes], keep: int) -> None:
        self._pipe = pipe
        self._keep = keep
        self.data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._pipe.fileno()
        try:
            while chunk := os.read(fd, 65536):
                with self._lock:
                    self.data += chunk
                    if len(self.data) > 2 * self._keep:
                        del self.data[: len(self.data) - self._keep]
        except OSError:
            pass
        finally:
            self._pipe.close()

    def text(self, wait: float) -> str:
        # A background child of the command may hold the pipe open: wait a
        # little for the end, then take what arrived.
        self._thread.join(wait)
        with self._lock:
            raw = bytes(self.data[-self._keep:]).decode("utf-8", "replace")
        one = " | ".join(line.strip() for line in raw.strip().splitlines() if line.strip())
        return _field(one[-STDERR_TAIL:])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_hook(hook: Hook, r: ReceiveResult, *, base_env: Mapping[str, str] | None = None,
             stop: Callable[[], bool] = stop_requested) -> HookOutcome:
    """Run ``hook`` for the case ``r``; never raises but for KeyboardInterrupt (after
    killing the command)."""
    env = hook_env(r, phi=hook.phi, base=os.environ if base_env is None else base_env)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv from the user's own option, no shell
            list(hook.argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env, cwd=r.into, start_new_session=True)
    except OSError as exc:
        return HookOutcome(relay_id=r.relay_id, status=None, seconds=0.0,
                           not_started=_field(f"{hook.argv[0]}: {exc.strerror or exc}"))
    tail = _Tail(cast(IO[bytes], proc.stderr), 4 * STDERR_TAIL)  # stderr=PIPE: never None
    timed_out = stopped = False
    deadline = start + hook.timeout
    try:
        while True:
            try:
                proc.wait(timeout=max(0.0, min(_POLL, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    timed_out = True
                elif stop():
                    stopped = True
                else:
                    continue
                _kill_group(proc)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_REAP)
                break
    except BaseException:
        _kill_group(proc)  # Ctrl-C while it runs: the command goes too
        raise
    stderr = tail.text(wait=1.0)
    killed = timed_out or stopped
    return HookOutcome(relay_id=r.relay_id, status=None if killed else proc.returncode,
                       seconds=time.monotonic() - start, timed_out=timed_out,
                       stopped=stopped, stderr_tail=stderr)
