"""``sealdrop audit --json``: the report as one JSON object with stable keys.

The keys are documented in docs/transparency.md ("The audit report") and are
a contract for scripts: add keys, never rename or remove one without bumping
``version``. Times are unix seconds (UTC); hashes are lower-case hex, except
the tree root, which is base64 as in the checkpoint text itself.
"""

from __future__ import annotations

import base64
from typing import Any

from .model import AuditReport, ReceiptCheck

VERSION = 1


def _receipt(r: ReceiptCheck) -> dict[str, Any]:
    return {"recipient": r.recipient, "status": r.status, "at": r.at,
            "log_index": r.log_index, "signature_verified": r.signature_verified,
            "inclusion_verified": r.inclusion_verified, "verified": r.verified,
            "proof_verified": r.proof_verified}


def to_json(report: AuditReport) -> dict[str, Any]:
    cp = report.checkpoint
    cmp = report.comparison
    return {
        "version": VERSION,
        "ok": report.ok,
        "handle": report.handle,
        "relay": report.relay,
        "since": report.since,
        "checkpoint": {
            "origin": cp.origin, "size": cp.size,
            "root": base64.b64encode(cp.root).decode(),
            "note": cp.note, "verified_at": cp.verified_at,
        },
        "own_keys": [
            {"bundle_digest": k.bundle_digest, "created": k.created,
             "log_index": k.log_index, "verified": k.verified}
            for k in report.own_keys
        ],
        "contacts": [
            {"handle": c.handle, "safety_number": c.safety_number,
             "verified_by_phone": c.verified_by_phone, "added": c.added,
             "log_index": c.log_index, "inclusion_verified": c.inclusion_verified}
            for c in report.contacts
        ],
        "sent": [
            {"id": t.relay_id, "at": t.at, "recipients": list(t.recipients),
             "log_index": t.log_index, "commitment_verified": t.commitment_verified,
             "verified": t.verified, "receipts": [_receipt(r) for r in t.receipts],
             "own_record_only": t.own_record_only}
            for t in report.sent
        ],
        "received": [
            {"id": t.relay_id, "at": t.at, "sender": t.sender, "log_index": t.log_index,
             "inclusion_verified": t.inclusion_verified}
            for t in report.received
        ],
        "compared_with": None if cmp is None else {
            "origin": cmp.origin, "size": cmp.size,
            "root": base64.b64encode(cmp.root).decode(), "consistent": cmp.consistent,
        },
        "failures": [f.text for f in report.failures],
    }
