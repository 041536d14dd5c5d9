"""Pinned contacts: a handle, its signing key's KeyBundle, and whether it was verified.

Trust rules (docs/threat-model.md):

- The first bundle seen for a handle is pinned *unverified*; comparing the
  safety number out of band (phone, in person) makes it *verified*.
- Sending to or accepting from an unverified contact needs ``allow_unverified``.
- A bundle for a pinned handle signed by a *different* signing key is a key
  change: refused (ContactKeyChangedError) until the user re-verifies the new
  key's safety number (``add`` with ``fingerprint``). Nothing is ever sent to or
  accepted from a changed key silently.
- A *newer* bundle signed by the *same* signing key (encryption-key rotation)
  replaces the pinned bundle, keeping its state; an older one never does, so a
  relay cannot roll a contact back to retired encryption keys.

Store: the contacts file of the profile folder (``layout.CONTACTS_FILE``), written
atomically (mode 0600). Every change reads, decides and writes under the
store's file lock (``filelock``), so ``watch`` and a ``receive`` pinning
contacts at the same time lose neither pin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from sealdrop.crypto import safety
from sealdrop.crypto.bundle import KeyBundle, check_handle
from sealdrop.crypto.errors import BundleError, SafetyNumberError

from ..errors import (
    ContactError,
    ContactKeyChangedError,
    SafetyNumberMismatchError,
    UnknownContactError,
    UnverifiedContactError,
)
from .filelock import locked
from .jsonstore import read_section, write_section
from .layout import CONTACTS_FILE

_MAX_STORE = 64 * 1024 * 1024


class ContactState(StrEnum):
    VERIFIED = "verified"
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    handle: str
    bundle: KeyBundle
    state: ContactState
    added: int
    verified_at: int | None = None
    # The tlog-proof (C2SP, crypto.tlog.proofbundle) that ``bundle`` is logged
    # for its handle, kept so that using it again needs no request (client.tlog).
    log_proof: str | None = None

    @property
    def safety_number(self) -> str:
        return safety.safety_number(self.bundle.signing_key)

    @property
    def verified(self) -> bool:
        return self.state is ContactState.VERIFIED

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "handle": self.handle,
            "bundle": self.bundle.to_json(),
            "state": self.state.value,
            "added": self.added,
            "verified_at": self.verified_at,
        }
        if self.log_proof is not None:
            out["log_proof"] = self.log_proof
        return out

    @classmethod
    def from_json(cls, obj: object) -> Contact:
        if not isinstance(obj, dict):
            raise ContactError("the contacts file is damaged: an entry is not an object")
        try:
            bundle = KeyBundle.from_json(obj["bundle"]).verify()
            return cls(
                handle=check_handle(obj["handle"]),
                bundle=bundle,
                state=ContactState(obj["state"]),
                added=int(obj["added"]),
                verified_at=None if obj.get("verified_at") is None else int(obj["verified_at"]),
                log_proof=_log_proof(obj.get("log_proof")),
            )
        except (KeyError, ValueError, TypeError, BundleError) as exc:
            raise ContactError(f"the contacts file is damaged: {exc}") from exc


def _log_proof(value: object) -> str | None:
    if value is not None and not (isinstance(value, str) and len(value) < 64 * 1024):
        raise ValueError("log_proof must be a text")
    return value


def _key_changed(handle: str) -> ContactKeyChangedError:
    return ContactKeyChangedError(
        f"the signing key of contact {handle!r} has CHANGED; refusing to send to or "
        "accept from the new key",
        hint=(
            f"call {handle} (not by e-mail) and compare the new safety number, then run: "
            f"sealdrop contacts add {handle} --fingerprint NEW_NUMBER"
        ),
    )


def _unverified(handle: str) -> UnverifiedContactError:
    return UnverifiedContactError(
        f"contact {handle!r} is not verified: its safety number was never compared",
        hint=(
            f"compare safety numbers with {handle} and run "
            f"`sealdrop contacts verify {handle} NUMBER`, or pass --allow-unverified"
        ),
    )


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def _mismatch(handle: str, pinned: Contact | None) -> SafetyNumberMismatchError:
    """A safety number typed in that does not match: what it changed (nothing) and what to do.

    Said plainly for a contact verified before: a typo while re-checking must
    not read as if the earlier comparison were undone, nor as a key change.
    """
    typed = f"the number you typed does not match {handle}'s key"
    again = "Check the digits with them again."
    hint = (f"ask {handle} to read theirs from `sealdrop whoami` (by phone or in person, "
            "not by e-mail)")
    if pinned is not None and pinned.verified:
        since = f" (with the number compared on {_day(pinned.verified_at)})" \
            if pinned.verified_at else ""
        return SafetyNumberMismatchError(
            f"{typed}; {handle} stays verified{since}. {again}", hint=hint)
    if pinned is not None:
        return SafetyNumberMismatchError(
            f"{typed}; {handle} stays unverified. {again}",
            hint=f"{hint}; do not send to {handle} until the numbers match")
    return SafetyNumberMismatchError(
        f"{typed}; nothing was saved. {again}",
        hint=f"{hint}; do not send to {handle} until the numbers match")


class ContactStore:
    """The pinned contacts of one profile folder."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / CONTACTS_FILE

    # --- persistence ---------------------------------------------------------

    def _load(self) -> dict[str, Contact]:
        entries = read_section(self.path, "contacts", what="the contacts file",
                               max_bytes=_MAX_STORE, error=ContactError)
        out: dict[str, Contact] = {}
        for handle, entry in entries.items():
            contact = Contact.from_json(entry)
            if contact.handle != handle or contact.bundle.handle != handle:
                raise ContactError(
                    f"the contacts file is damaged: entry {handle!r} is inconsistent"
                )
            out[handle] = contact
        return out

    def _save(self, contacts: dict[str, Contact]) -> None:
        write_section(self.path, "contacts",
                      {h: c.to_json() for h, c in sorted(contacts.items())},
                      what="the contacts file", error=ContactError, indent=1)

    # --- queries -------------------------------------------------------------

    def get(self, handle: str) -> Contact | None:
        return self._load().get(handle)

    def __iter__(self) -> Iterator[Contact]:
        return iter(sorted(self._load().values(), key=lambda c: c.handle))

    def list(self) -> list[Contact]:
        return list(self)

    # --- changes -------------------------------------------------------------

    def add(self, bundle: KeyBundle, *, now: int, fingerprint: str | None = None) -> Contact:
        """Pin ``bundle`` for its handle; verified if ``fingerprint`` matches its key.

        A different signing key for an already pinned handle is refused unless
        ``fingerprint`` matches the NEW key: that is how a key change is re-verified.
        """
        try:
            bundle.verify()
        except BundleError as exc:
            raise ContactError(str(exc)) from exc
        fingerprint_ok = False
        if fingerprint is not None:
            fingerprint_ok = self._matches(bundle, fingerprint)
            if not fingerprint_ok:
                raise _mismatch(bundle.handle, self.get(bundle.handle))
        with locked(self.path):
            return self._add_locked(bundle, now=now, fingerprint_ok=fingerprint_ok)

    def _add_locked(self, bundle: KeyBundle, *, now: int, fingerprint_ok: bool) -> Contact:
        contacts = self._load()
        old = contacts.get(bundle.handle)
        if old is not None and old.bundle.signing_key != bundle.signing_key:
            if not fingerprint_ok:
                raise _key_changed(bundle.handle)
            old = None  # re-verified: the new key replaces the old one entirely
        if old is None:
            contact = Contact(
                handle=bundle.handle,
                bundle=bundle,
                state=ContactState.VERIFIED if fingerprint_ok else ContactState.UNVERIFIED,
                added=now,
                verified_at=now if fingerprint_ok else None,
            )
        else:
            contact = old
            if bundle.created > old.bundle.created:
                contact = replace(contact, bundle=bundle, log_proof=None)
            if fingerprint_ok:
                contact = replace(contact, state=ContactState.VERIFIED, verified_at=now)
        contacts[bundle.handle] = contact
        self._save(contacts)
        return contact

    @staticmethod
    def _matches(bundle: KeyBundle, fingerprint: str) -> bool:
        try:
            return safety.matches(bundle.signing_key, fingerprint)
        except SafetyNumberError as exc:
            raise SafetyNumberMismatchError(str(exc), hint=exc.hint) from exc

    def verify(self, handle: str, fingerprint: str, *, now: int) -> Contact:
        """Mark a pinned contact verified after comparing its safety number."""
        with locked(self.path):
            return self._verify_locked(handle, fingerprint, now=now)

    def _verify_locked(self, handle: str, fingerprint: str, *, now: int) -> Contact:
        contacts = self._load()
        contact = contacts.get(handle)
        if contact is None:
            raise UnknownContactError(
                f"no contact named {handle!r}",
                hint=f"add it first: sealdrop contacts add {handle}",
            )
        if not self._matches(contact.bundle, fingerprint):
            raise _mismatch(handle, contact)
        contact = replace(contact, state=ContactState.VERIFIED, verified_at=now)
        contacts[handle] = contact
        self._save(contacts)
        return contact

    def keep_log_proof(self, bundle: KeyBundle, proof: str) -> None:
        """Keep ``proof`` (that ``bundle`` is logged) with its contact, if ``bundle``
        is exactly the pinned one; nothing otherwise (not pinned, or another bundle)."""
        with locked(self.path):
            contacts = self._load()
            contact = contacts.get(bundle.handle)
            if contact is None or contact.bundle.signed_message() != bundle.signed_message() \
                    or contact.log_proof == proof:
                return
            contacts[bundle.handle] = replace(contact, log_proof=proof)
            self._save(contacts)

    def remove(self, handle: str) -> None:
        with locked(self.path):
            contacts = self._load()
            if handle not in contacts:
                raise UnknownContactError(f"no contact named {handle!r}")
            del contacts[handle]
            self._save(contacts)

    # --- trust decisions -------------------------------------------------------

    def _check(self, bundle: KeyBundle, *, allow_unverified: bool, now: int) -> Contact:
        try:
            bundle.verify()
        except BundleError as exc:
            raise ContactError(str(exc)) from exc
        with locked(self.path):
            return self._check_locked(bundle, allow_unverified=allow_unverified, now=now)

    def _check_locked(self, bundle: KeyBundle, *, allow_unverified: bool, now: int) -> Contact:
        contacts = self._load()
        contact = contacts.get(bundle.handle)
        if contact is None:
            if not allow_unverified:
                raise UnknownContactError(
                    f"{bundle.handle!r} is not among your contacts",
                    hint=(
                        f"verify their safety number and add them with `sealdrop contacts add "
                        f"{bundle.handle} --fingerprint NUMBER`, "
                        "or pass --allow-unverified"
                    ),
                )
            contact = Contact(
                handle=bundle.handle, bundle=bundle, state=ContactState.UNVERIFIED, added=now
            )
            contacts[bundle.handle] = contact
            self._save(contacts)  # trust on first use: pinned, still unverified
            return contact
        if contact.bundle.signing_key != bundle.signing_key:
            raise _key_changed(bundle.handle)
        if not contact.verified and not allow_unverified:
            raise _unverified(bundle.handle)
        if bundle.created > contact.bundle.created:
            contact = replace(contact, bundle=bundle, log_proof=None)
            contacts[bundle.handle] = contact
            self._save(contacts)
        return contact

    def check_recipient(
        self, bundle: KeyBundle, *, allow_unverified: bool, now: int
    ) -> KeyBundle:
        """The bundle to encrypt to for ``bundle.handle``: the newest pinned one.

        Raises ContactKeyChangedError, UnverifiedContactError or UnknownContactError.
        """
        return self._check(bundle, allow_unverified=allow_unverified, now=now).bundle

    def check_sender(self, bundle: KeyBundle, *, allow_unverified: bool, now: int) -> Contact:
        """Whether a transfer signed with ``bundle``'s key may be accepted."""
        return self._check(bundle, allow_unverified=allow_unverified, now=now)
