"""``sealdrop receive`` of one transfer: download, verify, place, then tell the relay.

    relay blob --Range resume--> spool (ciphertext only)          (download)
      -> ack "downloaded" -> decrypt + verify + place, all or nothing (staging)
      -> receipt recorded -> ack "verified" -> spool entry removed

The destination receives files only after every hash and the signature
verified, and they are durable (fsynced, with their folders) before the relay
is told "verified" (``staging``). If the relay cannot be told then, the
receipt says so and ``flush_acks`` tells it on the next receive, watch or
inbox.

A transfer refused for tampering or replay, or one not addressed to us, is
dropped from the spool (it will be fetched afresh if asked again); one refused
for a reason the user can fix (unverified sender, name collision) keeps its
spool, so the retry does not download again.

Two ids: the relay's (``relay_id``: what the inbox lists, what the user types,
"transfer_id" in the JSON output) and the manifest's (``manifest_id``: signed
by the sender, the replay check's key, "manifest_id" in the JSON output).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealdrop.crypto.errors import SealdropCryptoError
from sealdrop.crypto.manifest import Manifest

from ..errors import ContactError, NotAddressedError, ReceiveError, ReplayError
from ..profile.filelock import StoreLockedError, lock_path, locked
from ..profile.session import Session
from ..relay_api import RelayError, RelayNotFound
from .download import Progress, download
from .staging import receive_transfer


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    relay_id: str
    manifest: Manifest
    sender: str
    sender_verified: bool
    safety_number: str
    files: tuple[Path, ...]
    into: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "transfer_id": self.relay_id,
            "manifest_id": self.manifest.transfer_id.hex(),
            "sender": self.sender,
            "sender_verified": self.sender_verified,
            "safety_number": self.safety_number,
            "created": self.manifest.created,
            "note": self.manifest.note,
            "into": str(self.into),
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256.hex(),
                 "media_type": f.media_type, "placed_at": str(p)}
                for f, p in zip(self.manifest.files, self.files, strict=True)
            ],
            "dicom": dict(self.manifest.dicom),
        }


def flush_acks(session: Session) -> None:
    """Tell the relay about transfers placed while it could not be told."""
    receipts = session.receipts
    for relay_id in receipts.unacked():
        try:
            session.relay.ack(relay_id, "verified")
        except RelayNotFound:
            pass
        except RelayError:
            return
        entry = receipts.load().get(relay_id, {})
        receipts.mark(relay_id, manifest_id=str(entry.get("manifest_id", "")), acked=True)


def receive_one(
    session: Session,
    relay_id: str,
    into: Path,
    *,
    allow_unverified: bool = False,
    on_progress: Progress | None = None,
    pause_after_block: float = 0.0,
) -> ReceiveResult:
    """Receive ``relay_id`` into ``into``: all of it, verified, or nothing.

    ``on_progress`` and ``pause_after_block``: see ``download.download``.
    One process at a time per transfer (``watch`` and a ``receive`` by hand
    would otherwise append to one spool file): the other is refused at once.
    """
    spool = session.spool.path(relay_id)  # also checks the id
    with contextlib.ExitStack() as hold:
        try:
            hold.enter_context(locked(spool, wait=False))
        except StoreLockedError as exc:
            raise ReceiveError(
                f"transfer {relay_id} is being received by another sealdrop process on this "
                "profile; skipped here",
            ) from exc
        try:
            return _receive_one(session, relay_id, into, allow_unverified=allow_unverified,
                                on_progress=on_progress, pause_after_block=pause_after_block)
        finally:
            lock_path(spool).unlink(missing_ok=True)  # still held: nobody waits on it


def _receive_one(
    session: Session,
    relay_id: str,
    into: Path,
    *,
    allow_unverified: bool,
    on_progress: Progress | None,
    pause_after_block: float,
) -> ReceiveResult:
    into = Path(into)
    if not into.is_dir():
        raise ReceiveError(f"the destination {into} is not an existing folder",
                           hint="create it first, or give another --into")
    spool = download(session, relay_id, on_progress=on_progress,
                     pause_after_block=pause_after_block)
    with contextlib.suppress(RelayError):
        session.relay.ack(relay_id, "downloaded")
    try:
        # Why not decrypt while downloading: the staging folder would then sit in
        # the destination for the whole download, and a killed receive would leave
        # it behind; reading the spool back from the page cache costs far less.
        with open(spool, "rb") as src:
            got = receive_transfer(
                src, identity=session.identity, contacts=session.contacts,
                replay=session.replay, dest=into, allow_unverified=allow_unverified,
            )
    except (SealdropCryptoError, ReplayError) as exc:
        spool.unlink(missing_ok=True)  # tampered or replayed: never keep it around
        raise ReceiveError(f"transfer {relay_id} REFUSED: {exc}; nothing was written to "
                           f"{into}", hint=getattr(exc, "hint", None)) from exc
    except NotAddressedError as exc:
        spool.unlink(missing_ok=True)  # not for us: no retry will change that
        raise ReceiveError(f"transfer {relay_id} refused: {exc}", hint=exc.hint) from exc
    except ReceiveError as exc:
        raise ReceiveError(f"transfer {relay_id} refused: {exc}", hint=exc.hint) from exc
    except ContactError as exc:
        raise type(exc)(f"transfer {relay_id} refused: {exc}", hint=exc.hint) from exc
    acked = True
    try:
        session.relay.ack(relay_id, "verified")
    except RelayError:
        acked = False  # told on the next receive/watch/inbox
    session.receipts.mark(relay_id, manifest_id=got.manifest.transfer_id.hex(), acked=acked)
    spool.unlink(missing_ok=True)
    return ReceiveResult(
        relay_id=relay_id, manifest=got.manifest, sender=got.sender.handle,
        sender_verified=got.sender.verified, safety_number=got.sender.safety_number,
        files=got.files, into=into,
    )
