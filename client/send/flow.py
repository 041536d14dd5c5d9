"""``sealdrop send``: seal files for one or more contacts and upload them, resumably.

    scan files -> refresh + check recipient keys -> plan (exact size) -> resume state
      -> relay: create transfer(size) -> save send record (outbox) -> seal -> chunks -> complete

Nothing in clear touches the disk: files are read, archived, encrypted and cut
into chunks in memory, one chunk at a time. The exact ciphertext size is known
before the first byte (crypto.container.predicted_size) and checked at the end.

An interrupted send (network, relay restart, Ctrl-C, killed process) is resumed
by running the same command again: same paths, recipients and note. The send
record pins everything that fixes the ciphertext's bytes (file key, header,
manifest id, created time, manifest inputs, chunk size), so the run
regenerates the very same ciphertext, proves the chunks the relay holds match
the chunk log, skips them and uploads the rest. If the files changed in
between, the interrupted send is cancelled (relay transfer deleted) and the
user is told to send again.

With ``deidentify`` (PS3.15 options), the files are first copied,
de-identified, into a private work folder of the profile (``deidwork``) and
those copies are what is scanned, planned and sealed: the manifest's DICOM
summary is computed from them, so it is de-identified too. The send record
keeps the pseudonym secret; the copies live as long as the record.
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
from sealdrop.crypto.errors import SealdropCryptoError
from sealdrop.crypto.protocol import DEFAULT_CHUNK_SIZE

from ..dicom.deidentify import SECRET_BYTES, DeidOptions
from ..errors import ClientError, FilesChangedError, SealError
from ..profile.outbox import FileStamp, SendRecord, job_key
from ..profile.sent import SentCase, SentSummaries
from ..profile.session import Session
from ..relay_api import RelayNotFound
from . import deidwork
from .again import WINDOW, content_key, find_repeat
from .card import attach_card
from .logged import check_sent
from .plan import SealPlan, plan_new_transfer, plan_transfer
from .recipients import refresh_recipients
from .scan import ScannedFile, check_malformed, scan
from .seal import seal
from .upload import ChunkUploader, OnRetry, check_chunk_size, fit_chunk_size, ride_out

Random = Callable[[int], bytes]
_CHANGED = ("the files changed since the send started; the interrupted send was cancelled, "
            "send again")


@dataclass(frozen=True, slots=True)
class SendResult:
    relay_id: str  # the relay's id of the transfer (what `status` and `receive` take)
    size: int
    recipients: tuple[str, ...]
    files: tuple[tuple[str, int], ...]
    resumed: bool
    skipped: int  # bytes the relay already held
    uploaded: int
    deidentified: bool = False  # sent with --deidentify (the copies, not the originals)


@dataclass(frozen=True, slots=True)
class _Upload:
    """How this run uploads: the same for a new send and a resumed one."""

    session: Session
    retry_for: float
    pause_after_chunk: float
    on_start: Callable[[int, bool], None] | None
    on_progress: Callable[[int], None] | None
    on_retry: OnRetry | None = None
    label: str = ""


def send(
    session: Session,
    paths: Sequence[Path],
    to: Sequence[str],
    *,
    note: str = "",
    expires_in: int | None = None,
    allow_unverified: bool = False,
    restart: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    retry_for: float = 300.0,
    pause_after_chunk: float = 0.0,
    on_start: Callable[[int, bool], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] = lambda m: print(f"sealdrop: {m}", file=sys.stderr),
    strict: bool = False,
    on_malformed: Callable[[str, str], None] | None = None,
    rand: Random = os.urandom,
    now: int | None = None,
    deidentify: DeidOptions | None = None,
    on_retry: OnRetry | None = None,
    label: str = "",
    again: bool = False,
    confirm_again: Callable[[str], bool] | None = None,
) -> SendResult:
    """Send ``paths`` to the handles ``to``, or resume the same send if it was interrupted.

    ``chunk_size`` applies to a new send, lowered to the relay's largest chunk
    if that is smaller; a resumed one keeps the size it started with.
    ``retry_for``: seconds to ride out relay outages before stopping (the send
    can then be run again). ``pause_after_chunk``: see
    ChunkUploader. ``on_start(size, resumed)`` and ``on_progress(bytes)`` feed
    a progress bar, and ``on_retry(seconds, error)`` hears each wait for an
    unreachable relay. A file that looks like DICOM but cannot be read is reported
    to ``on_malformed(name, reason)`` (default: a warning) and sent as an
    opaque file, or with ``strict`` the send is refused before anything is
    uploaded (``scan.check_malformed``). ``deidentify``: send de-identified
    copies (see above); ``warn`` is told what was not de-identified.
    ``label``: the sender's name for the case, on its card (``send.card``).
    The same files sent to the same recipients within a day (``send.again``)
    are refused unless ``again`` or ``confirm_again(question)`` says yes.
    """
    when = int(time.time()) if now is None else now
    if not to:
        raise SealError("give at least one recipient with --to")
    check_chunk_size(chunk_size)
    files = scan(paths)
    if deidentify is None:
        # With --deidentify a malformed file refuses the send instead (deidwork):
        # it is never sent as it is.
        check_malformed(files, strict=strict, warn=on_malformed or (
            lambda name, why: warn(f"warning: {name} looks like DICOM but cannot be read "
                                   f"({why}); sent as an opaque file")))
    job = _Upload(session, retry_for, pause_after_chunk, on_start, on_progress, on_retry,
                  label)
    key = job_key(session.config.relay, list(paths), list(to), note,
                  deid=None if deidentify is None else deidentify.to_json())
    previous = session.outbox.find(key)
    if previous is not None and restart:
        _cancel(session, previous)
        previous = None
    if previous is not None:
        sent = files
        if deidentify is not None:
            tops = deidwork.resumed_tops(session.home, key, previous.deid, files,
                                         [(f.arcname, f.mtime_ns) for f in previous.files])
            if tops is None:
                _cancel(session, previous)
                raise FilesChangedError(_CHANGED)
            sent = scan(tops)
        resumed = _resume(job, previous, sent, allow_unverified, when, warn)
        if resumed is not None:
            return resumed
    sent_cases = SentSummaries(session.home, session.identity)
    content = content_key(files)
    if not again:
        _refuse_repeat(sent_cases, content, to, when, confirm_again)
    bundles = refresh_recipients(session, to, allow_unverified=allow_unverified, now=when)
    # A relay configured for smaller chunks than ours says so: fit them to it.
    # The chunk hash is fixed for the transfer's life: a resume keeps the record's.
    relay_limit, relay_least, chunk_hash = session.relay.upload_bounds()
    chunk_size = fit_chunk_size(chunk_size, relay_limit, relay_least)
    # The copies are made once the recipients are known good: a refused
    # contact leaves no folder behind.
    deid_record = None
    if deidentify is not None:
        deidwork.sweep(session.home, {r.job_key for r in session.outbox.records()}, time.time())
        secret = rand(SECRET_BYTES)
        copies = deidwork.make_copies(session.home, key, files, deidentify, secret)
        for notice in copies.notices:
            warn(notice)
        deid_record = deidwork.record_field(deidentify, secret, files)
        files = scan(copies.tops)
    plan, state = plan_new_transfer(files, session.identity.bundle, bundles, note=note,
                                    created=when, rand=rand)
    size = plan.ciphertext_size(state)
    created = session.relay.create_transfer([b.handle for b in bundles], size,
                                            expires_in=expires_in)
    record = SendRecord(
        relay_id=str(created["id"]), relay=session.config.relay, job_key=key,
        resume_state=state.to_bytes(), manifest_id=plan.manifest_id, created=when,
        recipients=tuple(b.to_json() for b in bundles), note=note, dicom=dict(plan.dicom),
        files=_stamps(files), chunk_size=chunk_size, size=size, deid=deid_record,
        chunk_hash=chunk_hash,
    )
    try:
        session.outbox.save(record)
    except BaseException:
        _delete_quietly(session, record.relay_id)
        raise
    try:  # for `sealdrop status` and "again?"; the transfer does not need it
        sent_cases.save_case(SentCase(
            relay_id=record.relay_id, label=label, recipients=tuple(b.handle for b in bundles),
            file_count=len(files), size=sum(f.size for f in files), created=when,
            content=content, dicom=dict(plan.dicom)))
    except ClientError as exc:
        warn(f"warning: {exc}; `sealdrop status` will not show what it carries")
    attach_card(session, record.relay_id, plan, label, warn)
    return _upload(job, record, plan, state, committed=0, resumed=False)


def _refuse_repeat(cases: SentSummaries, content: str, to: Sequence[str], now: int,
                   confirm: Callable[[str], bool] | None) -> None:
    # A record changes when its send completes: older files cannot be a repeat.
    repeat = find_repeat(cases.cases(since=now - WINDOW), content, to, now=now)
    if repeat is None:
        return
    sent_at = repeat.case.completed_at or repeat.case.created
    what = repeat.message(time.strftime("%H:%M", time.localtime(sent_at)))
    if confirm is not None and confirm(what[0].upper() + what[1:] + ". Send again?"):
        return
    raise ClientError(f"{what}; not sent again",
                      hint="to send the same files again, add --again")


def _completed(session: Session, relay_id: str, info: dict[str, Any],
               digest: str | None) -> None:
    """The upload is complete: the sender's record says when (for "again?") and,
    once checked in the log (``digest`` from our own chunk log), its log entry."""
    changes: dict[str, Any] = {"completed_at": int(time.time())}
    log = info.get("log")
    if digest is not None and isinstance(log, dict):
        changes.update(log=dict(log), digest=digest)
    try:
        SentSummaries(session.home, session.identity).update(relay_id, **changes)
    except ClientError:
        pass  # only the "again?" question misses it


def _stamps(files: Sequence[ScannedFile]) -> tuple[FileStamp, ...]:
    return tuple(FileStamp(arcname=f.arcname, path=str(f.path.absolute()), size=f.size,
                           mtime_ns=f.mtime_ns, media_type=f.media_type) for f in files)


def _resume(job: _Upload, record: SendRecord, files: list[ScannedFile],
            allow_unverified: bool, now: int, warn: Callable[[str], None]) -> SendResult | None:
    session = job.session
    try:
        info = session.relay.status(record.relay_id)
    except RelayNotFound:
        session.outbox.remove(record.relay_id)
        warn("the interrupted send had expired or was deleted on the relay; sending anew")
        return None
    if info.get("state") == "complete":
        _completed(session, record.relay_id, info, check_sent(session, record, info))
        _forget(session, record)
        return _result(record, resumed=True, skipped=record.size, uploaded=0)
    least = session.relay.upload_bounds()[1]
    if least is not None and record.chunk_size < least:
        # The relay moved to object storage (5 MiB parts) since this send began
        # with smaller chunks; its chunk log is in those, so it cannot go on.
        _cancel(session, record)
        warn(f"the relay now needs chunks of at least {least} bytes, more than this "
             "interrupted send used; sending anew from the start")
        return None
    bundles = record.bundles()
    for b in bundles:  # the pinned keys must still be the ones encrypted to
        session.contacts.check_recipient(b, allow_unverified=allow_unverified, now=now)

    def fingerprint(stamps: Sequence[FileStamp]) -> set[tuple[str, str, int, int]]:
        return {(f.arcname, f.path, f.size, f.mtime_ns) for f in stamps}

    if fingerprint(_stamps(files)) != fingerprint(record.files):
        _cancel(session, record)
        raise FilesChangedError(_CHANGED)
    # Media types and the DICOM summary as pinned when the send started.
    plan = plan_transfer(
        files, session.identity.bundle, bundles, note=record.note,
        manifest_id=record.manifest_id, created=record.created, dicom=record.dicom,
        media_types=[f.media_type for f in record.files],
    )
    state = age.ResumeState.from_bytes(record.resume_state)
    if plan.ciphertext_size(state) != record.size:
        _cancel(session, record)
        raise FilesChangedError(_CHANGED)
    committed = session.relay.upload_offset(record.relay_id)
    # Run again without --label: the card keeps the label the send started with.
    kept = SentSummaries(session.home, session.identity).case(record.relay_id)
    label = job.label or (kept.label if kept is not None else "")
    attach_card(session, record.relay_id, plan, label, warn)
    return _upload(job, record, plan, state, committed=committed, resumed=True)


def _upload(job: _Upload, record: SendRecord, plan: SealPlan, state: age.ResumeState, *,
            committed: int, resumed: bool) -> SendResult:
    session, outbox = job.session, job.session.outbox
    known = outbox.chunk_hashes(record.relay_id)
    if committed > len(known) * record.chunk_size and committed > 0:
        _cancel(session, record)
        raise ClientError(
            "the send state does not cover what the relay holds; the interrupted send was "
            "cancelled, send again"
        )
    if job.on_start is not None:
        job.on_start(record.size, resumed)
    journal = outbox.journal(record.relay_id, keep=len(known))
    uploader = ChunkUploader(
        session.relay, record.relay_id, size=record.size, chunk_size=record.chunk_size,
        committed=committed, known_hashes=known, journal=journal, on_progress=job.on_progress,
        algorithm=record.chunk_hash,
        retry_for=job.retry_for, pause_after_chunk=job.pause_after_chunk,
        on_retry=job.on_retry,
    )
    try:
        try:
            seal(plan, session.identity, uploader, state)
            uploader.close()
        except FilesChangedError:
            uploader.abort()
            _cancel(session, record)
            raise
        except SealdropCryptoError as exc:
            uploader.abort()
            raise SealError(f"cannot seal the transfer: {exc}") from exc
        except BaseException:
            uploader.abort()
            raise
    finally:
        journal.close()
    info = ride_out(lambda: session.relay.complete(record.relay_id),
                    retry_for=job.retry_for, on_retry=job.on_retry)
    # In the relay's log as we sent it; the record keeps the entry, so that the
    # audit can check it even if the relay later stops listing the transfer.
    digest = ride_out(lambda: check_sent(session, record, info),
                      retry_for=job.retry_for, on_retry=job.on_retry)
    _completed(session, record.relay_id, info, digest)
    _forget(session, record)
    return _result(record, resumed=resumed, skipped=min(committed, record.size),
                   uploaded=uploader.sent)


def _result(record: SendRecord, *, resumed: bool, skipped: int, uploaded: int) -> SendResult:
    return SendResult(
        relay_id=record.relay_id, size=record.size,
        recipients=tuple(str(b["handle"]) for b in record.recipients),
        files=tuple((f.arcname, f.size) for f in record.files),
        resumed=resumed, skipped=skipped, uploaded=uploaded,
        deidentified=record.deid is not None,
    )


def _delete_quietly(session: Session, relay_id: str) -> None:
    try:
        session.relay.delete(relay_id)
    except ClientError:
        pass


def _cancel(session: Session, record: SendRecord) -> None:
    try:
        session.relay.delete(record.relay_id)
    except RelayNotFound:
        pass
    _forget(session, record)


def _forget(session: Session, record: SendRecord) -> None:
    """The send is over (complete or cancelled): its record and de-identified copies go."""
    session.outbox.remove(record.relay_id)
    if record.deid is not None:
        deidwork.remove(session.home, record.job_key)
