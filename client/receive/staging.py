"""Receiving a transfer: decrypt and verify into private staging, only then place.

State machine (docs/container.md, "Receive"):

    OPEN     age header: one of our keys must open it        -> else refuse
    STAGE    one reading of the ciphertext as it arrives: every member's header
             checked and its bytes written into a private staging folder outside
             DEST (``stagearea``), SHA-256 computed on the way; then the size and
             hash of each vs the signed manifest, the signature, we are a signed
             recipient                                      -> any error: DISCARD
    CHECK    the sender is acceptable (read-only: ``trust``), transfer id never
             accepted, every name free in DEST              -> any error: DISCARD
    PLACE    every target name free? then link/rename one by one, into the
             case folder (``case``, made here)              -> error: UNDO, DISCARD
    PIN      the sender pinned/refreshed in the contacts    -> error: UNDO, DISCARD
    RECORD   transfer id into the replay store                -> error: UNDO, DISCARD
    DONE     staging removed

Why one reading: the manifest and signature come last in the archive (the
sender hashes while streaming), so the sender is known only at the end; the
files are staged before that, in a folder no one else can read (0700, outside
DEST, removed on any failure and swept after a kill), and nothing reaches DEST
before every check passed. Reading twice (check, then stage) would cost a
second decryption and, for a download, a round trip of the ciphertext through
the disk: measured on 1 GiB (client user + system CPU, 2 cores), the two
readings took 5.3 to 6.8 CPU-seconds (3.6 to 4.1 of them user), one pass 4.2
to 6.6 (2.2 user); the system share of both moves with the page cache.

``verify_first`` keeps the two readings for a sender the profile has not
verified (``receive --allow-unverified``, bounded by --max-unverified-size): a
first reading writes nothing and runs every check, so no byte from a stranger,
a changed key, a forged signature or a malformed archive reaches the disk in
clear; the second stages, and its manifest must be byte-identical.

Until PLACE, nothing outside the staging folder is touched; if PLACE or a
later step fails, what was placed is moved back. Existing names in DEST are
never overwritten: a transfer whose names collide is refused whole. A refused
transfer changes no pinned contact. "Transfer id" here is the manifest's id,
signed by the sender. Anything a hostile archive makes a parser raise becomes
a refusal (``HostileArchiveError``), never an unhandled exception.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sealdrop.crypto import age
from sealdrop.crypto.container import FILES_PREFIX, ContainerReader
from sealdrop.crypto.errors import HostileArchiveError, SealdropCryptoError
from sealdrop.crypto.identity import SecretIdentity
from sealdrop.crypto.manifest import Manifest

from ..errors import ClientError, NotAddressedError, ReceiveError
from ..profile.contacts import Contact, ContactStore
from ..profile.replay import ReplayStore
from .interrupt import interruptible
from .place import Placer, check_free
from .stagearea import LEGACY_PREFIX, staging_area, staging_folder, sweep
from .trust import sender_verdict

# What older versions named their staging folders inside DEST (tests check none remain).
STAGING_PREFIX = LEGACY_PREFIX
_IO_BLOCK = 1 << 20
_WRITEBACK_EVERY = 8 << 20  # start writeback of each 8 MiB as soon as it is written
# (and drop the 8 MiB before it from the page cache: _drop_behind)


@dataclass(frozen=True, slots=True)
class PlacedTransfer:
    """A transfer verified and placed: its signed manifest, its sender, its files."""

    manifest: Manifest
    sender: Contact
    files: tuple[Path, ...]
    folder: Path  # the case folder the files went into (DEST itself when flat)


def _drop_behind(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a staged file to the device now, without waiting,
    and drop from the page cache what of it is already written.

    On Linux POSIX_FADV_DONTNEED initiates writeback of the range's dirty pages
    and drops the clean ones; pages still being written stay. Called on each
    new 8 MiB (writeback starts, so the fsync at the end of the file waits for
    the tail only) and again on the 8 MiB before it, written by then: the
    file's pages go back to the allocator as it is staged, and the next ones
    reuse them. Measured on 1 GiB (client system CPU of ``sealdrop receive``,
    two runs each, the journal still on): 2.3 and 5.2 s without the second
    call, 1.6 and 1.7 s with it. Fresh pages are what costs: on this VM (the
    virtio balloon reports free pages to the host) a page cache page not
    recently used costs far more to fill than one just freed. Elsewhere a no-op.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None and length > 0:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _write_member(staging: Path, path: str,
                  read: Callable[[int], bytes | memoryview]) -> None:
    target = staging / FILES_PREFIX / path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise ReceiveError(f"cannot stage {path!r}: {exc.strerror}") from exc
    try:
        written = flushed = dropped = 0
        while chunk := read(_IO_BLOCK):
            view = memoryview(chunk)  # a view into the decrypted batch: written at once
            while view:
                n = os.write(fd, view)
                view = view[n:]
            written += len(chunk)
            if written - flushed >= _WRITEBACK_EVERY:
                _drop_behind(fd, dropped, flushed - dropped)  # written back by now
                _drop_behind(fd, flushed, written - flushed)  # starts its writeback
                dropped, flushed = flushed, written
        # Why fsync here: the relay is told "verified" once the files are placed,
        # and the sender reads that as delivered; the data must survive a power loss.
        os.fsync(fd)
    except OSError as exc:
        raise ReceiveError(f"cannot stage {path!r}: {exc.strerror}") from exc
    finally:
        os.close(fd)


class Source(Protocol):
    """The ciphertext (read once, or twice with ``verify_first``: then it must seek)."""

    def read(self, n: int = -1, /) -> bytes: ...


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Whatever a parser raises on hostile bytes becomes the project's refusal.

    The parsers are meant to raise only SealdropCryptoError; this is the net
    under them, so that no archive can make ``receive`` or ``watch`` stop on an
    unhandled exception. Local I/O trouble (OSError) is not the sender's doing
    and stays what it is.
    """
    try:
        yield
    except (SealdropCryptoError, ClientError, OSError):
        raise
    except (MemoryError, RecursionError, ArithmeticError, LookupError, ValueError,
            TypeError, AttributeError, UnicodeError, EOFError) as exc:
        raise HostileArchiveError(
            f"the transfer is malformed ({type(exc).__name__}); it is damaged or hostile"
        ) from exc


