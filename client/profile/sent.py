"""The DICOM summaries of transfers sent from this profile, for ``sealdrop status``.

The relay knows a sent transfer only as ciphertext, and the send record
(``outbox``) goes once the upload is complete: so what a transfer carried
("CT, 1 series, 412 images, DUPONT^Marie, 2026-11-30") is kept here, one file
per transfer (``layout.sent_file``), age-encrypted to the user's own key like
the send record, since it names patients. Written when the send starts;
``status`` reads it. Summaries older than ``MAX_AGE_DAYS`` are removed on the
next save: no relay keeps a transfer that long.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sealdrop.crypto import age
from sealdrop.crypto.identity import SecretIdentity

from ..errors import ClientError
from ..outfile import atomic_output
from .layout import SENT_DIR, SENT_FILE, sent_file

MAX_AGE_DAYS = 400
_MAX = 32 * 1024 * 1024


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
        path = sent_file(self._home, relay_id)
        buf = io.BytesIO()
        with age.Encryptor(buf, [age.parse_recipient(self._identity.bundle.pq)]) as enc:
            enc.write(json.dumps({"v": 1, "dicom": dict(dicom)}, sort_keys=True).encode())
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with atomic_output(path, mode=0o600) as f:
                f.write(buf.getvalue())
        except OSError as exc:
            raise ClientError(f"cannot save the transfer's summary in {self.dir}: "
                              f"{exc.strerror}") from exc
        self._prune(time.time() if now is None else now)

    def load(self, relay_id: str) -> dict[str, Any] | None:
        """The summary kept for ``relay_id``; None if none is (or it is damaged)."""
        try:
            data = sent_file(self._home, relay_id).read_bytes()[:_MAX]
            with age.Decryptor(io.BytesIO(data), self._identity.age_identities()) as dec:
                obj = json.loads(dec.read(_MAX))
        except (OSError, age.AgeError, ValueError, ClientError):
            return None
        dicom = obj.get("dicom") if isinstance(obj, dict) else None
        return dicom if isinstance(dicom, dict) else None

    def _prune(self, now: float) -> None:
        cutoff = now - MAX_AGE_DAYS * 86400
        for p in self.dir.glob(f"*{SENT_FILE}"):
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
