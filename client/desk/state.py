"""What one running desk holds: its launch keys, the unlocked identity, the
page's session, the jobs, and the watch thread.

The identity is unlocked once, by the passphrase typed in the page, and stays
in this process (never written, never sent to the page). The page's own
requests (lists, contacts, settings) share one session used from one thread
(``ui``), so the profile's stores see one writer at a time from the page;
sends and receives are jobs with sessions of their own (``jobs``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sealdrop.crypto.identity import SecretIdentity

from ..errors import ClientError
from ..profile.session import Session, session_for
from .guard import Keys
from .jobs import Jobs

T = TypeVar("T")


class Locked(ClientError):
    """The page asked for something before the passphrase was given."""

    def __init__(self) -> None:
        super().__init__("the desk is locked: enter your passphrase first")


@dataclass
class Desk:
    home: Path
    keys: Keys
    identity: SecretIdentity | None = None
    session: Session | None = None
    jobs: Jobs = field(default_factory=Jobs)
    watch_stop: threading.Event | None = None
    watch_events: list[dict[str, Any]] = field(default_factory=list)
    ui: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="desk-ui"))

    def unlocked(self) -> tuple[SecretIdentity, Session]:
        if self.identity is None or self.session is None:
            raise Locked()
        return self.identity, self.session

    async def run(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` on the page's session, in the page's thread."""
        _, session = self.unlocked()
        return await asyncio.get_running_loop().run_in_executor(self.ui, fn, session)

    async def blocking(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the page's thread (profile work before or without a session)."""
        return await asyncio.get_running_loop().run_in_executor(self.ui, fn)

    def job_session(self) -> Session:
        identity, _ = self.unlocked()
        return session_for(self.home, identity)

    def close(self) -> None:
        if self.watch_stop is not None:
            self.watch_stop.set()
        if self.session is not None:
            self.session.close()
        self.ui.shutdown(wait=False, cancel_futures=True)
