"""Who a transfer is encrypted to: fresh key bundles checked against the pinned contacts.

Before a send, each recipient's current bundle is fetched from the relay and
checked in the relay's transparency log (``LogClient.vouch_for``) and against
the pinned contact (``ContactStore.check_recipient``: a changed signing key is
refused, an unverified contact needs ``allow_unverified``).
Which of their keys the transfer is encrypted to is ``plan.age_recipients``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealdrop.crypto.bundle import KeyBundle

from ..errors import ContactError, SealError, UnknownContactError
from ..profile.session import Session
from ..relay_api import RelayNotFound


def refresh_recipients(session: Session, handles: Sequence[str], *, allow_unverified: bool,
                       now: int) -> list[KeyBundle]:
    """Each recipient's current bundle from the relay, checked against the pinned contact."""
    if len(set(handles)) != len(handles):
        raise SealError("the same recipient is listed twice")
    if session.identity.handle in handles:
        raise SealError("you cannot send to yourself")
    out = []
    for handle in handles:
        if session.contacts.get(handle) is None and not allow_unverified:
            raise UnknownContactError(
                f"{handle!r} is not among your contacts",
                hint=f"add and verify them first: sealdrop contacts add {handle} "
                "--fingerprint SAFETY_NUMBER (read to you by phone), or pass --allow-unverified",
            )
        try:
            fresh, index = session.relay.get_logged_bundle(handle)
        except RelayNotFound as exc:
            raise ContactError(f"the relay has no account {handle!r}") from exc
        # In the relay's log for its handle before anything is encrypted to it (or
        # pinned on first use); a pinned contact's changed key is refused as such
        # first: calling them is what to do about it, whatever the log says.
        pinned = session.contacts.get(handle)
        if pinned is None or pinned.bundle.signing_key == fresh.signing_key:
            session.log.vouch_for(fresh, (fresh, index))
        out.append(session.contacts.check_recipient(
            fresh, allow_unverified=allow_unverified, now=now))
    return out
