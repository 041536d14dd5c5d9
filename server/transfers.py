"""Transfers: create, resumable chunked upload, finalise, download, ack, dismiss, delete.

The upload state machine (docs/protocol.md has the diagram)::

    create ──► uploading(committed=0) ──PATCH at committed──► uploading(committed+n)
                    │                                              │
                    └───────────── POST complete, committed == size ┴──► complete

The committed offset lives in the database row and advances, together with a
record of the chunk's (end offset, tagged hash: crypto.chunkhash), only after the chunk is written
into the partial blob and its hash verified. The chunk is not fsynced (that
cost more than the whole rest of the upload): a SIGKILL loses nothing, and
after a power loss start-up recovery re-hashes the partial blob along the
recorded chunks and moves the offset back to the last intact one; clients
always resume from HEAD. ``complete`` fsyncs the blob before the transfer
becomes visible, so what the relay calls complete is durable. A transfer is
visible to its recipients only once complete, and only to its sender and
recipients at all: everyone else gets ``NotFound``, exactly as for an unknown id.
A recipient who dismissed a transfer, blocked its sender, or whose sender the
operator disabled, no longer sees it either (``server.inbox``, ``server.blocking``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from sealdrop.crypto import chunkhash
from sealdrop.crypto.bundle import HANDLE_RE
from sealdrop.crypto.protocol import MIN_EXPIRY_SECONDS, ErrorCode, new_transfer_id
from sealdrop.crypto.tlog.entries import SALT_SIZE, transfer_entry

from . import receipts
from .blobs import check_key, chunk_list_digest
from .errors import (
    Busy,
    Conflict,
    InvalidInput,
    NotFound,
    OffsetMismatch,
    StoreUnavailable,
    TooLarge,
)
from .locks import exclusive
from .metadata import COMPLETE, UPLOADING, Account, ReceiptRow, RecipientStatus, Transfer
from .state import Relay


def _int_field(body: dict[str, Any], name: str, default: int | None = None) -> int:
    if name not in body:
        if default is None:
            raise InvalidInput(f"field {name} is required", code=ErrorCode.BAD_JSON)
        return default
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"field {name} must be an integer", code=ErrorCode.BAD_JSON)
    return value


def to_json(
    t: Transfer, viewer: str, signed: list[ReceiptRow] | None = None
) -> dict[str, Any]:
    """The transfer as ``viewer`` may see it; ``signed``: its logged
    receipts, all of them to the sender, to a recipient only its own (the
    ack's answer: where its receipt is in the log, for it to check)."""
    out: dict[str, Any] = {
        "id": t.id,
        "sender": t.sender,
        "size": t.size,
        "state": t.state,
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "completed_at": t.completed_at,
        "digest": t.digest,
    }
    if viewer == t.sender:
        out["committed"] = t.committed
        out["recipients"] = [
            {"handle": r.handle, "downloaded_at": r.downloaded_at, "verified_at": r.verified_at,
             "dismissed_at": r.dismissed_at}
            for r in t.recipients
        ]
    mine = t.recipient(viewer)
    if mine is not None:
        out["delivery"] = {"downloaded_at": mine.downloaded_at, "verified_at": mine.verified_at,
                           "dismissed_at": mine.dismissed_at}
    if t.log_index is not None and t.log_salt is not None:
        # Only the parties see the salt: without it a log reader cannot tell
        # which transfer an entry commits to (docs/transparency.md).
        out["log"] = {"index": t.log_index, "salt": _b64(t.log_salt)}
        if signed is not None and (viewer == t.sender or mine is not None):
            out["receipts"] = [
                {"recipient": r.recipient, "status": r.status, "at": r.at, "sig": _b64(r.sig),
                 "log_index": r.log_index}
                for r in signed if viewer == t.sender or r.recipient == viewer
            ]
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def create(relay: Relay, sender: Account, body: dict[str, Any]) -> Transfer:
    cfg = relay.config
    unknown = set(body) - {"recipients", "size", "expires_in"}
    if unknown:
        raise InvalidInput(f"unexpected field {sorted(unknown)[0]}", code=ErrorCode.BAD_JSON)
    to = body.get("recipients")
    if not isinstance(to, list) or not to:
        raise InvalidInput(
            "field recipients must be a non-empty list of handles", code=ErrorCode.BAD_JSON
        )
    if len(to) > cfg.max_recipients:
        raise InvalidInput(
            f"at most {cfg.max_recipients} recipients", code=ErrorCode.TOO_MANY_RECIPIENTS
        )
    for h in to:
        if not isinstance(h, str) or not HANDLE_RE.fullmatch(h):
            raise InvalidInput("a recipient is not a valid handle", code=ErrorCode.BAD_HANDLE)
    if len(set(to)) != len(to):
        raise InvalidInput(
            "a recipient is listed twice", code=ErrorCode.DUPLICATE_RECIPIENT
        )
    size = _int_field(body, "size")
    if size <= 0:
        raise InvalidInput("field size must be positive", code=ErrorCode.BAD_SIZE)
    if size > cfg.max_transfer_bytes:
        raise TooLarge(
            f"a transfer may be at most {cfg.max_transfer_bytes} bytes",
            code=ErrorCode.TRANSFER_TOO_LARGE,
        )
    expires_in = _int_field(body, "expires_in", cfg.default_expiry_seconds)
    if not MIN_EXPIRY_SECONDS <= expires_in <= cfg.max_expiry_seconds:
        raise InvalidInput(
            f"field expires_in must be between {MIN_EXPIRY_SECONDS} and "
            f"{cfg.max_expiry_seconds} seconds",
            code=ErrorCode.BAD_EXPIRY,
        )
    now = relay.now()
    # Refuses a recipient who blocks the sender, in the same transaction.
    tid = new_transfer_id()
    await relay.store.create_transfer(
        transfer_id=tid,
        sender=sender.handle,
        to=list(to),
        size=size,
        now=now,
        expires_at=now + expires_in,
        quota=cfg.quota_bytes,
    )
    relay.metrics.inc("sealdrop_transfers_created_total")
    # Built from what was just committed instead of read back: one round trip less.
    return Transfer(
        id=tid, sender=sender.handle, size=size, committed=0, state=UPLOADING, digest=None,
        created_at=now, updated_at=now, completed_at=None, expires_at=now + expires_in,
        recipients=tuple(RecipientStatus(h, None, None) for h in sorted(to)),
    )


async def visible(
    relay: Relay,
    who: Account,
    transfer_id: str,
    *,
    sender_only: bool,
    dismissed_too: bool = False,
) -> Transfer:
    """The transfer if ``who`` may see it; otherwise ``NotFound`` exactly as if unknown.

    A recipient sees a complete transfer unless they dismissed it (``dismissed_too``
    lets ``dismiss`` be repeated), blocked its sender, or its sender is disabled.
    """
    try:
        check_key(transfer_id)
    except InvalidInput:
        raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND) from None
    # The transfer and whether it is hidden from ``who``: one read.
    t, hidden = await relay.store.transfer_for(transfer_id, who.handle)
    if t is not None and t.expires_at > relay.now():
        if t.sender == who.handle:
            return t
        mine = t.recipient(who.handle)
        if (
            not sender_only
            and t.state == COMPLETE
            and mine is not None
            and (dismissed_too or mine.dismissed_at is None)
            and not hidden
        ):
            return t
    raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    committed: int
    size: int


