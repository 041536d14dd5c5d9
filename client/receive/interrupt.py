"""SIGTERM and SIGINT during a receive: stop, and leave nothing unverified behind.

Python turns SIGINT into KeyboardInterrupt, so every ``finally`` runs: the
staging folder is removed. SIGTERM (systemd stopping ``watch``, ``kill``, a
shutdown) would end the process on the spot, leaving the staging folder.
While ``Signals`` is installed, both only set ``stop``, except inside an
``interruptible`` phase (downloading, reading, staging), where they raise
KeyboardInterrupt at once. Placing, pinning, recording and telling the relay
are not interruptible: a transfer half-committed would be placed but refused
as a replay next time, so a signal then waits for the transfer to finish and
the caller stops after it (``stop_requested``). An interrupted download stays
in the spool (ciphertext) and resumes on the next run. SIGKILL cannot be
caught: the next receive sweeps what it left (``stagearea.sweep``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_active: Signals | None = None


class Signals:
    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self._busy = 0
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
        if self._busy:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        """Handle SIGTERM and SIGINT (main thread only: elsewhere Python cannot)."""
        global _active
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = _active
        for sig in _SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        _active = self
        try:
            yield self
        finally:
            _active = previous
            for num, handler in self._old.items():
                signal.signal(num, handler)  # type: ignore[arg-type]
            self._old.clear()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        if self.stop.is_set():
            raise KeyboardInterrupt("stopping")
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """A phase a signal may cut short (KeyboardInterrupt), e.g. reading into staging."""
    if _active is None:
        yield
        return
    with _active.busy():
        yield


def stop_requested() -> bool:
    """Whether a signal asked the running command to stop (after the current transfer)."""
    return _active is not None and _active.stop.is_set()
