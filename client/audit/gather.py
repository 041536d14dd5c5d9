"""Building the audit report: the profile's own stores, the relay's word, the whole log.

I/O lives here and only here: the relay (its transfers, its log tiles), the
profile's stores (own key, log state, contacts, sent records, received
transfers). Every check is ``verify``'s, over plain facts.

Where each fact comes from, and so what the audit can and cannot prove
(docs/transparency.md, "The audit report"):
- own key: ``bundle.json`` and the log state's list of bundles this profile made;
- contacts: the contacts store (pinned bundle, verified by phone or not);
- sent: the relay's list of this account's transfers, with the recipients from
  the sender's own record (``profile.sent``) when it has one; the salt, the
  receipts and the chunk-list digest are the relay's (the digest was checked
  against the sender's own chunk journal when the send completed);
- received: the commitment this profile computed and checked when it received
  the transfer (from the signed manifest's sender and recipients), kept in the
  receipts store (``profile.receipts``); the relay only names the sender.
Sent transfers the relay no longer holds (expired, retracted) are checked from
the sender's own record when ``status`` kept their log entry (salt, index)
and signed receipts with their tlog-proofs there (``SentTransfer.own_record_only``);
without that (never looked at with ``status`` while the relay had them) they
cannot be checked again (their salt went with them) and are left out.
Received ones still are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sealdrop.crypto.errors import LogError
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.entries import bundle_digest
from sealdrop.crypto.tlog.tiles import TILE_WIDTH, entries_path, split_entry_bundle

from ..errors import LogInclusionError, LogUnavailableError
from ..profile.identity import load_public_bundle
from ..profile.logstate import LogStateStore
from ..profile.sent import SentCase, SentSummaries
from ..profile.session import Session
from ..relay_api import RelayNotFound
from .model import AuditReport, CheckpointInfo, Failure, ReceivedTransfer, SentTransfer
from .verify import (
    ContactFacts,
    LogIndex,
    OwnKeyFacts,
    ReceivedFacts,
    RelayReceipt,
    SentFacts,
    audit_contacts,
    audit_own_keys,
    audit_received,
    audit_sent,
    check_entries,
    relay_log_fields,
    relay_receipts,
)


@dataclass(frozen=True, slots=True)
class LogSnapshot:
    """A verified checkpoint and every entry of the tree it signs (root checked)."""

    checkpoint: CheckpointInfo
    entries: Sequence[bytes]


def current_checkpoint(session: Session) -> tuple[str, Checkpoint, str]:
    """(note, checkpoint, vkey): the relay's current checkpoint as the session's
    LogClient verified it (signed by the pinned key, consistent with the last one
    this profile verified, new entries scanned: ``client.tlog.logclient``)."""
    state = session.log.pinned()
    verified = session.log.current()
    if state is None or verified is None:
        raise LogUnavailableError(
            "the relay serves no transparency log, so there is nothing to verify against",
            hint="ask the relay's operator to upgrade it")
    return verified.note, verified.checkpoint, state.vkey


def read_log(fetch: Callable[[str], bytes], note: str, cp: Checkpoint, *,
             now: int | None = None) -> LogSnapshot:
    """Every entry of the checkpoint's tree, from the relay's entry tiles (one GET per
    256 entries), checked against its root. ``note`` must already be verified (the
    LogClient did: signature, and consistency with what this profile saw before).
    Why the whole log and not a proof per item: then no entry can be left out of
    the audit, a key under our handle included; a relay with a million entries is
    about 4,000 tiles, once per audit."""
    entries: list[bytes] = []
    for n in range(0, (cp.size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, cp.size - n * TILE_WIDTH)
        try:
            bundle = split_entry_bundle(fetch(entries_path(n, width)))
        except LogError as exc:
            raise LogInclusionError(f"the relay's log entries ({entries_path(n, width)}) are "
                                    f"malformed: {exc}") from exc
        if len(bundle) != width:
            raise LogInclusionError(
                f"the relay's entry tile {entries_path(n, width)} holds {len(bundle)} "
                f"entries, not {width}")
        entries.extend(bundle)
    try:
        check_entries(entries, cp.size, cp.root)
    except LogError as exc:
        raise LogInclusionError(str(exc)) from exc
    return LogSnapshot(
        checkpoint=CheckpointInfo(origin=cp.origin, size=cp.size, root=cp.root, note=note,
                                  verified_at=int(time.time()) if now is None else now),
        entries=entries)


def gather(session: Session, log: LogSnapshot) -> AuditReport:
    """The whole report for ``session``'s profile, checked against ``log``."""
    index = LogIndex.build(log.entries)
    failures: list[Failure] = list(index.failures)

    state = LogStateStore(session.home).load()
    bundle = load_public_bundle(session.home)
    own_events, more = audit_own_keys(OwnKeyFacts(
        handle=bundle.handle, digest=bundle_digest(bundle).hex(), created=bundle.created,
        made=state.own if state is not None else ()), index)
    failures += more

    pinned = session.contacts.list()
    contacts, more = audit_contacts([
        ContactFacts(handle=c.handle, safety_number=c.safety_number,
                     verified_by_phone=c.verified, added=c.added,
                     digest=bundle_digest(c.bundle).hex(),
                     signing_key=bytes(c.bundle.signing_key))
        for c in pinned], index)
    failures += more
    keys = {c.handle: bytes(c.bundle.signing_key) for c in pinned}

    sent: list[SentTransfer] = []
    records = SentSummaries(session.home, session.identity)
    log_key = (state.origin, state.vkey) if state is not None else None
    listed: set[str] = set()
    for t in session.relay.sent():
        listed.add(str(t["id"]))
        if t.get("state") != "complete":
            continue  # not logged before it is complete
        facts = _sent_facts(t, records.case(str(t["id"])), bundle.handle)
        row, more = audit_sent(facts, index, keys, log_key)
        sent.append(row)
        failures += more
    for case in records.cases():
        if case.relay_id in listed or not case.log:
            continue  # the relay's copy was checked above; or nothing kept to check
        row, more = audit_sent(_kept_facts(case, bundle.handle), index, keys, log_key)
        sent.append(row)
        failures += more

    received: list[ReceivedTransfer] = []
    for relay_id, entry in sorted(session.receipts.load().items()):
        got = _received_facts(session, relay_id, entry)
        if got is None:
            continue
        row_r, more = audit_received(got, index)
        received.append(row_r)
        failures += more

    return AuditReport(
        handle=bundle.handle, relay=session.config.relay, checkpoint=log.checkpoint,
        own_keys=tuple(own_events), contacts=tuple(contacts),
        sent=tuple(sorted(sent, key=lambda t: (t.at, t.relay_id))),
        received=tuple(sorted(received, key=lambda t: (t.at, t.relay_id))),
        failures=tuple(failures))


