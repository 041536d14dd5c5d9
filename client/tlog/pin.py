"""Pinning a contact from the relay: only the key bundle the relay's log holds
for the handle, with its tlog-proof kept. One rule for ``sealdrop contacts add``
and the desk's Contacts screen."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ContactError
from ..relay_api import RelayNotFound

if TYPE_CHECKING:
    from ..profile.contacts import Contact
    from ..profile.session import Session


def add_from_relay(session: Session, handle: str, fingerprint: str | None) -> Contact:
    """Fetch ``handle``'s bundle and pin it only if the relay's log holds exactly it
    for its handle, keeping the proof (verified if ``fingerprint`` matches). A
    pinned contact's CHANGED key is refused as such first: calling them is what
    to do about it, whatever the log says."""
    try:
        bundle, index = session.relay.get_logged_bundle(handle)
    except RelayNotFound as exc:
        raise ContactError(f"the relay has no account {handle!r}",
                           hint="check the spelling of the handle") from exc
    store, log = session.contacts, session.log
    pinned = store.get(bundle.handle)
    if pinned is not None and pinned.bundle.signing_key != bundle.signing_key:
        contact = store.add(bundle, now=int(time.time()), fingerprint=fingerprint)
        proof = log.check_bundle(bundle, index)
    else:
        proof = log.check_bundle(bundle, index)
        contact = store.add(bundle, now=int(time.time()), fingerprint=fingerprint)
    if proof is not None:
        store.keep_log_proof(bundle, proof)
    return contact
