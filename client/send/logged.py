"""The sender's own check that a completed transfer is in the relay's log.

After ``complete`` the relay logs a commitment to (salt, transfer id, sender,
recipients, chunk-list digest) (crypto.tlog.entries). The sender recomputes
it from its OWN values: the recipients it encrypted to, and the chunk-list
digest from its chunk log (the hashes it uploaded, one per ``chunk_size``
bytes), never the relay's word; then checks that the log holds it.
"""

from __future__ import annotations

from typing import Any

from sealdrop.crypto import chunkhash, chunklist

from ..errors import LogInclusionError
from ..profile.outbox import SendRecord
from ..profile.session import Session
from ..tlog.logclient import CALL


def our_digest(record: SendRecord, hashes: list[str]) -> str:
    """The relay's digest of the blob (crypto.chunklist), from our chunk log:
    chunk ``i`` ends at ``(i + 1) * chunk_size``, the last one at ``size``."""
    return chunklist.chunk_list_digest(
        (min((i + 1) * record.chunk_size, record.size), chunkhash.tag(record.chunk_hash, value))
        for i, value in enumerate(hashes))


def check_sent(session: Session, record: SendRecord, info: dict[str, Any]) -> str | None:
    """The completed transfer ``record`` is logged as we sent it; ``info`` is the
    relay's answer to ``complete`` (or ``status``). Raises LogVerificationError.
    Returns our chunk-list digest (None when the profile follows no log)."""
    if session.log.pinned() is None:
        return None
    hashes = session.outbox.chunk_hashes(record.relay_id)
    ours = our_digest(record, hashes)
    if info.get("digest") not in (None, ours):
        raise LogInclusionError(
            f"the relay recorded other content for transfer {record.relay_id} than what this "
            "computer uploaded", hint=CALL)
    session.log.check_transfer(record.relay_id, info, sender=session.identity.handle,
                               recipients=[b.handle for b in record.bundles()], digest=ours)
    return ours
