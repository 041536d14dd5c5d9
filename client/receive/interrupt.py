"""SIGTERM and SIGINT during a receive: stop, and leave nothing unverified behind.

Python turns SIGINT into KeyboardInterrupt, so every ``finally`` runs: the
staging folder is removed, half-placed files are moved back. SIGTERM (systemd
stopping ``watch``, ``kill``, a shutdown) would end the process on the spot,
leaving the staging folder. ``Signals`` makes both raise KeyboardInterrupt while
a receive is running, and only set ``stop`` between two (so ``watch`` finishes
its loop iteration and exits 0). The interrupted download stays in the spool
(ciphertext) and resumes on the next run. SIGKILL cannot be caught: the next
receive sweeps what it left (``stagearea.sweep``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for num, handler in self._old.items():
                signal.signal(num, handler)  # type: ignore[arg-type]
            self._old.clear()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """While inside, a signal interrupts (KeyboardInterrupt) rather than waits."""
        if self.stop.is_set():
            raise KeyboardInterrupt("stopping")
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
