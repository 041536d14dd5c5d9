"""What a person is told when a transfer stops midway: how much is safe, how to resume.

``TransferWatch`` follows one send or receive (fed by the same callbacks as the
progress bar) and turns its interruptions into sentences:

- Ctrl-C: ``interrupted: run the same command again to resume; 412.0 MB of
  1.2 GB already on the relay`` (``errors.Interrupted``, exit 130);
- the relay gone for longer than the retries last: the relay's own sentence
  (it names the URL), with "Your upload is safe: run the same command again to
  resume." added to the hint;
- each retry wait: the progress bar's retry line (``progress.retry_line``).

Only once the transfer started: before that nothing is safe to speak of.

``with_retries`` gives ``receive`` what the upload lanes give ``send``: a
download cut midway (the relay restarted, the network dropped) is tried again,
resuming from what the spool holds, for up to ``SEALDROP_RETRY_FOR`` seconds
(300 by default). Only once bytes arrived, and only when the relay could not
be reached (no HTTP answer): a relay down from the start, or one that answers
an error, is told at once, as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import ClientError, Interrupted, join_hints
from ..progress import Progress
from ..relay_api import RelayError, RelayRateLimited, RelayUnavailable
from .format import human_size

_RESUME = "run the same command again to resume"
DEFAULT_RETRY_FOR = 300.0
T = TypeVar("T")


def retry_reason(exc: RelayError) -> str:
    if isinstance(exc, RelayRateLimited):
        return "relay busy"
    if exc.status >= 500:
        return f"relay answered HTTP {exc.status}"
    return "relay unreachable"


class TransferWatch:
    """``upload``: bytes go to the relay; otherwise they come from it (a download)."""

    def __init__(self, *, upload: bool) -> None:
        self._upload = upload
        self._lock = threading.Lock()
        self.started = False
        self.size = 0
        self.done = 0
        self.bar: Progress | None = None

    # -- fed like the progress bar (from upload threads too) ---------------------

    def start(self, size: int) -> None:
        with self._lock:
            self.started, self.size = True, size

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n

    def set(self, done: int, total: int) -> None:
        with self._lock:
            self.started, self.done, self.size = True, done, total

    def retry(self, seconds: float, exc: RelayError) -> None:
        if self.bar is not None:
            self.bar.retrying(seconds, retry_reason(exc),
                              "upload safe" if self._upload else "download kept")

    # -- the sentences -----------------------------------------------------------

    def held(self) -> str:
        with self._lock:
            done, size = min(self.done, self.size), self.size
        where = "already on the relay" if self._upload else "already downloaded, kept"
        return f"{human_size(done)} of {human_size(size)} {where}"

    @contextlib.contextmanager
    def resumable(self) -> Iterator[TransferWatch]:
        try:
            yield self
        except Interrupted:
            raise
        except KeyboardInterrupt as exc:
            if not self.started:
                raise
            raise Interrupted(f"{_RESUME}; {self.held()}") from exc
        except RelayUnavailable as exc:
            if self.started and _RESUME not in (exc.hint or ""):
                safe = ("Your upload is safe" if self._upload
                        else "What arrived is kept")
                exc.hint = join_hints(exc.hint, f"{safe}: {_RESUME}.")
            raise


def retry_for_from_env() -> float:
    """Seconds to ride out an outage (``SEALDROP_RETRY_FOR``, as ``send --retry-for``)."""
    text = os.environ.get("SEALDROP_RETRY_FOR", "").strip()
    if not text:
        return DEFAULT_RETRY_FOR
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise ClientError(f"SEALDROP_RETRY_FOR must be seconds between 0 and 86400, "
                          f"not {text[:20]!r}")
    return value


def with_retries(call: Callable[[], T], watch: TransferWatch, *, retry_for: float,
                 stop: Callable[[], bool]) -> T:
    """``call()``, again after a wait while a started download cannot reach the relay.

    ``stop()``: a signal came (Ctrl-C outside an interruptible phase only sets a
    flag): the wait ends with KeyboardInterrupt, which ``resumable`` words.
    """
    deadline = time.monotonic() + retry_for
    delay = 0.5
    while True:
        try:
            return call()
        except RelayUnavailable as exc:
            wait = min(delay, 30.0)
            if not watch.started or exc.status != 0 or time.monotonic() + wait > deadline:
                raise
            watch.retry(wait, exc)
            end = time.monotonic() + wait
            while time.monotonic() < end:
                if stop():
                    raise KeyboardInterrupt("stopping") from exc
                time.sleep(0.1)
            delay *= 2