def _open(src: Source, identity: SecretIdentity) -> age.Decryptor:
    try:
        return age.Decryptor(src, identity.age_identities())
    except age.NoIdentityMatchError as exc:
        raise NotAddressedError(
            "this transfer is not addressed to you: none of your keys opens it"
        ) from exc


def _verify_only(src: Source, identity: SecretIdentity) -> Manifest:
    """The first reading: every check of the archive, nothing written."""
    with _refusals():
        with _open(src, identity) as dec:
            reader = ContainerReader(dec)
            for member in reader.members():
                while member.read(_IO_BLOCK):
                    pass
            return reader.manifest


def _stage(src: Source, identity: SecretIdentity, staging: Path) -> Manifest:
    """The second reading: the same checks, writing each member into staging."""
    with _refusals():
        with _open(src, identity) as dec:
            reader = ContainerReader(dec)
            for member in reader.members():
                _write_member(staging, member.path, member.read_view)
            return reader.manifest


def _acceptable(manifest: Manifest, *, identity: SecretIdentity, contacts: ContactStore,
                replay: ReplayStore, dest: Path, allow_unverified: bool, now: int,
                case: Callable[[str], str] | None) -> tuple[Contact, str]:
    """Every check of a verified manifest against this profile and DEST; changes nothing.

    Returns the sender and the case folder (relative to DEST, '' when flat).
    """
    if identity.signing_public_key not in manifest.recipient_keys():
        raise NotAddressedError(
            "this transfer was not addressed to you: your key is not among the "
            "recipients the sender signed; refusing it"
        )
    sender = sender_verdict(contacts, manifest.sender, allow_unverified=allow_unverified,
                            now=now)
    replay.check(manifest.transfer_id)
    prefix = case(sender.handle) if case is not None else ""
    for entry in manifest.files:
        check_free(dest, f"{prefix}/{entry.path}" if prefix else entry.path)
    return sender, prefix


def receive_transfer(
    src: Source,
    *,
    identity: SecretIdentity,
    contacts: ContactStore,
    replay: ReplayStore,
    dest: Path,
    allow_unverified: bool = False,
    now: int | None = None,
    staging: Path | None = None,
    home: Path | None = None,
    case: Callable[[str], str] | None = None,
    verify_first: bool = False,
    vouch: Callable[[Manifest], None] | None = None,
) -> PlacedTransfer:
    """Decrypt, verify and place a transfer into ``dest``; all or nothing.

    ``staging`` is the folder to stage in (else chosen by ``stagearea``, with
    ``home`` the profile folder). ``case`` names the case folder, relative to
    ``dest``, from the signed sender's handle (None: straight into ``dest``);
    it is made while placing and removed again if placing fails.
    ``verify_first``: read ``src`` once without writing before staging it
    (see the module text; ``src`` must then seek). ``vouch``: one more check of
    the verified manifest, made last before placing (the transparency log's:
    client.tlog; it raises to refuse). Raises a
    crypto error (ContainerError, ManifestError, SignatureError, age.PayloadError…) or a ClientError
    (ReceiveError, its NotAddressedError, ContactKeyChangedError,
    UnverifiedContactError, UnknownContactError, ReplayError); in every case
    ``dest`` and the pinned contacts are as they were and no staging folder remains.
    """
    when = int(time.time()) if now is None else now
    dest = Path(dest)
    if not dest.is_dir():
        raise ReceiveError(f"the destination {dest} is not an existing folder")
    area = staging_area(dest, home=home, configured=staging)
    sweep(area, dest)  # what a receive killed with SIGKILL left behind

    def acceptable(m: Manifest) -> str:
        return _acceptable(m, identity=identity, contacts=contacts, replay=replay, dest=dest,
                           allow_unverified=allow_unverified, now=when, case=case)[1]

    def accepted_last(m: Manifest) -> str:
        prefix = acceptable(m)
        if vouch is not None:
            vouch(m)
        return prefix

    first: Manifest | None = None
    if verify_first:
        rewind = getattr(src, "seek", None)
        if rewind is None:
            raise TypeError("verify_first needs a source that can seek")
        with interruptible():
            first = _verify_only(src, identity)
        acceptable(first)
        rewind(0)
    with staging_folder(area) as folder:
        with interruptible():  # a signal here: the staging folder goes, nothing else
            staged = _stage(src, identity, folder)
        if first is not None and staged.canonical_bytes() != first.canonical_bytes():
            raise HostileArchiveError(
                "the transfer changed between two readings; refusing it"
            )
        # Checked again: the contacts, replay store or DEST may have changed meanwhile.
        prefix = accepted_last(staged)
        placer = Placer(folder, dest, prefix)
        try:
            placed = tuple(placer.place(entry.path) for entry in staged.files)
            placer.sync()
            # Pinned only now (trust on first use, or a newer bundle of the same
            # key): a transfer refused earlier changed no contact.
            sender = contacts.check_sender(staged.sender, allow_unverified=allow_unverified,
                                           now=when)
            replay.record(staged.transfer_id, when)
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
        return PlacedTransfer(manifest=staged, sender=sender, files=placed,
                              folder=dest / prefix if prefix else dest)
