"""``sealdrop-relay log verify``: the operator's check of the transparency log.

Two halves. ``read_rows`` reads every row the log is made of, in one read
transaction; ``check`` (pure) recomputes and compares:

* every entry from 0 to the head's size is there, none beyond, and parses;
* every stored subtree hash equals the hash of its two stored children (the
  leaf hash of its entry at level 0): so an edited entry or hash row is named
  where it was edited, not at every hash above it; every complete subtree
  hash is stored, none beyond the head;
* the head's root is the root recomputed from the entries alone
  (``MemoryHashes``, the crypto package's naive tree);
* every key entry is a bundle in the key history whose digest it is, and
  each account's current bundle is its latest logged one; every logged
  transfer's entry is the commitment of its row; every logged receipt's entry
  is the salted hash of its row, whose signature the recipient's key makes.

What it cannot see: a log rewritten whole, entries and hashes consistently.
The clients' consistency proofs from the checkpoints they kept catch that
(docs/transparency.md). Transfer and receipt entries whose transfer gc has
deleted since are counted, not matched: their rows are gone by design.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import SealdropCryptoError
from sealdrop.crypto.tlog.entries import (
    KeyEntry,
    Receipt,
    ReceiptEntry,
    TransferEntry,
    bundle_digest,
    parse_entry,
    receipt_digest,
    transfer_commitment,
    verify_receipt,
)
from sealdrop.crypto.tlog.merkle import MemoryHashes, leaf_hash, node_hash

from . import tlog
from .db import accounts, key_log, recipients, tlog_entries, tlog_hashes, tlog_receipts, transfers

# Enough to act on; the rest is counted.
MAX_PROBLEMS = 50


@dataclass(slots=True)
class LogRows:
    size: int
    root: bytes
    entries: dict[int, bytes]
    hashes: dict[tuple[int, int], bytes]
    key_log: list[dict[str, Any]]
    accounts: list[dict[str, Any]]
    transfers: list[dict[str, Any]]  # logged ones, each with "recipients"
    receipts: list[dict[str, Any]]


@dataclass(slots=True)
class LogReport:
    size: int = 0
    keys: int = 0
    transfers: int = 0
    receipts: int = 0
    unmatched: int = 0  # transfer and receipt entries whose rows gc deleted
    problems: list[str] = field(default_factory=list)
    more: int = 0  # problems past MAX_PROBLEMS

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more += 1

    def lines(self) -> list[str]:
        out = list(self.problems)
        if self.more:
            out.append(f"... and {self.more} more problem(s)")
        if self.ok:
            out.append(
                f"ok: the log's {self.size} entries ({self.keys} key, {self.transfers} "
                f"transfer, {self.receipts} receipt) match its hashes, its head and the "
                f"relay's rows; {self.unmatched} belong to transfers deleted since")
        else:
            out.append(
                f"the transparency log does NOT verify ({len(self.problems) + self.more} "
                "problem(s)); restore the database from a backup taken before the first "
                "entry named, and tell the clinics (docs/transparency.md)")
        return out

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "size": self.size, "keys": self.keys,
                "transfers": self.transfers, "receipts": self.receipts,
                "unmatched": self.unmatched, "problems": self.problems, "more": self.more}


def read_rows(conn: sa.Connection) -> LogRows:
    size, root = tlog.read_head(conn)

    def dicts(stmt: Any) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in conn.execute(stmt)]

    logged = dicts(sa.select(transfers).where(transfers.c.log_index.is_not(None)))
    names: dict[str, list[str]] = {}
    for tid, who in conn.execute(sa.select(recipients.c.transfer_id, recipients.c.recipient)):
        names.setdefault(str(tid), []).append(str(who))
    for t in logged:
        t["recipients"] = names.get(t["id"], [])
    return LogRows(
        size=size, root=root,
        entries={int(i): bytes(d) for i, d in conn.execute(
            sa.select(tlog_entries.c.idx, tlog_entries.c.data))},
        hashes={(int(lv), int(i)): bytes(h) for lv, i, h in conn.execute(
            sa.select(tlog_hashes.c.level, tlog_hashes.c.idx, tlog_hashes.c.hash))},
        key_log=dicts(sa.select(key_log)),
        accounts=dicts(sa.select(accounts.c.handle, accounts.c.signing_key, accounts.c.bundle,
                                 accounts.c.log_index)),
        transfers=logged,
        receipts=dicts(sa.select(tlog_receipts)),
    )


def _span(level: int, idx: int) -> str:
    first = idx << level
    if level == 0:
        return f"entry {first}"
    return f"entries {first}-{first + (1 << level) - 1}"


def _check_tree(rows: LogRows, report: LogReport) -> MemoryHashes:
    size = rows.size
    for i in sorted(set(rows.entries) - set(range(size))):
        report.add(f"entry {i} lies beyond the head ({size} entries): it was added "
                   "outside the relay, or the head was moved back")
    leaves = []
    for i in range(size):
        data = rows.entries.get(i)
        if data is None:
            report.add(f"entry {i} is missing from tlog_entries (the log had {size} entries)")
            leaves.append(rows.hashes.get((0, i), b"\0" * 32))  # keep the tree's shape
            continue
        leaves.append(leaf_hash(data))
    for (level, idx), stored in sorted(rows.hashes.items()):
        if idx >= size >> level:
            report.add(f"tlog_hashes holds a hash for {_span(level, idx)} (level {level}), "
                       f"beyond the head ({size} entries)")
            continue
        if level == 0:
            expected = leaves[idx]
        else:
            left, right = rows.hashes.get((level - 1, 2 * idx)), rows.hashes.get(
                (level - 1, 2 * idx + 1))
            if left is None or right is None:
                continue  # the missing child is named below
            expected = node_hash(left, right)
        if stored != expected:
            what = ("its data does not hash to the stored leaf hash" if level == 0 else
                    f"the stored hash of level {level} is not the hash of the two below it")
            report.add(f"{_span(level, idx)}: {what} (an entry or a row of tlog_hashes "
                       "was edited)")
    for level in range(size.bit_length()):
        for idx in range(size >> level):
            if (level, idx) not in rows.hashes:
                report.add(f"the hash of {_span(level, idx)} (level {level}) is missing "
                           "from tlog_hashes")
    tree = MemoryHashes(leaves)
    if size and tree.root() != rows.root:
        report.add(f"the head's root is not the root of the {size} entries stored: the "
                   "head or the entries were changed")
    elif not size and rows.root != tree.root():
        report.add("the head of the empty log does not hold the empty tree's root")
    return tree


def _check_keys(rows: LogRows, parsed: dict[int, object], report: LogReport) -> None:
    history = {int(k["log_index"]): k for k in rows.key_log}
    for i, entry in parsed.items():
        if not isinstance(entry, KeyEntry):
            continue
        report.keys += 1
        k = history.get(i)
        if k is None:
            report.add(f"entry {i} logs a key for {entry.handle} that no bundle in key_log "
                       "matches: a key the relay never registered, or a key_log row deleted")
            continue
        if k["handle"] != entry.handle or k["bundle_digest"] != entry.bundle_digest.hex():
            report.add(f"entry {i} (a key for {entry.handle}) differs from its key_log row")
            continue
        try:
            digest = bundle_digest(KeyBundle.loads(str(k["bundle"])))
        except SealdropCryptoError:
            report.add(f"entry {i}: the bundle kept in key_log for {entry.handle} does not "
                       "parse")
            continue
        if digest != entry.bundle_digest:
            report.add(f"entry {i}: the bundle kept in key_log for {entry.handle} is not the "
                       "one logged (the row was edited)")
    for i in sorted(set(history) - {i for i, e in parsed.items() if isinstance(e, KeyEntry)}):
        report.add(f"key_log row {i} ({history[i]['handle']}) points at entry {i}, which is "
                   "not a key entry")
    for a in rows.accounts:
        if a["log_index"] is None:
            report.add(f"account {a['handle']} has no key entry (the next relay start logs it)")
            continue
        k = history.get(int(a["log_index"]))
        if k is None or k["handle"] != a["handle"] or k["bundle"] != a["bundle"]:
            report.add(f"account {a['handle']}'s current bundle is not the one logged at entry "
                       f"{a['log_index']}: the bundle it serves was changed outside the relay")
        elif any(int(o["log_index"]) > int(a["log_index"]) and o["handle"] == a["handle"]
                 for o in rows.key_log):
            report.add(f"account {a['handle']} serves an older bundle than its latest logged one")


def _check_transfers(rows: LogRows, parsed: dict[int, object], report: LogReport) -> None:
    by_index = {int(t["log_index"]): t for t in rows.transfers}
    for i, entry in parsed.items():
        if not isinstance(entry, TransferEntry):
            continue
        report.transfers += 1
        t = by_index.get(i)
        if t is None:
            report.unmatched += 1
            continue
        try:
            commitment = transfer_commitment(bytes(t["log_salt"]), t["id"], t["sender"],
                                             t["recipients"], t["digest"] or "")
        except SealdropCryptoError:
            commitment = b""
        if commitment != entry.commitment:
            report.add(f"entry {i}: transfer {t['id']} (from {t['sender']}) no longer matches "
                       "the commitment logged for it: its sender, recipients, digest or salt "
                       "was changed")
    for i in sorted(set(by_index) - {i for i, e in parsed.items()
                                     if isinstance(e, TransferEntry)}):
        report.add(f"transfer {by_index[i]['id']} points at entry {i}, which is not a "
                   "transfer entry")


def _check_receipts(rows: LogRows, parsed: dict[int, object], report: LogReport) -> None:
    by_index = {int(r["log_index"]): r for r in rows.receipts}
    transfers_by_id = {t["id"]: t for t in rows.transfers}
    keys = {a["handle"]: a["signing_key"] for a in rows.accounts}
    for i, entry in parsed.items():
        if not isinstance(entry, ReceiptEntry):
            continue
        report.receipts += 1
        r = by_index.get(i)
        if r is None:
            report.unmatched += 1
            continue
        who, tid = r["recipient"], r["transfer_id"]
        t = transfers_by_id.get(tid)
        if t is None:
            report.add(f"entry {i}: the receipt of {who} for transfer {tid} belongs to a "
                       "transfer that was never logged")
            continue
        logged = parsed.get(int(t["log_index"]))
        if not isinstance(logged, TransferEntry):
            continue  # the transfer's own check names it
        try:
            # The commitment as logged: a transfer row changed since is named
            # by its own check, not again for each of its receipts.
            receipt = Receipt(tid, logged.commitment, who, r["status"], int(r["at"]))
            sig = bytes(r["sig"])
            verify_receipt(receipt, sig, base64.b64decode(keys.get(who, "")))
            ok = receipt_digest(bytes(t["log_salt"]), receipt, sig) == entry.digest
        except (SealdropCryptoError, ValueError):
            report.add(f"entry {i}: the {r['status']} receipt of {who} for transfer {tid} "
                       f"does not verify with {who}'s signing key")
            continue
        if not ok:
            report.add(f"entry {i}: the {r['status']} receipt of {who} for transfer {tid} is "
                       "not the one logged (the row was changed)")
    for i in sorted(set(by_index) - {i for i, e in parsed.items()
                                     if isinstance(e, ReceiptEntry)}):
        report.add(f"a receipt row points at entry {i}, which is not a receipt entry")


def check(rows: LogRows) -> LogReport:
    report = LogReport(size=rows.size)
    _check_tree(rows, report)
    parsed: dict[int, object] = {}
    for i in range(rows.size):
        data = rows.entries.get(i)
        if data is None:
            continue
        try:
            parsed[i] = parse_entry(data)
        except SealdropCryptoError as exc:
            report.add(f"entry {i} is not a sealdrop log entry: {exc}")
    _check_keys(rows, parsed, report)
    _check_transfers(rows, parsed, report)
    _check_receipts(rows, parsed, report)
    return report
