"""The sender's record of each case sent from this profile, for ``status`` and "again?".

The relay knows a sent transfer only as ciphertext, may expire or delete it,
and the send record (``outbox``) goes once the upload is complete: so what
the sender needs to recognise a case later is kept here, one file per
transfer (``layout.sent_file``): the label, the recipients, the file count
and size, when it was created, completed or retracted, a fingerprint of the
files for "you sent these already" (``send.again``), and the DICOM summary
("CT, 1 series, 412 images, DUPONT^Marie, 2026-11-30"). Age-encrypted to the
user's own key like the send record, since labels and summaries name
patients. With a log, ``status`` adds the transfer's ``log`` entry (index,
salt), its chunk-list ``digest`` and each recipient's signed ``receipts``
with their tlog-proofs (``client.tlog.receipts.kept_receipt``), once it has
checked them: so ``audit`` can check them again after the relay deleted
the transfer. Written when the send starts; ``status`` reads it. Records older
than ``MAX_AGE_DAYS`` are removed on the next save: no relay keeps a transfer
that long.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealdrop.crypto import age
from sealdrop.crypto.identity import SecretIdentity

from ..errors import ClientError
from .filelock import locked
from .layout import SENT_DIR, SENT_FILE, sent_file
from .ownsealed import read_sealed, write_sealed

MAX_AGE_DAYS = 400
_MAX = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SentCase:
    """One sent transfer as its sender knows it (never the relay's word)."""

    relay_id: str
    label: str = ""
    recipients: tuple[str, ...] = ()
    file_count: int = 0
    size: int = 0  # the files' total, in clear
    created: int = 0
    content: str = ""  # send.again.content_key of the files sent
    completed_at: int | None = None
    retracted_at: int | None = None
    dicom: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)  # {"index", "salt"} as the relay said
    digest: str = ""  # the chunk-list digest the log commitment is over
    receipts: tuple[dict[str, Any], ...] = ()  # checked signed receipts, with proofs

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["recipients"] = list(self.recipients)
        out["receipts"] = [dict(r) for r in self.receipts]
        return out

    @classmethod
    def from_json(cls, relay_id: str, obj: Mapping[str, Any]) -> SentCase:
        """Read leniently: a version-1 file holds only ``dicom``."""
        def num(key: str) -> int | None:
            v = obj.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        recipients = obj.get("recipients")
        dicom = obj.get("dicom")
        log, receipts = obj.get("log"), obj.get("receipts")
        return cls(
            relay_id=relay_id,
            label=str(obj.get("label") or ""),
            recipients=tuple(str(r) for r in recipients) if isinstance(recipients, list) else (),
            file_count=num("file_count") or 0, size=num("size") or 0,
            created=num("created") or 0, content=str(obj.get("content") or ""),
            completed_at=num("completed_at"), retracted_at=num("retracted_at"),
            dicom=dict(dicom) if isinstance(dicom, dict) else {},
            log=dict(log) if isinstance(log, dict) else {},
            digest=str(obj.get("digest") or ""),
            receipts=tuple(dict(r) for r in receipts if isinstance(r, dict))
            if isinstance(receipts, list) else (),
        )


class SentSummaries:
    def __init__(self, home: Path, identity: SecretIdentity) -> None:
        self._home = Path(home)
        self.dir = self._home / SENT_DIR
        self._identity = identity

    def save(self, relay_id: str, dicom: Mapping[str, Any], *, now: float | None = None
             ) -> None:
        """Keep ``dicom`` (the transfer's summary) for ``relay_id``; nothing if it is empty."""
        if not dicom:
            return
        self.save_case(SentCase(relay_id=relay_id, dicom=dict(dicom)), now=now)

    def save_case(self, case: SentCase, *, now: float | None = None) -> None:
        """Write (or overwrite) the record of ``case``."""
        plain = json.dumps({"v": 2, **case.to_json()}, sort_keys=True).encode()
        try:
            write_sealed(sent_file(self._home, case.relay_id), plain, self._identity)
        except OSError as exc:
            raise ClientError(f"cannot save the record of the sent case in {self.dir}: "
                              f"{exc.strerror}") from exc
        self._prune(time.time() if now is None else now)

    def update(self, relay_id: str, **changes: Any) -> SentCase | None:
        """Change fields of a kept record (e.g. ``completed_at``, ``retracted_at``),
        under the profile's lock for this folder; None if there is no record."""
        if not sent_file(self._home, relay_id).exists():
            return None
        with locked(sent_file(self._home, relay_id)):
            case = self.case(relay_id)
            if case is None:
                return None
            case = dataclasses.replace(case, **changes)
            self.save_case(case)
            return case

    def load(self, relay_id: str) -> dict[str, Any] | None:
        """The summary kept for ``relay_id``; None if none is (or it is damaged)."""
        case = self.case(relay_id)
        return None if case is None or not case.dicom else case.dicom

    def case(self, relay_id: str) -> SentCase | None:
        """The record kept for ``relay_id``; None if none is (or it is damaged)."""
        try:
            obj = json.loads(read_sealed(sent_file(self._home, relay_id), self._identity, _MAX))
        except (OSError, age.AgeError, ValueError, ClientError):
            return None
        return SentCase.from_json(relay_id, obj) if isinstance(obj, dict) else None

    def cases(self, *, since: float = 0.0) -> list[SentCase]:
        """Every readable record written or changed since ``since`` (unix seconds),
        newest first. Why the file time first: each record is decrypted to be read,
        and a busy practice keeps thousands; most questions are about the last days."""
        out = []
        for p in self.dir.glob(f"*{SENT_FILE}"):
            try:
                if p.stat().st_mtime < since:
                    continue
            except OSError:
                continue
            case = self.case(p.name[:-len(SENT_FILE)])
            if case is not None:
                out.append(case)
        return sorted(out, key=lambda c: (-c.created, c.relay_id))

    def _prune(self, now: float) -> None:
        cutoff = now - MAX_AGE_DAYS * 86400
        # The records, and the lock files ``update`` left beside them.
        for p in [*self.dir.glob(f"*{SENT_FILE}"), *self.dir.glob(f"*{SENT_FILE}.lock")]:
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
