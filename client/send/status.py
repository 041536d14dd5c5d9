"""``sealdrop status``: what happened to what I sent, per recipient.

uploaded (the relay holds all of it), downloaded (the recipient fetched the
ciphertext), verified (the recipient decrypted it, checked every hash and the
signature, and placed the files), or dismissed (the recipient refused it, or
removed it from their inbox). These are the relay's records, reported by
the recipient's client: a relay could lie about them, never about contents.
With the transparency log, a status the recipient signed (a receipt verified
with its pinned key, in the log) is told apart from the relay's word alone,
and a forged receipt stops ``status`` (client/tlog/receipts.py).
Unfinished (interrupted) sends kept in the local outbox are listed too.

Each row also carries what the sender's own record (``profile.sent``) says:
``label``, ``file_count`` and ``dicom``, the DICOM summary this profile signed
into the transfer (else the unfinished send's record), ``{}`` if none is known
here. Transfers the relay no longer lists but the record remembers are rows
too, with state ``retracted`` or ``gone`` (expired or deleted on the relay),
for ``RECENT_DAYS`` (any age when asked by id).
The label and summary name patients: the CLI shows them, and puts them in
JSON only with ``--json-phi``.
"""

from __future__ import annotations

import time
from typing import Any

from ..profile.sent import SentCase, SentSummaries
from ..profile.session import Session
from ..relay_api import RelayNotFound
from ..tlog.receipts import SIGNED, ReceiptCheck, check_receipts

# Transfers only the sender's records remember are listed if their record
# changed in this many days (sent, completed or retracted); older ones by id.
RECENT_DAYS = 31


def _row(t: dict[str, Any], checks: dict[str, ReceiptCheck] | None = None) -> dict[str, Any]:
    uploaded = t.get("state") == "complete"

    def receipts(handle: str) -> dict[str, str | None] | None:
        c = None if checks is None else checks.get(handle)
        return None if c is None else {"downloaded": c.downloaded, "verified": c.verified}
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
                # Per status: "signed" (the recipient's receipt, verified with its
                # pinned key and in the log), "claimed" (the relay's word only), or
                # None; the whole is None when no log is followed (client.tlog).
                "receipts": receipts(str(r["handle"])),
            }
            for r in t.get("recipients", [])
        ],
    }


def _local_row(case: SentCase) -> dict[str, Any]:
    """A transfer the relay no longer lists: what the sender's record says."""
    return {
        "id": case.relay_id,
        "state": "retracted" if case.retracted_at is not None else "gone",
        "size": None, "committed": None, "created_at": case.created or None,
        "expires_at": None, "retracted_at": case.retracted_at,
        "recipients": [{"handle": h, "uploaded": case.completed_at is not None,
                        "downloaded": False, "verified": False, "downloaded_at": None,
                        "verified_at": None, "dismissed": False, "dismissed_at": None,
                        "receipts": _kept_words(case, h)}
                       for h in case.recipients],
    }


def _kept_words(case: SentCase, handle: str) -> dict[str, str | None] | None:
    """What the kept receipts (checked while the relay had them) say for ``handle``."""
    if not case.receipts:
        return None
    have = {r.get("status") for r in case.receipts if r.get("recipient") == handle}
    return {s: SIGNED if s in have else None for s in ("downloaded", "verified")}


def _checked_row(session: Session, t: dict[str, Any]) -> dict[str, Any]:
    """``_row`` with each recipient's receipts checked: raises ForgedReceiptError.
    The receipts checked are kept in the sender's record with their proofs."""
    summaries = SentSummaries(session.home, session.identity)
    # Whether a log entry is required is decided by our own record of the
    # transfer, never by the relay's answer (which could just drop "log").
    case = summaries.case(str(t["id"]))
    at = None if case is None else (case.completed_at or case.created or None)
    checks = check_receipts(session.log, session.contacts, session.identity.handle, t,
                            required=session.log.requires_log(at))
    if checks:
        _keep_receipts(summaries, t, [k for c in checks.values() for k in c.kept])
    return _row(t, checks)


def _keep_receipts(summaries: SentSummaries, t: dict[str, Any],
                   kept: list[dict[str, Any]]) -> None:
    """Add the receipts not kept yet to the record of ``t`` (with what checking
    them again needs: the log entry and digest); the record is rewritten only
    when something is new."""
    relay_id = str(t["id"])
    case = summaries.case(relay_id)
    have = {(r.get("recipient"), r.get("status")) for r in case.receipts} if case else set()
    new = [k for k in kept if (k["recipient"], k["status"]) not in have]
    if not new:
        return
    log = t.get("log") if isinstance(t.get("log"), dict) else {}
    changes: dict[str, Any] = {"log": dict(log or {}), "digest": str(t.get("digest") or "")}
    if case is None:  # sent from before records were kept: the relay's recipients
        summaries.save_case(SentCase(
            relay_id=relay_id, recipients=tuple(str(r["handle"]) for r in t["recipients"]),
            receipts=tuple(new), **changes))
    else:
        summaries.update(relay_id, receipts=(*case.receipts, *new), **changes)


def transfer_status(session: Session, relay_id: str | None) -> list[dict[str, Any]]:
    """One row per sent transfer (or just ``relay_id``), newest state from the relay,
    then those only the sender's records remember (retracted, expired)."""
    unfinished = {r.relay_id: r for r in session.outbox.records()}
    summaries = SentSummaries(session.home, session.identity)
    if relay_id is not None:
        try:
            rows = [_checked_row(session, session.relay.status(relay_id))]
        except RelayNotFound:
            case = summaries.case(relay_id)
            if case is None:
                raise
            rows = [_local_row(case)]
    else:
        rows = [_checked_row(session, t) for t in session.relay.sent()]
        listed = {str(r["id"]) for r in rows}
        since = time.time() - RECENT_DAYS * 86400
        rows += [_local_row(c) for c in summaries.cases(since=since)
                 if c.relay_id not in listed]
    for row in rows:
        record = unfinished.get(row["id"])
        if record is not None and row["state"] not in ("sent", "retracted", "gone"):
            row["state"] = "interrupted"
        case = summaries.case(str(row["id"]))
        row.setdefault("retracted_at", None if case is None else case.retracted_at)
        row["label"] = case.label if case is not None else ""
        row["file_count"] = case.file_count if case is not None and case.file_count else (
            len(record.files) if record else None)
        kept = case.dicom if case is not None and case.dicom else None
        row["dicom"] = kept if kept is not None else dict(record.dicom) if record else {}
        # The signed receipts kept with their tlog-proofs ("proof"): they outlive
        # the relay's copy; no patient data in them (a signature over a commitment).
        row["receipts"] = [dict(r) for r in case.receipts] if case is not None else []
    return rows
