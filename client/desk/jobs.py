"""The desk's long work (a send, a receive) as jobs the page follows.

Each job runs in a thread of its own with its own session (``session_for``:
the keys unlocked once, a relay client and the profile's stores of its own,
as two CLI processes would have), so the page stays answerable while a CBCT
uploads. The page polls ``/api/jobs``; a job says how far it got, each retry
as a retry (the relay unreachable, the wait), and how it ended: a result, or
the error's sentence and hint. A job's error never carries a traceback; an
unexpected one is named by its type only and logged to the desk's stderr.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ClientError

RUNNING, DONE, FAILED = "running", "done", "failed"
_KEEP = 200  # finished jobs kept for the page; the oldest go first


@dataclass
class Job:
    id: str
    kind: str  # "send" | "receive"
    subject: str  # what the page shows it as: the transfer id, or the recipients
    state: str = RUNNING
    size: int = 0
    done: int = 0
    retry: str | None = None  # the current wait, e.g. "relay unreachable; retrying in 4 s"
    retries: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, n: int) -> None:
        with self.lock:
            self.done += n
            self.retry = None

    def at(self, done: int, total: int) -> None:
        """A download's ``on_progress(done, total)``: where it is, absolutely."""
        with self.lock:
            self.size, self.done, self.retry = total, done, None

    def begin(self, size: int) -> None:
        with self.lock:
            self.size = size

    def waiting(self, seconds: float, why: object) -> None:
        with self.lock:
            self.retries += 1
            self.retry = f"{why}; trying again in {seconds:.0f} s"

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {"id": self.id, "kind": self.kind, "subject": self.subject,
                    "state": self.state, "size": self.size, "done": self.done,
                    "retry": self.retry, "retries": self.retries, "result": self.result,
                    "error": self.error, "started": self.started, "ended": self.ended}


def error_json(exc: BaseException) -> dict[str, Any]:
    """The sentence and hint of a ClientError (its class as ``kind``, for styling)."""
    if isinstance(exc, ClientError):
        return {"message": str(exc), "hint": exc.hint, "kind": type(exc).__name__}
    return {"message": f"an unexpected error stopped it ({type(exc).__name__}); "
                       "the desk's log has the details", "hint": None, "kind": "Unexpected"}


class Jobs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, kind: str, subject: str,
              work: Callable[[Job], dict[str, Any]]) -> Job:
        job = Job(secrets.token_hex(8), kind, subject)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.state != RUNNING]
            for old in finished[:max(0, len(finished) - _KEEP)]:
                del self._jobs[old.id]
        threading.Thread(target=self._run, args=(job, work), name=f"desk-{kind}",
                         daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work: Callable[[Job], dict[str, Any]]) -> None:
        try:
            result = work(job)
        except BaseException as exc:  # noqa: BLE001 - every end is reported to the page
            if not isinstance(exc, ClientError):
                traceback.print_exc(file=sys.stderr)
            with job.lock:
                job.state, job.error, job.ended, job.retry = FAILED, error_json(exc), \
                    time.time(), None
            return
        with job.lock:
            job.state, job.result, job.ended, job.retry = DONE, result, time.time(), None

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def running(self, kind: str, subject: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values()
                         if j.kind == kind and j.subject == subject and j.state == RUNNING),
                        None)