async def upload_chunk(
    relay: Relay,
    sender: Account,
    t: Transfer,
    *,
    offset: int,
    length: int,
    digest: str,
    source: AsyncIterator[bytes],
) -> ChunkResult:
    if t.state == COMPLETE:
        raise Conflict("the transfer is already complete", code=ErrorCode.ALREADY_COMPLETE)
    if length <= 0:
        raise InvalidInput("an upload chunk must not be empty", code=ErrorCode.BAD_LENGTH)
    if length > relay.config.max_chunk_bytes:
        raise TooLarge(
            f"a chunk may be at most {relay.config.max_chunk_bytes} bytes",
            code=ErrorCode.CHUNK_TOO_LARGE,
        )
    if offset + length > t.size:
        raise InvalidInput(
            f"the chunk ends past the declared transfer size ({t.size} bytes)",
            code=ErrorCode.CHUNK_PAST_END,
        )
    if length < relay.blobs.min_chunk_bytes and offset + length < t.size:
        # S3 blobs: each chunk is a multipart part, and S3 refuses to complete
        # an upload with a part under 5 MiB other than the last.
        raise InvalidInput(
            f"a chunk other than the last must be at least {relay.blobs.min_chunk_bytes} "
            "bytes on this relay (GET /v1/info: min_chunk_bytes)",
            code=ErrorCode.CHUNK_TOO_SMALL,
        )
    async with exclusive(relay.locks, relay.upload_leases, relay.blobs, t.id) as lease:
        # Re-read under the lock: another request may have advanced the offset.
        progress = await relay.store.progress(t.id)
        if progress is None:
            raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND)
        state, committed = progress
        if state == COMPLETE:
            raise Conflict("the transfer is already complete", code=ErrorCode.ALREADY_COMPLETE)
        if offset < committed and offset + length <= committed:
            # A re-sent chunk: fine if it is byte-for-byte what we hold.
            recorded = dict(await relay.store.chunks(t.id))
            algorithm = chunkhash.untag(digest)[0]
            end = recorded.get(offset + length)
            if (end is not None and chunkhash.untag(end)[0] == algorithm
                    and (offset == 0 or offset in recorded)):
                stored: str | None = end
            else:  # not on the recorded boundaries (or another hash): hash the blob
                stored = await relay.blobs.partial_digest(
                    t.id, offset, offset + length, algorithm
                )
            if stored != digest:
                raise OffsetMismatch(
                    f"a different chunk is already committed at offset {offset}",
                    committed=committed,
                )
            h = chunkhash.new(algorithm)
            n = 0
            async for piece in source:
                h.update(piece)
                n += len(piece)
            if n != length or chunkhash.tag(algorithm, h.hexdigest()) != digest:
                raise InvalidInput(
                    "chunk does not match its hash header",
                    code=ErrorCode.CHECKSUM_MISMATCH,
                )
            return ChunkResult(committed, t.size)
        if offset != committed:
            raise OffsetMismatch(
                f"upload offset {offset} does not match the committed offset {committed}",
                committed=committed,
            )
        await relay.blobs.write_chunk(t.id, offset, source, length=length, digest=digest)
        # Fenced by the lease, which the same transaction lets go of.
        if not await relay.store.advance(
            t.id, old=offset, new=offset + length, sha256=digest, now=relay.now(),
            fence=None if lease is None else lease.fence, release=lease is not None,
        ):
            held = None if lease is None else await relay.store.lease_holder(lease.name)
            if lease is not None and (held is None or held[0] != lease.owner):
                # Overtaken: this request stalled past its lease and another
                # holds the upload now. Its bytes past the offset are the new
                # holder's to write: cut nothing, commit nothing.
                raise Busy("this upload was taken over by another request; try again",
                           code=ErrorCode.UPLOAD_BUSY)
            await relay.blobs.truncate_partial(t.id, offset)
            raise OffsetMismatch("the upload moved on concurrently; ask for the offset again")
        if lease is not None:
            lease.released = True
    relay.metrics.inc("sealdrop_upload_bytes_total", length)
    return ChunkResult(offset + length, t.size)


