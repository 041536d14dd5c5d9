"""``sealdrop watch``: receive transfers as they arrive, until stopped.

A loop: flush pending acks, list the inbox (every page, verified contacts'
transfers first: ``inbox.walk``), receive what is new, sleep. The
relay being down, restarting or unreachable is not an error here: the loop
backs off exponentially (``interval`` doubling up to ``max_backoff``) and
carries on when the relay is back. A transfer refused (tampered, replayed,
unverified sender, name collision) is reported once and not retried by this
process; it stays in the inbox for a person to look at.
SIGTERM and Ctrl-C stop the loop between two transfers.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import ClientError
from ..profile.session import Session
from ..relay_api import RelayAuthError, RelayUnavailable
from .inbox import pending
from .transfer import ReceiveResult, flush_acks, receive_one


def watch(
    session: Session,
    into: Path,
    *,
    interval: float = 30.0,
    max_backoff: float = 300.0,
    allow_unverified: bool = False,
    on_received: Callable[[ReceiveResult], None],
    on_refused: Callable[[str, ClientError], None],
    on_offline: Callable[[str, float], None],
    stop: threading.Event | None = None,
) -> None:
    """Receive into ``into`` until ``stop`` is set, or SIGTERM or SIGINT arrives.

    ``on_received``, ``on_refused(relay_id, error)`` and ``on_offline(message,
    delay)`` report each event and the loop carries on; only the relay
    refusing our key (RelayAuthError) ends it, raised to the caller.
    """
    stop = stop or threading.Event()
    old: dict[signal.Signals, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    refused: set[str] = set()
    delay = interval
    try:
        while not stop.is_set():
            try:
                flush_acks(session)
                for t in pending(session):
                    if stop.is_set() or t["id"] in refused:
                        continue
                    try:
                        on_received(receive_one(session, t["id"], into,
                                                allow_unverified=allow_unverified))
                    except (RelayUnavailable, RelayAuthError):
                        raise  # the relay's trouble, not this transfer's
                    except ClientError as exc:
                        refused.add(t["id"])
                        on_refused(t["id"], exc)
                delay = interval
            except RelayUnavailable as exc:
                delay = min(max(delay * 2, interval), max_backoff)
                on_offline(str(exc), delay)
            stop.wait(delay)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

