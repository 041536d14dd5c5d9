"""The audit report: what ``sealdrop audit`` found, as plain values (no I/O).

One report per run: the checkpoint everything was verified against, the
history of the profile's own key, its contacts' keys, the transfers it sent
(with the recipients' signed receipts) and received, and a sentence for each
thing that did not verify. ``gather`` fills it, ``render_json`` and
``render_pdf`` write it out.

What is deliberately NOT in it: labels, file names, notes, DICOM summaries.
A DPO's report is about what the relay did (which keys it served, which
transfers it logged, which receipts it holds), not about patients; the
handles, relay ids, dates and hashes here are what the relay knows already
(docs/transparency.md, "The audit report").

All dates are unix seconds and are shown in UTC: a report filed by a DPO must
read the same wherever it is printed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointInfo:
    """The relay's signed checkpoint this report was verified against."""

    origin: str
    size: int
    root: bytes  # the Merkle tree hash, 32 bytes
    note: str  # the whole signed note, as the relay served it
    verified_at: int  # when this audit verified it


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEvent:
    """One of the profile's own key bundles (registration, then each rotation)."""

    bundle_digest: str  # hex SHA-256 of the bundle's signed message (crypto.tlog.entries)
    created: int | None  # the bundle's own time; None for a key this profile never made
    log_index: int | None  # its key entry in the log; None if the relay gave none
    verified: bool  # the entry at log_index is this bundle and is in the checkpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactKey:
    """A pinned contact and the log's word on its key."""

    handle: str
    safety_number: str
    verified_by_phone: bool  # the safety number was compared out of band
    added: int  # when it was pinned here
    log_index: int | None
    inclusion_verified: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptCheck:
    """A recipient's signed receipt for a sent transfer, as this audit checked it."""

    recipient: str
    status: str  # "downloaded" or "verified" (crypto.tlog.entries)
    at: int  # the time the recipient signed
    log_index: int | None
    signature_verified: bool  # with the recipient's pinned identity key
    inclusion_verified: bool  # its receipt entry is in the checkpoint
    # A tlog-proof kept in the sender's record (``status``) verified offline with
    # the pinned log key; None when none was kept.
    proof_verified: bool | None = None

    @property
    def verified(self) -> bool:
        return self.signature_verified and self.inclusion_verified


@dataclass(frozen=True, slots=True, kw_only=True)
class SentTransfer:
    relay_id: str
    at: int  # completed (else created), by the sender's own record
    recipients: tuple[str, ...]
    log_index: int | None  # the transfer commitment's entry
    commitment_verified: bool  # recomputed from the sender's own values, and included
    receipts: tuple[ReceiptCheck, ...] = ()
    # The relay no longer has it: checked from the sender's own record alone
    # (the log entry and receipts ``status`` kept).
    own_record_only: bool = False

    @property
    def verified(self) -> bool:
        return self.commitment_verified and all(r.verified for r in self.receipts)

    def receipt(self, recipient: str, status: str) -> ReceiptCheck | None:
        return next((r for r in self.receipts
                     if r.recipient == recipient and r.status == status), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedTransfer:
    relay_id: str
    at: int  # when it was received here
    sender: str
    log_index: int | None
    inclusion_verified: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One thing that did not verify, as a sentence naming it.

    ``at``: the date of the item it is about, so that ``--since`` drops failures
    of items it drops; None for what concerns the whole log (the checkpoint, a
    split view), which every report keeps.
    """

    text: str
    at: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """``--compare``: the checkpoint another client saw, and whether it agrees."""

    origin: str
    size: int
    root: bytes
    consistent: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    handle: str
    relay: str  # the relay URL this profile is pinned to
    checkpoint: CheckpointInfo
    own_keys: tuple[KeyEvent, ...] = ()
    contacts: tuple[ContactKey, ...] = ()
    sent: tuple[SentTransfer, ...] = ()
    received: tuple[ReceivedTransfer, ...] = ()
    failures: tuple[Failure, ...] = ()
    since: int | None = None  # --since, if given
    comparison: Comparison | None = None

    @property
    def ok(self) -> bool:
        """Everything listed verified: the CLI's exit status 0."""
        return not self.failures

    def filtered(self, since: int) -> AuditReport:
        """Only what happened at or after ``since``: the keys, contacts and transfers
        dated before it, and their failures, are left out; the checkpoint, the own
        key in force at ``since`` and log-wide failures stay."""
        dated = sorted((k for k in self.own_keys if k.created is not None),
                       key=lambda k: k.created or 0)
        in_force = [k for k in dated if (k.created or 0) < since][-1:]
        return dataclasses.replace(
            self,
            # a key this profile never made has no date: always listed
            own_keys=tuple(in_force + [k for k in self.own_keys
                                       if k.created is None or k.created >= since]),
            contacts=tuple(c for c in self.contacts if c.added >= since),
            sent=tuple(t for t in self.sent if t.at >= since),
            received=tuple(t for t in self.received if t.at >= since),
            failures=tuple(f for f in self.failures if f.at is None or f.at >= since),
            since=since,
        )

    def months(self) -> list[tuple[int, int]]:
        """Every (year, month) from the first dated event (or ``since``) to the month
        the checkpoint was verified, inclusive and without gaps: a month in which
        nothing happened is a page too, so that a filed report shows it."""
        end = month_of(self.checkpoint.verified_at)
        if self.since is not None:
            start = month_of(self.since)
        else:
            dates = list(self._dates())
            start = month_of(min(dates)) if dates else end
        start = min(start, end)
        out = []
        y, m = start
        while (y, m) <= end:
            out.append((y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out

    def _dates(self) -> Iterable[int]:
        yield from (k.created for k in self.own_keys if k.created is not None)
        yield from (c.added for c in self.contacts)
        yield from (t.at for t in self.sent)
        yield from (t.at for t in self.received)

    def in_month(self, year: int, month: int) -> MonthView:
        def inside(ts: int) -> bool:
            return month_of(ts) == (year, month)

        # A key this profile never made has no date: it shows on the page of the
        # month it was found in, the checkpoint's.
        found = month_of(self.checkpoint.verified_at) == (year, month)
        return MonthView(
            year=year, month=month,
            own_keys=tuple(k for k in self.own_keys
                           if (found if k.created is None else inside(k.created))),
            contacts=tuple(c for c in self.contacts if inside(c.added)),
            sent=tuple(t for t in self.sent if inside(t.at)),
            received=tuple(t for t in self.received if inside(t.at)),
            # what concerns the whole log is on every page
            failures=tuple(f for f in self.failures if f.at is None or inside(f.at)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthView:
    """What one page of the PDF shows: the events dated in one UTC month."""

    year: int
    month: int
    own_keys: tuple[KeyEvent, ...]
    contacts: tuple[ContactKey, ...]
    sent: tuple[SentTransfer, ...]
    received: tuple[ReceivedTransfer, ...]
    failures: tuple[Failure, ...]

    @property
    def title(self) -> str:
        return dt.date(self.year, self.month, 1).strftime("%B %Y")


def month_of(ts: int) -> tuple[int, int]:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.year, d.month


def utc_day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def utc_time(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_since(text: str) -> int:
    """``--since 2026-11-01`` (a UTC day) as unix seconds; ValueError if it is not one."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date: write it as YYYY-MM-DD") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