async def complete(relay: Relay, t: Transfer) -> Transfer:
    if t.state == COMPLETE:
        return t
    async with exclusive(relay.locks, relay.upload_leases, relay.blobs, t.id) as lease:
        # Re-read under the lock, with the chunk records: one read.
        fresh, recorded = await relay.store.completion(t.id)
        if fresh is None:
            raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND)
        if fresh.state == COMPLETE:
            return fresh
        if fresh.committed != fresh.size:
            raise Conflict(
                f"only {fresh.committed} of {fresh.size} bytes have been uploaded",
                code=ErrorCode.INCOMPLETE_UPLOAD,
            )
        if not recorded or recorded[-1][0] != fresh.size:
            raise StoreUnavailable("the chunk records of the upload are incomplete")
        # finalize fsyncs the blob (most of it was already on its way to the device)
        # and renames it into place: only then may the row say complete.
        size = await relay.blobs.truncate_partial(t.id, fresh.size)
        if size == fresh.size:
            await relay.blobs.finalize(t.id, fresh.size)
        elif (await relay.blobs.check_chunks(t.id, [], complete=True))[1] != fresh.size:
            # Neither a whole partial blob nor one finalised by an earlier attempt
            # that died before the row update.
            raise StoreUnavailable("the uploaded blob is missing from the blob store")
        now = relay.now()
        digest = chunk_list_digest(recorded)
        # A fresh salt per transfer: the logged commitment says nothing to a
        # reader without it, and only the parties get it (to_json).
        salt = os.urandom(SALT_SIZE)
        entry = transfer_entry(
            salt, t.id, fresh.sender, [r.handle for r in fresh.recipients], digest).to_bytes()
        # Logs it and lets go of the lease in the same transaction (if that
        # raises, the rollback kept it, and leaving the block lets go of it).
        index = await relay.store.complete(
            t.id, digest=digest, now=now, log_entry=entry, log_salt=salt,
            release=None if lease is None else lease.fence)
        if lease is not None:
            lease.released = True
        if index is None:
            raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND)
    relay.locks.drop(t.id)
    relay.metrics.inc("sealdrop_transfers_completed_total")
    # The row as the update above left it (read under the lock): no second read.
    return replace(fresh, state=COMPLETE, digest=digest, completed_at=now, updated_at=now,
                   log_salt=salt, log_index=index)


