"""The desk's watch: with "watch" on in Settings, it keeps receiving into the
receive folder as ``sealdrop watch`` does (same loop, same checks), in a
thread of the desk, and keeps its last events for the page.

Events carry the transfer id, the sender and the outcome; never file names or
patient data (the desk's stderr is a log like any other).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ClientError
from ..profile.desksettings import load_settings
from ..receive.layout import Layout
from .state import Desk

_KEEP = 50


def _event(desk: Desk, **fields: Any) -> None:
    desk.watch_events.append({"at": int(time.time()), **fields})
    del desk.watch_events[:-_KEEP]


def start_watch(desk: Desk) -> None:
    if desk.watch_stop is not None or desk.identity is None:
        return
    settings = load_settings(desk.home)
    if settings.receive_folder is None:
        _event(desk, event="not_started", message="set a receive folder first")
        return
    stop = threading.Event()
    desk.watch_stop = stop
    into, layout = Path(settings.receive_folder), Layout.parse(settings.layout)

    def run() -> None:
        from ..receive.watch import watch
        from .api import pacs_forwarder

        try:
            with desk.job_session() as session:
                watch(session, into, interval=15.0, max_backoff=120.0, stop=stop, layout=layout,
                      forwarder=pacs_forwarder(desk),
                      on_forward=lambda rep: _event(desk, event="forwarded" if rep.done
                                                    else "forward_pending",
                                                    transfer_id=rep.relay_id,
                                                    message=f"{sum(rep.stored)} of "
                                                    f"{len(rep.files)} images stored"),
                      on_forward_error=lambda exc: _event(desk, event="forward_failed",
                                                          message=str(exc)),
                      on_received=lambda r: _event(desk, event="received",
                                                   transfer_id=r.relay_id, sender=r.sender),
                      on_refused=lambda tid, exc: _event(desk, event="refused",
                                                         transfer_id=tid, message=str(exc)),
                      on_offline=lambda msg, delay: _event(desk, event="offline",
                                                           message=msg, retry_in=delay))
        except ClientError as exc:
            _event(desk, event="stopped", message=str(exc), hint=exc.hint)
        finally:
            if desk.watch_stop is stop:
                desk.watch_stop = None

    threading.Thread(target=run, name="desk-watch", daemon=True).start()


def stop_watch(desk: Desk) -> None:
    if desk.watch_stop is not None:
        desk.watch_stop.set()
        desk.watch_stop = None
