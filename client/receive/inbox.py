"""What is waiting on the relay: ``sealdrop inbox``, and what ``receive --all`` takes.

The sender handle and sizes come from the relay and are NOT verified yet: only
``receive`` proves who signed a transfer. ``sender_state`` says how the handle
the relay names is pinned locally (verified, unverified, unknown). A transfer
is "received" if this profile's receipts hold it or the relay recorded it
verified (by another device of the same account, or an ack not yet flushed).
A transfer refused here is "refused" (``refused``), and ``pending`` leaves it
out unless it was refused for its sender and that sender is now verified.
"""

from __future__ import annotations

from typing import Any

from ..profile.session import Session
from .refused import Reason, RefusedStore


def _retry(session: Session, entry: dict[str, Any]) -> bool:
    """Whether a refused transfer deserves another try: its sender is verified now."""
    if entry.get("reason") != Reason.SENDER.value:
        return False
    contact = session.contacts.get(str(entry.get("sender", "")))
    return contact is not None and contact.verified


def list_inbox(session: Session) -> list[dict[str, Any]]:
    """One row per transfer on the relay for us, with its state here."""
    done = session.receipts.load()
    refused = RefusedStore(session.home).load()
    out = []
    for t in session.relay.inbox():
        contact = session.contacts.get(str(t.get("sender", "")))
        delivery = t.get("delivery") or {}
        if t["id"] in done or delivery.get("verified_at"):
            state = "received"
        elif t["id"] in refused:
            state = "refused"
        elif delivery.get("downloaded_at"):
            state = "downloaded"
        else:
            state = "new"
        out.append({
            "id": t["id"],
            "sender": t.get("sender"),
            "sender_state": (contact.state.value if contact is not None else "unknown"),
            "size": t.get("size"),
            "sent_at": t.get("completed_at") or t.get("created_at"),
            "expires_at": t.get("expires_at"),
            "state": state,
        })
    return out


def pending(session: Session) -> list[dict[str, Any]]:
    """Inbox entries not yet received by this profile, nor refused here for good."""
    done = session.receipts.load()
    refused = RefusedStore(session.home).load()
    out = []
    for t in session.relay.inbox():
        delivery = t.get("delivery") or {}
        if t["id"] in done or delivery.get("verified_at"):
            continue
        if t["id"] in refused and not _retry(session, refused[t["id"]]):
            continue
        out.append(t)
    return out
