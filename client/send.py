"""``sealdrop send``: seal files for one or more contacts and upload them, resumably.

    collect files -> refresh + check recipient keys -> plan (exact size) -> ResumeState
      -> relay: create transfer(size) -> save send record (outbox) -> seal -> chunks -> complete

Nothing in clear touches the disk: files are read, archived, encrypted and cut
into chunks in memory, one chunk at a time. The exact ciphertext size is known
before the first byte (crypto.container.predicted_size) and checked at the end.

An interrupted send (network, relay restart, Ctrl-C, killed process) is resumed
by running the same command again: same paths, recipients and note. The send
record pins everything that fixes the ciphertext's bytes (file key, header,
transfer id, created time, manifest inputs), so the run regenerates the very
same ciphertext, proves the chunks the relay holds match the chunk log, skips
them and uploads the rest. If the files changed in between, the interrupted
send is cancelled (relay transfer deleted) and the user is told to send again.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealdrop.crypto import age
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import SealdropCryptoError

from . import dicom as dicom_summary
from .errors import ClientError, ContactError, SealError, UnknownContactError
from .outbox import FileStamp, Outbox, SendRecord, job_key
from .profile import Session
from .relay_api import RelayNotFound
from .seal import (
    SourceFile,
    age_recipients,
    collect_files,
    media_type,
    new_resume_state,
    plan_transfer,
    seal_planned,
)
from .upload import DEFAULT_CHUNK, ChunkUploader, FilesChangedError

CHUNK_ENV = "SEALDROP_TEST_UPLOAD_CHUNK"  # tests: small chunks to interrupt mid-upload
PAUSE_ENV = "SEALDROP_TEST_UPLOAD_PAUSE"  # tests: seconds to wait after each chunk
RETRY_ENV = "SEALDROP_RETRY_FOR"  # seconds to ride out relay outages (default 300)
Random = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class SendResult:
    relay_id: str
    size: int
    recipients: tuple[str, ...]
    files: tuple[tuple[str, int], ...]
    resumed: bool
    skipped: int  # bytes the relay already held
    uploaded: int


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ClientError(f"{name} must be a number") from exc


def _stamp(files: Sequence[SourceFile], types: Sequence[str]) -> tuple[FileStamp, ...]:
    out = []
    for src, mtype in zip(files, types, strict=True):
        try:
            st = os.lstat(src.path)
        except OSError as exc:
            raise SealError(f"cannot read {src.path}: {exc.strerror}") from exc
        out.append(FileStamp(arcname=src.arcname, path=str(Path(src.path).absolute()),
                             size=st.st_size, mtime_ns=st.st_mtime_ns, media_type=mtype))
    return tuple(out)


def _media_types(files: Sequence[SourceFile]) -> list[str]:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    out = []
    for src in files:
        try:
            fd = os.open(src.path, flags)
            with os.fdopen(fd, "rb") as f:
                head = f.read(132)
        except OSError as exc:
            raise SealError(f"cannot open {src.path}: {exc.strerror}") from exc
        out.append(media_type(src.arcname, head))
    return out


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
            fresh = session.relay.get_bundle(handle)
        except RelayNotFound as exc:
            raise ContactError(f"the relay has no account {handle!r}") from exc
        out.append(session.contacts.check_recipient(
            fresh, allow_unverified=allow_unverified, now=now))
    return out


def send(
    session: Session,
    paths: Sequence[Path],
    to: Sequence[str],
    *,
    note: str = "",
    expires_in: int | None = None,
    allow_unverified: bool = False,
    restart: bool = False,
    on_start: Callable[[int, bool], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] = lambda m: print(f"sealdrop: {m}", file=sys.stderr),
    rand: Random = os.urandom,
    now: int | None = None,
) -> SendResult:
    when = int(time.time()) if now is None else now
    if not to:
        raise SealError("give at least one recipient with --to")
    files = collect_files(paths)
    outbox = Outbox(session.home, session.identity)
    key = job_key(session.config.relay, list(paths), list(to), note)
    previous = outbox.find(key)
    if previous is not None and restart:
        _cancel(session, outbox, previous)
        previous = None
    if previous is not None:
        resumed = _resume(session, outbox, previous, files, allow_unverified, when,
                          on_start, on_progress, warn)
        if resumed is not None:
            return resumed
    bundles = refresh_recipients(session, to, allow_unverified=allow_unverified, now=when)
    recipients = age_recipients(bundles, classical=False)
    types = _media_types(files)
    plan = plan_transfer(
        files, session.identity.bundle, bundles, note=note, transfer_id=rand(16),
        created=when, dicom=dicom_summary.summarise(files, types), media_types=types,
    )
    state = new_resume_state(recipients, rand)
    size = plan.ciphertext_size(state)
    created = session.relay.create_transfer([b.handle for b in bundles], size,
                                            expires_in=expires_in)
    chunk = int(_env_number(CHUNK_ENV, DEFAULT_CHUNK))
    record = SendRecord(
        relay_id=str(created["id"]), relay=session.config.relay, job_key=key,
        resume_state=state.to_bytes(), transfer_id=plan.transfer_id, created=when,
        recipients=tuple(b.to_json() for b in bundles), note=note, dicom=dict(plan.dicom),
        files=_stamp(files, types), chunk_size=chunk, size=size,
    )
    try:
        outbox.save(record)
    except BaseException:
        _delete_quietly(session, record.relay_id)
        raise
    return _upload(session, outbox, record, plan, state, committed=0, resumed=False,
                   on_start=on_start, on_progress=on_progress)


def _resume(session: Session, outbox: Outbox, record: SendRecord, files: list[SourceFile],
            allow_unverified: bool, now: int, on_start: Any, on_progress: Any,
            warn: Callable[[str], None]) -> SendResult | None:
    try:
        info = session.relay.status(record.relay_id)
    except RelayNotFound:
        outbox.remove(record.relay_id)
        warn("the interrupted send had expired or was deleted on the relay; sending anew")
        return None
    if info.get("state") == "complete":
        outbox.remove(record.relay_id)
        return _result(record, resumed=True, skipped=record.size, uploaded=0)
    bundles = record.bundles()
    for b in bundles:  # the pinned keys must still be the ones encrypted to
        session.contacts.check_recipient(b, allow_unverified=allow_unverified, now=now)
    stamps = {(f.arcname, f.path, f.size, f.mtime_ns) for f in record.files}
    current = _stamp(files, [f.media_type for f in record.files]) if len(files) == len(
        record.files) else ()
    if {(f.arcname, f.path, f.size, f.mtime_ns) for f in current} != stamps:
        _cancel(session, outbox, record)
        raise FilesChangedError(
            "the files changed since the send started; the interrupted send was cancelled, "
            "send again"
        )
    plan = plan_transfer(
        files, session.identity.bundle, bundles, note=record.note,
        transfer_id=record.transfer_id, created=record.created, dicom=record.dicom,
        media_types=[f.media_type for f in record.files],
    )
    state = age.ResumeState.from_bytes(record.resume_state)
    if plan.ciphertext_size(state) != record.size:
        _cancel(session, outbox, record)
        raise FilesChangedError(
            "the files changed since the send started; the interrupted send was cancelled, "
            "send again"
        )
    committed = session.relay.upload_offset(record.relay_id)
    return _upload(session, outbox, record, plan, state, committed=committed, resumed=True,
                   on_start=on_start, on_progress=on_progress)


def _upload(session: Session, outbox: Outbox, record: SendRecord, plan: Any,
            state: age.ResumeState, *, committed: int, resumed: bool, on_start: Any,
            on_progress: Any) -> SendResult:
    known = outbox.chunk_hashes(record.relay_id)
    if committed > len(known) * record.chunk_size and committed > 0:
        _cancel(session, outbox, record)
        raise ClientError(
            "the send state does not cover what the relay holds; the interrupted send was "
            "cancelled, send again"
        )
    if on_start is not None:
        on_start(record.size, resumed)
    journal = outbox.journal(record.relay_id, keep=len(known))
    uploader = ChunkUploader(
        session.relay, record.relay_id, size=record.size, chunk_size=record.chunk_size,
        committed=committed, known_hashes=known, journal=journal, on_progress=on_progress,
        retry_for=_env_number(RETRY_ENV, 300.0), pause=_env_number(PAUSE_ENV, 0.0),
    )
    try:
        try:
            seal_planned(plan, session.identity, uploader, state)
            uploader.close()
        except FilesChangedError:
            uploader.abort()
            _cancel(session, outbox, record)
            raise
        except SealdropCryptoError as exc:
            uploader.abort()
            raise SealError(f"cannot seal the transfer: {exc}") from exc
        except BaseException:
            uploader.abort()
            raise
    finally:
        journal.close()
    session.relay.complete(record.relay_id)
    outbox.remove(record.relay_id)
    return _result(record, resumed=resumed, skipped=min(committed, record.size),
                   uploaded=uploader.sent)


def _result(record: SendRecord, *, resumed: bool, skipped: int, uploaded: int) -> SendResult:
    return SendResult(
        relay_id=record.relay_id, size=record.size,
        recipients=tuple(str(b["handle"]) for b in record.recipients),
        files=tuple((f.arcname, f.size) for f in record.files),
        resumed=resumed, skipped=skipped, uploaded=uploaded,
    )


def _delete_quietly(session: Session, relay_id: str) -> None:
    try:
        session.relay.delete(relay_id)
    except ClientError:
        pass


def _cancel(session: Session, outbox: Outbox, record: SendRecord) -> None:
    try:
        session.relay.delete(record.relay_id)
    except RelayNotFound:
        pass
    outbox.remove(record.relay_id)


def unfinished(session: Session) -> list[SendRecord]:
    return Outbox(session.home, session.identity).records()
