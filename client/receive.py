"""``sealdrop receive``: download, verify, place, then tell the relay.

    relay blob --Range resume--> HOME/inbox-spool/<id>.age.partial   (ciphertext only)
      -> ack "downloaded" -> decrypt + verify + place (client.staging, all or nothing)
      -> record locally -> ack "verified" -> spool removed

Only ciphertext is ever spooled: it may sit on disk while a download is
interrupted, and a new run continues from its length. The spool is a cache,
not a promise, so it is not fsynced: if a power loss leaves garbage in its
tail, decryption refuses the transfer, the spool is dropped and the next run
downloads afresh. The destination receives files only after every hash and
the signature verified, and they are durable (fsynced, with their folders)
before the relay is told "verified" (client.staging).

A transfer refused for tampering or replay is dropped from the spool (it will be
fetched afresh if asked again); one refused for a reason the user can fix
(unverified sender, name collision) keeps its spool, so the retry does not
download again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealdrop.crypto.errors import SealdropCryptoError
from sealdrop.crypto.manifest import Manifest

from .errors import ClientError, ContactError, ReceiveError, ReplayError
from .outfile import atomic_output
from .profile import Session
from .relay_api import RelayError, RelayNotFound
from .staging import receive_transfer

SPOOL_DIR = "inbox-spool"
RECEIVED_FILE = "received.json"
PAUSE_ENV = "SEALDROP_TEST_DOWNLOAD_PAUSE"  # tests: seconds to wait after each MiB
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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


class Received:
    """Relay ids this profile already received (and whether the relay was told)."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / RECEIVED_FILE

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            obj = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ClientError(f"cannot read {self.path}; it is damaged") from exc
        return dict(obj.get("received", {})) if isinstance(obj, dict) else {}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        try:
            with atomic_output(self.path, mode=0o600) as f:
                f.write(json.dumps({"v": 1, "received": data}, sort_keys=True).encode() + b"\n")
        except OSError as exc:
            raise ClientError(f"cannot write {self.path}: {exc.strerror}") from exc

    def mark(self, relay_id: str, *, manifest_id: str, acked: bool) -> None:
        data = self.load()
        data[relay_id] = {"manifest_id": manifest_id, "acked": acked, "at": int(time.time())}
        self._save(data)

    def unacked(self) -> list[str]:
        return [k for k, v in self.load().items() if not v.get("acked")]


def flush_acks(session: Session) -> None:
    """Tell the relay about transfers placed while it could not be told."""
    store = Received(session.home)
    for rid in store.unacked():
        try:
            session.relay.ack(rid, "verified")
        except RelayNotFound:
            pass
        except RelayError:
            return
        entry = store.load().get(rid, {})
        store.mark(rid, manifest_id=str(entry.get("manifest_id", "")), acked=True)


def _spool_path(home: Path, relay_id: str) -> Path:
    if not _ID.match(relay_id):
        raise ClientError(f"{relay_id!r} is not a transfer id")
    spool = Path(home) / SPOOL_DIR
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    return spool / f"{relay_id}.age.partial"


def _throttled(on_progress: Callable[[int, int], None] | None) -> Callable[[int, int], None]:
    pause = float(os.environ.get(PAUSE_ENV) or 0)

    def progress(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(done, total)
        if pause:
            time.sleep(pause)

    return progress


def _open_spool(session: Session, relay_id: str) -> tuple[Path, int, int]:
    """(spool path, bytes already there, blob size); a spool longer than the blob
    is dropped."""
    path = _spool_path(session.home, relay_id)
    size = int(session.relay.status(relay_id)["size"])
    have = path.stat().st_size if path.exists() else 0
    if have > size:
        path.unlink()
        have = 0
    return path, have, size


def download(session: Session, relay_id: str, *,
             on_progress: Callable[[int, int], None] | None = None) -> Path:
    """The complete ciphertext in the spool, resuming a previous partial download."""
    path, have, size = _open_spool(session, relay_id)
    if have < size:
        with open(path, "ab") as f:
            session.relay.download(relay_id, f, offset=have, progress=_throttled(on_progress))
    elif on_progress is not None:
        on_progress(size, size)
    if path.stat().st_size != size:
        raise ReceiveError(f"the download of {relay_id} is incomplete; run receive again")
    return path


def receive_one(
    session: Session,
    relay_id: str,
    into: Path,
    *,
    allow_unverified: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReceiveResult:
    into = Path(into)
    if not into.is_dir():
        raise ReceiveError(f"the destination {into} is not an existing folder",
                           hint="create it first, or give another --into")
    spool = download(session, relay_id, on_progress=on_progress)
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
    except ReceiveError as exc:
        if "not addressed to you" in str(exc) or "not among the" in str(exc):
            spool.unlink(missing_ok=True)
        raise ReceiveError(f"transfer {relay_id} refused: {exc}", hint=exc.hint) from exc
    except ContactError as exc:
        raise type(exc)(f"transfer {relay_id} refused: {exc}", hint=exc.hint) from exc
    received = Received(session.home)
    acked = True
    try:
        session.relay.ack(relay_id, "verified")
    except RelayError:
        acked = False  # told on the next receive/watch/inbox
    received.mark(relay_id, manifest_id=got.manifest.transfer_id.hex(), acked=acked)
    spool.unlink(missing_ok=True)
    return ReceiveResult(
        relay_id=relay_id, manifest=got.manifest, sender=got.sender.handle,
        sender_verified=got.sender.verified, safety_number=got.sender.safety_number,
        files=got.files, into=into,
    )


def pending(session: Session) -> list[dict[str, Any]]:
    """Inbox entries not yet received by this profile."""
    done = Received(session.home).load()
    out = []
    for t in session.relay.inbox():
        delivery = t.get("delivery") or {}
        if t["id"] in done or delivery.get("verified_at"):
            continue
        out.append(t)
    return out