async def ack(relay: Relay, who: Account, t: Transfer, body: dict[str, Any]) -> Transfer:
    if t.recipient(who.handle) is None:
        raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND)
    if (set(body) not in ({"status"}, {"status", "receipt"})
            or body["status"] not in ("downloaded", "verified")):
        raise InvalidInput(
            'the body must be {"status": "downloaded"} or {"status": "verified"}, '
            'optionally with "receipt": {"at": ..., "sig": ...}',
            code=ErrorCode.BAD_JSON,
        )
    status = body["status"]
    now = relay.now()
    # A receipt is checked before anything is written; without one (older
    # clients) the ack is recorded and nothing is logged.
    receipt = (
        receipts.checked(who, t, status, body["receipt"], now=now,
                         skew=relay.config.clock_skew_seconds)
        if "receipt" in body else None
    )
    # The transfer as the ack's own transaction left it: no second round trip.
    fresh = await relay.store.ack(
        t.id, who.handle, verified=status == "verified", now=now, receipt=receipt
    )
    if fresh is None:
        raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND)
    return fresh


async def dismiss(relay: Relay, who: Account, t: Transfer) -> None:
    """``who`` refuses or dismisses ``t``: it leaves their inbox for good, the sender
    sees when, and once every recipient dismissed it gc deletes it (``ops.gc``)."""
    if t.recipient(who.handle) is None:
        raise NotFound("no such transfer", code=ErrorCode.TRANSFER_NOT_FOUND)
    await relay.store.dismiss(t.id, who.handle, now=relay.now())


async def delete(relay: Relay, t: Transfer, *, reason: str = "sender") -> None:
    # Row first, then blob: a crash in between leaves a blob without a row,
    # which gc and verify remove; the reverse would serve a row with no data.
    async with exclusive(relay.locks, relay.upload_leases, relay.blobs, t.id):
        await relay.store.delete_transfer(t.id)
        await relay.blobs.delete(t.id)
    relay.locks.drop(t.id)
    relay.metrics.inc("sealdrop_transfers_deleted_total", reason=reason)
