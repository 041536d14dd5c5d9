"""When a spooled study is sent, and sending it: idle detection, one transfer, retries.

A study is *ready* when no association that stored into it is still open and
nothing touched it for ``idle`` seconds (``is_ready``, a pure function of
timestamps). It is then sealed (its files and note frozen) and sent with the
ordinary send flow as one transfer; its folder is removed only once the relay
confirmed the transfer complete. A failed send (relay down, a recipient's key
changed) stays sealed in the spool and is tried again after a growing pause
(``backoff``); an interrupted one (crash, SIGTERM) is resumed by the send flow's
own record, because paths, recipients and note are the same every time.

After a restart no association is open, and every study's idle time starts
from the restart: a study half-received when the listener died is sent
``idle`` seconds later, with every instance that was acknowledged.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sealdrop.crypto.protocol import DEFAULT_CHUNK_SIZE

from ..errors import ClientError
from .deidentify import DeidOptions
from .inbound import SEALED, DamagedStudy, InboundSpool, Study

MIN_BACKOFF = 5.0
MAX_BACKOFF = 600.0


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How the listener's transfers are sent: the one place send options pass through
    (read by ``listener.send_study``)."""

    expires_in: int | None = None
    allow_unverified: bool = False
    retry_for: float = 60.0  # inside one attempt; then the dispatcher's backoff takes over
    chunk_size: int = DEFAULT_CHUNK_SIZE
    deidentify: DeidOptions | None = None  # --deidentify: each study as de-identified copies


def is_ready(*, last_activity: float, now: float, idle: float, open_associations: int) -> bool:
    """Whether a collecting study may be sealed and sent."""
    return open_associations == 0 and now - last_activity >= idle


def backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failed send of a study in a row."""
    if failures <= 0:
        return 0.0
    return float(min(MIN_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF))


def study_note(aet: str, series: int, instances: int) -> str:
    """The transfer's note: generic on purpose (no patient, no UID, no description)."""
    return (f"DICOM study from {aet} ({series} series, "
            f"{instances} instance{'s' if instances != 1 else ''})")


@dataclass(slots=True)
class _Retry:
    failures: int = 0
    next_at: float = 0.0


@dataclass
class Activity:
    """Which studies open associations touched, and when each study last moved.

    Fed by the SCP's threads, read by the dispatcher: one lock. Times are
    monotonic seconds.
    """

    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: dict[int, set[str]] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)

    def opened(self, assoc: int) -> None:
        with self._lock:
            self._open.setdefault(assoc, set())

    def stored(self, assoc: int, study: str) -> None:
        with self._lock:
            self._open.setdefault(assoc, set()).add(study)
            self._last[study] = self.clock()

    def closed(self, assoc: int) -> None:
        with self._lock:
            now = self.clock()
            for study in self._open.pop(assoc, set()):
                self._last[study] = now  # the idle time starts at the release

    def seen(self, study: str) -> None:
        """A study found in the spool (at start): idle from now."""
        with self._lock:
            self._last.setdefault(study, self.clock())

    def ready(self, study: str, idle: float) -> bool:
        with self._lock:
            users = sum(1 for touched in self._open.values() if study in touched)
            last = self._last.setdefault(study, self.clock())
            return is_ready(last_activity=last, now=self.clock(), idle=idle,
                            open_associations=users)

    def forget(self, study: str) -> None:
        with self._lock:
            self._last.pop(study, None)


class Dispatcher:
    """Seal ready studies and send sealed ones, one at a time, from one thread."""

    def __init__(self, spool: InboundSpool, activity: Activity, *, idle: float,
                 send_study: Callable[[Study], str], log: Callable[[str], None]) -> None:
        self.spool = spool
        self.activity = activity
        self.idle = idle
        self.send_study = send_study
        self.log = log
        self._retries: dict[str, _Retry] = {}
        self._damaged: set[Path] = set()

    def _studies(self) -> list[Study]:
        return self.spool.studies(on_damaged=self._report_damaged)

    def _report_damaged(self, exc: DamagedStudy) -> None:
        # Once per study and process (by its folder, not the message's wording,
        # which changes with the damage): one bad folder must not stop the others.
        if exc.path not in self._damaged:
            self._damaged.add(exc.path)
            self.log(f"{exc}; {exc.hint}")

    def start(self) -> None:
        """Count every study already in the spool as idle from now (a restart)."""
        studies = self._studies()
        for study in studies:
            self.activity.seen(study.name)
        pending = len(studies)
        if pending:
            self.log(f"{pending} stud{'y' if pending == 1 else 'ies'} pending in the spool")

    def tick(self, *, stopping: Callable[[], bool] = lambda: False) -> int:
        """One pass: seal what is ready, send what is due. Returns studies sent."""
        sent = 0
        now = self.activity.clock()
        for study in self._studies():
            if stopping():
                break
            if study.state.status != SEALED:
                if not self.activity.ready(study.name, self.idle):
                    continue
                sealed = self.spool.seal(study, _note,
                                         functools.partial(self.activity.ready, study.name,
                                                           self.idle))
                if sealed is None:
                    continue
                study = sealed
            retry = self._retries.setdefault(study.name, _Retry())
            if retry.next_at > now:
                continue
            if self._send(study, retry):
                sent += 1
        return sent

    def _send(self, study: Study, retry: _Retry) -> bool:
        series, instances = study.counts()
        try:
            relay_id = self.send_study(study)
        except ClientError as exc:
            retry.failures += 1
            delay = backoff(retry.failures)
            retry.next_at = self.activity.clock() + delay
            self.log(f"study from {study.state.route} to {', '.join(study.state.recipients)} "
                     f"not sent ({exc}); kept in the spool, retrying in {delay:.0f}s")
            return False
        self.spool.remove(study)
        self._retries.pop(study.name, None)
        self.activity.forget(study.name)
        self.log(f"sent study from {study.state.route} ({series} series, {instances} "
                 f"instances) to {', '.join(study.state.recipients)}: transfer {relay_id}")
        return True


def _note(study: Study) -> str:
    series, instances = study.counts()
    return study_note(study.state.route, series, instances)
