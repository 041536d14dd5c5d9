"""``sealdrop retract ID``: take a sent transfer back from the relay.

The relay deletes the transfer (``DELETE``, sender only): a recipient who has
not downloaded it never sees it, and one who downloads at that moment is cut
off (the download fails; nothing unverified is placed). A recipient who already
has it keeps it: retracting cannot unsend what was received, and the answer
says who had it. The sender's record (``profile.sent``) says when it was
retracted, so ``status`` keeps showing it as "retracted" once the relay has
forgotten it. An interrupted send of it is forgotten too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import ClientError
from ..profile.sent import SentCase, SentSummaries
from ..profile.session import Session
from ..relay_api import RelayNotFound
from . import deidwork


@dataclass(frozen=True, slots=True)
class Retracted:
    relay_id: str
    at: int
    already_received_by: tuple[str, ...]  # recipients who had verified it before


def retract(session: Session, relay_id: str, *, now: int | None = None) -> Retracted:
    at = int(time.time()) if now is None else now
    sent = SentSummaries(session.home, session.identity)
    try:
        info = session.relay.status(relay_id)
    except RelayNotFound:
        raise ClientError(
            f"the relay has no transfer {relay_id} of yours (expired, already retracted, or "
            "never sent from this account)",
            hint="`sealdrop status` lists what you sent") from None
    received = tuple(str(r.get("handle")) for r in info.get("recipients", [])
                     if isinstance(r, dict) and r.get("verified_at") is not None)
    session.relay.delete(relay_id)
    if sent.update(relay_id, retracted_at=at) is None:
        # Sent before this profile kept records: keep what the relay said.
        sent.save_case(SentCase(
            relay_id=relay_id, created=int(info.get("created_at") or 0), retracted_at=at,
            recipients=tuple(str(r.get("handle")) for r in info.get("recipients", [])
                             if isinstance(r, dict))))
    for record in session.outbox.records():
        if record.relay_id == relay_id:
            session.outbox.remove(relay_id)
            if record.deid is not None:
                deidwork.remove(session.home, record.job_key)
    return Retracted(relay_id, at, received)
