"""``sealdrop inbox``: what is waiting on the relay, with what we know of each sender.

The sender handle and sizes come from the relay and are NOT verified yet: only
``receive`` proves who signed a transfer. ``sender_state`` says how the handle
the relay names is pinned locally (verified, unverified, unknown).
"""

from __future__ import annotations

from typing import Any

from .profile import Session
from .receive import Received


def list_inbox(session: Session) -> list[dict[str, Any]]:
    done = Received(session.home).load()
    out = []
    for t in session.relay.inbox():
        contact = session.contacts.get(str(t.get("sender", "")))
        delivery = t.get("delivery") or {}
        if t["id"] in done or delivery.get("verified_at"):
            state = "received"
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
