"""Whether a sender may be accepted, decided without changing the pinned contacts.

``ContactStore.check_sender`` both decides and pins (trust on first use with
``--allow-unverified``, or a newer bundle of the same key). A transfer can
still be refused after the sender check (replay, a name taken in DEST, an
interruption), and a refused transfer must change no pinned contact: else a
hostile transfer, refused, would still have pinned its sender's key for the
next one. So receiving decides here, read-only, before anything is written,
and pins with ``check_sender`` only once the files are placed.
"""

from __future__ import annotations

from sealdrop.crypto.bundle import KeyBundle

from ..errors import ContactKeyChangedError, UnknownContactError, UnverifiedContactError
from ..profile.contacts import Contact, ContactState, ContactStore


def sender_verdict(contacts: ContactStore, bundle: KeyBundle, *, allow_unverified: bool,
                   now: int) -> Contact:
    """The contact the sender is (or would be pinned as); raises as ``check_sender`` would.

    ``bundle`` has been verified already (it came out of a signed manifest).
    """
    handle = bundle.handle
    contact = contacts.get(handle)
    if contact is None:
        if not allow_unverified:
            raise UnknownContactError(
                f"{handle!r} is not among your contacts",
                hint=(f"verify their safety number and add them with `sealdrop contacts add "
                      f"{handle} --fingerprint NUMBER`, or pass --allow-unverified"),
            )
        return Contact(handle=handle, bundle=bundle, state=ContactState.UNVERIFIED, added=now)
    if contact.bundle.signing_key != bundle.signing_key:
        raise ContactKeyChangedError(
            f"the signing key of contact {handle!r} has CHANGED; refusing to send to or "
            "accept from the new key",
            hint=(f"call {handle} (not by e-mail) and compare the new safety number, then run: "
                  f"sealdrop contacts add {handle} --fingerprint NEW_NUMBER"),
        )
    if not contact.verified and not allow_unverified:
        raise UnverifiedContactError(
            f"contact {handle!r} is not verified: its safety number was never compared",
            hint=(f"compare safety numbers with {handle} and run "
                  f"`sealdrop contacts verify {handle} NUMBER`, or pass --allow-unverified"),
        )
    return contact