def _int(v: Any) -> int | None:
    return v if type(v) is int else None


def _sent_facts(t: dict[str, Any], case: SentCase | None, me: str) -> SentFacts:
    salt, log_index = relay_log_fields(t)
    relay_recipients = tuple(str(r.get("handle")) for r in t.get("recipients") or []
                             if isinstance(r, dict))
    # Our own record of whom we sent to, where we have one: the relay cannot
    # change the recipients of what we sent without the audit noticing.
    recipients = case.recipients if case is not None and case.recipients else relay_recipients
    at = ((case.completed_at if case is not None else None) or _int(t.get("completed_at"))
          or _int(t.get("created_at")) or 0)
    return SentFacts(relay_id=str(t["id"]), at=at, sender=me, recipients=recipients,
                     digest=str(t.get("digest") or ""), salt=salt, log_index=log_index,
                     receipts=_with_kept(relay_receipts(t), case))


def _with_kept(shown: tuple[RelayReceipt, ...], case: SentCase | None
               ) -> tuple[RelayReceipt, ...]:
    """The relay's receipts, each with the proof our record kept for the same
    signature, then those our record kept that the relay no longer shows."""
    kept = relay_receipts({"receipts": list(case.receipts)}) if case is not None else ()
    out = []
    for r in shown:
        same = next((k for k in kept if (k.recipient, k.status, k.at, k.sig)
                     == (r.recipient, r.status, r.at, r.sig)), None)
        out.append(r if same is None else replace(r, proof=same.proof))
    seen = {(r.recipient, r.status) for r in shown}
    return (*out, *(k for k in kept if (k.recipient, k.status) not in seen))


def _kept_facts(case: SentCase, me: str) -> SentFacts:
    """A sent transfer the relay deleted, from the record ``status`` kept."""
    salt, log_index = relay_log_fields({"log": case.log})
    return SentFacts(relay_id=case.relay_id, at=case.completed_at or case.created,
                     sender=me, recipients=case.recipients, digest=case.digest, salt=salt,
                     log_index=log_index, receipts=relay_receipts({"receipts":
                                                                   list(case.receipts)}),
                     own_record_only=True)


def _received_facts(session: Session, relay_id: str, entry: dict[str, Any]
                    ) -> ReceivedFacts | None:
    """None for a transfer received before the relay had a log: no commitment was
    recorded, and none is in the log."""
    try:
        commitment = bytes.fromhex(str(entry.get("commitment")))
    except ValueError:
        return None
    if len(commitment) != 32:
        return None
    try:  # only to name the sender: the commitment is checked without the relay
        t: dict[str, Any] = session.relay.status(relay_id)
    except RelayNotFound:
        t = {}
    _, log_index = relay_log_fields(t)
    return ReceivedFacts(relay_id=relay_id, at=_int(entry.get("at")) or 0,
                         sender=str(t.get("sender") or ""), commitment=commitment,
                         log_index=log_index)
