"""``sealdrop dicom-listen``: the SCP, the spool and the dispatcher, run until stopped.

    scanner ──C-STORE──▶ scp (pynetdicom threads) ──▶ inbound spool (durable)
                                                        │ idle, released
                         dispatcher (main thread) ◀─────┘
                           └─▶ send.flow.send: one transfer per study

SIGTERM or Ctrl-C: the listening socket closes at once, stores in flight get
``grace`` seconds to finish (then their associations are aborted: what was not
acknowledged the scanner sends again), a send in progress is interrupted (its
send record resumes it next time), and the command returns. Pending studies
stay in the spool for the next start.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClientError, ContactError, UnknownContactError
from ..profile.layout import DICOM_LISTEN_DIR
from ..profile.session import Session
from ..receive.interrupt import Signals
from ..send.flow import send
from .dispatch import Activity, Dispatcher, SendOptions
from .inbound import InboundSpool, Study
from .routes import RouteTable
from .scp import StorageScp

_TROUBLE_PAUSE = 30.0


@dataclass(frozen=True, slots=True)
class ListenConfig:
    host: str
    port: int
    aet: str
    table: RouteTable
    spool: Path
    idle: float
    min_free: int
    options: SendOptions
    tls: ssl.SSLContext | None = None
    grace: float = 30.0
    tick: float = 1.0


def default_spool(home: Path) -> Path:
    """The spool unless --spool says otherwise: in the profile folder."""
    return Path(home) / DICOM_LISTEN_DIR


def check_recipients(session: Session, table: RouteTable, *, allow_unverified: bool) -> None:
    """Refuse to start with a route to someone the user never pinned (or verified)."""
    for handle in table.handles():
        contact = session.contacts.get(handle)
        if contact is None and not allow_unverified:
            raise UnknownContactError(
                f"{handle!r}, a recipient of a route, is not among your contacts",
                hint=f"add and verify them first: sealdrop contacts add {handle} "
                "--fingerprint SAFETY_NUMBER")
        if contact is not None and not contact.verified and not allow_unverified:
            raise ContactError(
                f"contact {handle!r}, a recipient of a route, is not verified",
                hint=f"compare safety numbers, then sealdrop contacts verify {handle} NUMBER")


def send_study(session: Session, study: Study, options: SendOptions,
               warn: Callable[[str], None]) -> str:
    """Send one sealed study with the ordinary send flow; the relay's transfer id.

    Paths, recipients and note come from the sealed study and never change,
    so the send flow resumes an interrupted send of it byte for byte.
    """
    result = send(session, [study.files], list(study.state.recipients),
                  note=study.state.note, expires_in=options.expires_in,
                  allow_unverified=options.allow_unverified, retry_for=options.retry_for,
                  chunk_size=options.chunk_size, warn=warn, deidentify=options.deidentify,
                  # A scanner that sends a study again means it: no person to ask.
                  again=True)
    if result.resumed:
        warn(f"resumed the interrupted send of a study from {study.state.route} "
             f"(transfer {result.relay_id}, {result.skipped} bytes already on the relay)")
    return result.relay_id


def run(session: Session, config: ListenConfig, *, log: Callable[[str], None],
        on_listening: Callable[[int], None] = lambda port: None,
        stop: threading.Event | None = None) -> None:
    """Listen until SIGTERM/SIGINT (or ``stop``); returns once stopped cleanly."""
    spool = InboundSpool(config.spool.absolute())
    activity = Activity()
    signals = Signals(stop)
    with spool.owned(), signals.installed():
        dispatcher = Dispatcher(
            spool, activity, idle=config.idle, log=log,
            send_study=lambda study: _interruptible(signals, session, study, config, log))
        dispatcher.start()
        scp = StorageScp(config.table, spool, activity, aet=config.aet,
                         min_free=config.min_free, log=log)
        scp.start(config.host, config.port, config.tls)
        try:
            on_listening(scp.port)
            while not signals.stop.is_set():
                pause = config.tick
                try:
                    dispatcher.tick(stopping=signals.stop.is_set)
                except KeyboardInterrupt:
                    break  # a signal during a send: its record resumes it next time
                except (ClientError, OSError) as exc:
                    # The spool folder itself failing (permissions, disk): the
                    # SCP answers A700 meanwhile; report and try again, slowly.
                    log(f"cannot look after the spool: {exc}")
                    pause = max(pause, _TROUBLE_PAUSE)
                signals.stop.wait(pause)
        finally:
            scp.stop_accepting()
            deadline = time.monotonic() + config.grace
            while scp.open_associations() and time.monotonic() < deadline:
                time.sleep(0.05)
            if scp.open_associations():
                log(f"{scp.open_associations()} association(s) still open after "
                    f"{config.grace:.0f}s: aborted (the sender resends what was not confirmed)")
                scp.abort_all()
        pending = len(spool.studies(on_damaged=lambda exc: None))
        log(f"stopped; {pending} stud{'y' if pending == 1 else 'ies'} left in the spool")


def _interruptible(signals: Signals, session: Session, study: Study, config: ListenConfig,
                   log: Callable[[str], None]) -> str:
    # Only the send itself is cut short by a signal: sealing and removing a
    # study are quick and must not stop half-way.
    with signals.busy():
        return send_study(session, study, config.options, log)
