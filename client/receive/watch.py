"""``sealdrop watch``: receive transfers as they arrive, until stopped.

A loop: flush pending acks, list the inbox (every page, verified contacts'
transfers first: ``inbox.walk``), receive what is new, sleep. The
relay being down, restarting or unreachable is not an error here: the loop
backs off exponentially (``interval`` doubling up to ``max_backoff``) and
carries on when the relay is back. No single transfer can stop the loop: a
transfer refused (tampered, malformed, replayed, unverified sender) is
reported once and recorded (``refused``), so neither this process nor the
next one takes it again; it stays in the inbox for a person to look at. One
that failed for a local reason (name collision, full disk) is not retried by
this process. Whatever else goes wrong in one round is reported and the loop
backs off; only the relay refusing our key (RelayAuthError) ends it.
SIGTERM and Ctrl-C stop the loop: between two transfers at once; while one
downloads or stages, at once after removing its staging folder; while one is
being placed, once it is placed (``interrupt``). Either way it exits 0.

With a ``forwarder`` (``--to-pacs``, ``--to-dicomweb``) each transfer is
forwarded into the PACS once placed, and every round first retries the
pending forwards whose wait is over (``receive.forward``: the wait doubles per
failed round up to ``max_backoff``). A forward that fails is reported
(``on_forward``) and never stops the loop; the received files stay placed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ClientError, LogVerificationError
from ..profile.session import Session
from ..relay_api import RelayAuthError, RelayTLSError, RelayUnavailable
from .forward import Forwarder, ForwardReport
from .inbox import pending
from .interrupt import Signals
from .transfer import AlreadyReceivedError, ReceiveResult, flush_acks, receive_one


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
    forwarder: Forwarder | None = None,
    on_forward: Callable[[ForwardReport], None] | None = None,
    on_forward_error: Callable[[ClientError], None] | None = None,
    **receive_options: Any,
) -> None:
    """Receive into ``into`` until ``stop`` is set, or SIGTERM or SIGINT arrives.

    ``on_received``, ``on_refused(relay_id, error)`` and ``on_offline(message,
    delay)`` report each event and the loop carries on; only the relay
    refusing our key (RelayAuthError) ends it, raised to the caller.
    ``receive_options`` go to ``receive_one`` (keep_refused, max_unverified_size,
    staging, layout: each case into its folder, as ``receive`` does).
    """
    signals = Signals(stop)
    skip: set[str] = set()
    delay = interval

    def forward(run: Callable[[], list[ForwardReport]]) -> None:
        try:
            reports = run()
        except Exception as exc:  # noqa: BLE001 - a forward never ends watch
            err = exc if isinstance(exc, ClientError) else ClientError(
                f"forwarding failed unexpectedly ({type(exc).__name__}); retried next round")
            if on_forward_error is not None:
                on_forward_error(err)
            return
        if on_forward is not None:
            for rep in reports:
                on_forward(rep)

    with signals.installed():
        try:
            first = True  # open_session followed the log just before the first round
            while not signals.stop.is_set():
                try:
                    if not first:
                        session.log.advance()  # the relay's log, checked every round
                    first = False
                    flush_acks(session)
                    if forwarder is not None:
                        forward(lambda: forwarder.run_pending(due=True,
                                                              wait=signals.stop.wait))
                    for t in pending(session):
                        rid = str(t["id"])
                        if signals.stop.is_set():
                            break
                        if rid in skip:
                            continue
                        try:
                            r = receive_one(session, rid, into,
                                            allow_unverified=allow_unverified,
                                            **receive_options)
                            on_received(r)
                            if forwarder is not None:
                                forward(lambda r=r: forwarder.after_receive(  # type: ignore[misc]
                                    r, wait=signals.stop.wait))
                        except (RelayUnavailable, RelayAuthError, RelayTLSError):
                            raise  # the relay's trouble, not this transfer's
                        except LogVerificationError:
                            raise  # the relay's log does not check out: watch stops, loudly
                        except AlreadyReceivedError:
                            skip.add(rid)  # placed by another process meanwhile: not news
                        except ClientError as exc:
                            skip.add(rid)
                            on_refused(rid, exc)
                        except Exception as exc:  # noqa: BLE001 - one transfer never ends watch
                            skip.add(rid)
                            on_refused(rid, ClientError(
                                f"transfer {rid} failed unexpectedly ({type(exc).__name__}); "
                                "skipped"))
                    delay = interval
                except (RelayAuthError, LogVerificationError):
                    raise
                except RelayUnavailable as exc:
                    delay = min(max(delay * 2, interval), max_backoff)
                    on_offline(str(exc), delay)
                except ClientError as exc:
                    # e.g. a damaged local file or a relay answer we cannot read:
                    # report and back off rather than exit and be restarted in a loop.
                    delay = min(max(delay * 2, interval), max_backoff)
                    on_offline(str(exc), delay)
                signals.stop.wait(delay)
        except KeyboardInterrupt:
            return  # a signal during a receive: its staging is gone, stop cleanly
