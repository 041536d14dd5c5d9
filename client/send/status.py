"""``sealdrop status``: what happened to what I sent, per recipient.

uploaded (the relay holds all of it), downloaded (the recipient fetched the
ciphertext), verified (the recipient decrypted it, checked every hash and the
signature, and placed the files), or dismissed (the recipient refused it, or
removed it from their inbox). These are the relay's records, reported by
the recipient's client: a relay could lie about them, never about contents.
Unfinished (interrupted) sends kept in the local outbox are listed too.

Each row also carries ``dicom``: the DICOM summary this profile signed into
the transfer (``profile.sent``, else the unfinished send's record), ``{}`` if
none is known here. It names patients: the CLI shows it, and puts it in JSON
only in its patient-free form unless asked (``--json-phi``).
"""

from __future__ import annotations

from typing import Any

from ..profile.sent import SentSummaries
from ..profile.session import Session


def _row(t: dict[str, Any]) -> dict[str, Any]:
    uploaded = t.get("state") == "complete"
    return {
        "id": t["id"],
        "state": "sent" if uploaded else "uploading",
        "size": t.get("size"),
        "committed": t.get("committed"),
        "created_at": t.get("created_at"),
        "expires_at": t.get("expires_at"),
        "recipients": [
            {
                "handle": r["handle"],
                "uploaded": uploaded,
                "downloaded": r.get("downloaded_at") is not None,
                "verified": r.get("verified_at") is not None,
                "downloaded_at": r.get("downloaded_at"),
                "verified_at": r.get("verified_at"),
                # The recipient refused or dismissed it (docs/protocol.md, dismiss).
                "dismissed": r.get("dismissed_at") is not None,
                "dismissed_at": r.get("dismissed_at"),
            }
            for r in t.get("recipients", [])
        ],
    }


def transfer_status(session: Session, relay_id: str | None) -> list[dict[str, Any]]:
    """One row per sent transfer (or just ``relay_id``), newest state from the relay."""
    unfinished = {r.relay_id: r for r in session.outbox.records()}
    if relay_id is not None:
        rows = [_row(session.relay.status(relay_id))]
    else:
        rows = [_row(t) for t in session.relay.sent()]
    summaries = SentSummaries(session.home, session.identity)
    for row in rows:
        record = unfinished.get(row["id"])
        if record is not None and row["state"] != "sent":
            row["state"] = "interrupted"
        kept = summaries.load(str(row["id"]))
        row["dicom"] = kept if kept is not None else dict(record.dicom) if record else {}
    return rows
