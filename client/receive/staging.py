"""Receiving a transfer: stage, verify everything, then move into place.

State machine (docs/container.md, "Receive"):

    OPEN     age header: one of our keys must open it        -> else refuse
    STAGE    DEST/.sealdrop-staging-<random>/files/…, hashing  -> any error: DISCARD
    VERIFY   sizes + SHA-256 vs the signed manifest, signature,
             we are a signed recipient, sender key == pinned key,
             transfer id never accepted                       -> any error: DISCARD
    PLACE    every target name free? then link/rename one by one -> error: UNDO, DISCARD
    RECORD   transfer id into the replay store                -> error: UNDO, DISCARD
    DONE     staging removed

The staging folder is inside DEST so that PLACE is a same-filesystem rename
and never a copy (``place``). Until PLACE, nothing outside the staging folder
is touched; if PLACE or RECORD fails, what was placed is moved back. Existing
names in DEST are never overwritten: a transfer whose names collide is
refused whole. "Transfer id" here is the manifest's id, signed by the sender.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto import age
from sealdrop.crypto.age.stream import Reader
from sealdrop.crypto.container import FILES_PREFIX, ContainerReader
from sealdrop.crypto.identity import SecretIdentity
from sealdrop.crypto.manifest import Manifest

from ..errors import NotAddressedError, ReceiveError
from ..profile.contacts import Contact, ContactStore
from ..profile.replay import ReplayStore
from .place import Placer, check_free

STAGING_PREFIX = ".sealdrop-staging-"
_IO_BLOCK = 1 << 20
_WRITEBACK_EVERY = 8 << 20  # start writeback of each 8 MiB as soon as it is written


@dataclass(frozen=True, slots=True)
class PlacedTransfer:
    """A transfer verified and placed: its signed manifest, its sender, its files."""

    manifest: Manifest
    sender: Contact
    files: tuple[Path, ...]


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a staged file to the device now, without waiting.

    On Linux POSIX_FADV_DONTNEED initiates writeback of the range's dirty pages,
    so the fsync at the end of the file waits for the tail only, not for the
    whole file. Elsewhere a no-op.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _write_member(staging: Path, path: str, read: Callable[[int], bytes]) -> None:
    target = staging / FILES_PREFIX / path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise ReceiveError(f"cannot stage {path!r}: {exc.strerror}") from exc
    try:
        written = flushed = 0
        while chunk := read(_IO_BLOCK):
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            written += len(chunk)
            if written - flushed >= _WRITEBACK_EVERY:
                _start_writeback(fd, flushed, written - flushed)
                flushed = written
        # Why fsync here: the relay is told "verified" once the files are placed,
        # and the sender reads that as delivered; the data must survive a power loss.
        os.fsync(fd)
    except OSError as exc:
        raise ReceiveError(f"cannot stage {path!r}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _make_staging(dest: Path) -> Path:
    staging = dest / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
    try:
        os.mkdir(staging, 0o700)
    except OSError as exc:
        raise ReceiveError(f"cannot write to {dest}: {exc.strerror}") from exc
    return staging


def receive_transfer(
    src: Reader,
    *,
    identity: SecretIdentity,
    contacts: ContactStore,
    replay: ReplayStore,
    dest: Path,
    allow_unverified: bool = False,
    now: int | None = None,
) -> PlacedTransfer:
    """Decrypt, verify and place a transfer into ``dest``; all or nothing.

    Raises a crypto error (ContainerError, ManifestError, SignatureError,
    age.PayloadError…) or a ClientError (ReceiveError, its NotAddressedError,
    ContactKeyChangedError, UnverifiedContactError, UnknownContactError,
    ReplayError); in every case ``dest`` is as it was and no staging folder
    remains.
    """
    when = int(time.time()) if now is None else now
    dest = Path(dest)
    if not dest.is_dir():
        raise ReceiveError(f"the destination {dest} is not an existing folder")
    try:
        dec = age.Decryptor(src, identity.age_identities())
    except age.NoIdentityMatchError as exc:
        raise NotAddressedError(
            "this transfer is not addressed to you: none of your keys opens it"
        ) from exc
    staging = _make_staging(dest)
    placer = Placer(staging, dest)
    try:
        with dec:
            reader = ContainerReader(dec)
            for member in reader.members():
                _write_member(staging, member.path, member.read)
            manifest = reader.manifest
        if identity.signing_public_key not in manifest.recipient_keys():
            raise NotAddressedError(
                "this transfer was not addressed to you: your key is not among the "
                "recipients the sender signed; refusing it"
            )
        sender = contacts.check_sender(
            manifest.sender, allow_unverified=allow_unverified, now=when
        )
        replay.check(manifest.transfer_id)
        for entry in manifest.files:
            check_free(dest, entry.path)
        try:
            placed = tuple(placer.place(entry.path) for entry in manifest.files)
            placer.sync()
            replay.record(manifest.transfer_id, when)
        except FileExistsError as exc:
            placer.undo()
            raise ReceiveError(
                f"{exc.filename} appeared in {dest} while receiving; nothing was written"
            ) from exc
        except OSError as exc:
            placer.undo()
            raise ReceiveError(f"cannot move files into {dest}: {exc.strerror}") from exc
        except BaseException:
            placer.undo()
            raise
        return PlacedTransfer(manifest=manifest, sender=sender, files=placed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
