"""What is waiting on the relay: ``sealdrop inbox``, and what ``receive --all`` takes.

The sender handle and sizes come from the relay and are NOT verified yet: only
``receive`` proves who signed a transfer. ``sender_state`` says how the handle
the relay names is pinned locally (verified, unverified, unknown). A transfer
is "received" if this profile's receipts hold it or the relay recorded it
verified (by another device of the same account, or an ack not yet flushed).
A transfer refused here is "refused" (``refused``), and ``pending`` leaves it
out unless it was refused for its sender and that sender is now verified.

Verified senders first, and a flood cannot push them out (docs/protocol.md,
"Inbox"): the relay does not know whom we verified, so we first ask it for the
transfers of our verified contacts only (``sender=``, a few handles a
request), then walk the whole inbox for the rest, skipping what we have. The
first walk is as short as our verified contacts' transfers, however many junk
transfers one account sent; the second is bounded (``MAX_ITEMS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealdrop.crypto.protocol import INBOX_MAX_SENDERS

from ..profile.contacts import ContactState
from ..profile.refused import Reason, RefusedStore
from ..profile.session import Session
from .cards import CardView, read_card


def _retry(session: Session, entry: dict[str, Any]) -> bool:
    """Whether a refused transfer deserves another try: its sender is verified now."""
    if entry.get("reason") != Reason.SENDER.value:
        return False
    contact = session.contacts.get(str(entry.get("sender", "")))
    return contact is not None and contact.verified

# Transfers per inbox request. Each carries its case card inline (6-10 KB of
# base64 with one or two recipients): 50 keep a page near 500 KB, inside the
# relay client's 1 MiB answer bound; thirty cases are still one request.
PAGE = 50
# How many transfers one listing reads at most. Beyond it is a flood: the
# listing says so, and dismissing or blocking is the way out.
MAX_ITEMS = 100_000
_RANK = {ContactState.VERIFIED.value: 0, ContactState.UNVERIFIED.value: 1, "unknown": 2}


@dataclass(slots=True)
class Inbox:
    """The transfers waiting, verified senders first; ``truncated`` if the walk
    stopped at ``MAX_ITEMS`` (more are waiting than were read)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    cards: dict[str, CardView] = field(default_factory=dict)  # by id (``list_inbox``)


def _states(session: Session) -> dict[str, str]:
    """Handle → pinned state, read once (each read of the store checks every bundle)."""
    return {c.handle: c.state.value for c in session.contacts.list()}


def walk(session: Session, *, max_items: int = MAX_ITEMS,
         states: dict[str, str] | None = None) -> Inbox:
    """Every transfer the relay lists for us: verified contacts' first, then the rest.

    Within each group, the relay's order (oldest first). The relay's sender
    claim is filtered on again here: a relay that ignored ``sender=`` must not
    lift a stranger's transfer into the first group.
    """
    states = _states(session) if states is None else states
    verified = sorted(h for h, s in states.items() if s == ContactState.VERIFIED.value)
    seen: set[str] = set()
    out = Inbox()
    for i in range(0, len(verified), INBOX_MAX_SENDERS):
        group = tuple(verified[i:i + INBOX_MAX_SENDERS])
        for t in session.relay.inbox(senders=group, max_items=max_items,
                                     limit=PAGE):
            if t.get("sender") in group and t["id"] not in seen:
                seen.add(t["id"])
                out.items.append(t)
    everything = session.relay.inbox(max_items=max_items, limit=PAGE)
    out.truncated = len(everything) >= max_items
    rest = [t for t in everything if t["id"] not in seen]
    for t in rest:
        seen.add(t["id"])
    # A stable sort: verified, then pinned but unverified, then unknown senders.
    rest.sort(key=lambda t: _RANK[states.get(str(t.get("sender", "")), "unknown")])
    out.items += rest
    return out


def _received(t: dict[str, Any], done: dict[str, Any]) -> bool:
    delivery = t.get("delivery") or {}
    return t["id"] in done or bool(delivery.get("verified_at"))


def list_inbox(session: Session) -> Inbox:
    """One row per transfer on the relay for us, with its state here."""
    done = session.receipts.load()
    refused = RefusedStore(session.home).load()
    states = _states(session)
    walked = walk(session, states=states)
    rows = []
    cards = {}
    for t in walked.items:
        # Judged against the pinned key of the sender the relay names (cards.py).
        cards[t["id"]] = read_card(session, t)
        delivery = t.get("delivery") or {}
        if _received(t, done):
            state = "received"
        elif t["id"] in refused:
            state = "refused"
        elif delivery.get("downloaded_at"):
            state = "downloaded"
        else:
            state = "new"
        rows.append({
            "id": t["id"],
            "sender": t.get("sender"),
            "sender_state": states.get(str(t.get("sender", "")), "unknown"),
            "size": t.get("size"),
            "sent_at": t.get("completed_at") or t.get("created_at"),
            "expires_at": t.get("expires_at"),
            "state": state,
        })
    return Inbox(rows, walked.truncated, cards)


def pending(session: Session) -> list[dict[str, Any]]:
    """Inbox entries not yet received by this profile nor refused here for good,
    verified senders first."""
    done = session.receipts.load()
    refused = RefusedStore(session.home).load()
    return [
        t for t in walk(session).items
        if not _received(t, done)
        and (t["id"] not in refused or _retry(session, refused[t["id"]]))
    ]
