"""Forwards into a PACS: per transfer and target, which instances the PACS stored.

The forwards file of the profile folder (``layout.FORWARDS_FILE``) maps each
relay id received with a forward target to where its files were placed
(path in the transfer, path on disk, the SHA-256 the sender signed) and, per
target (``dimse:AET@HOST:PORT`` or ``dicomweb:URL``), one flag per DICOM file:
stored or not, the PACS's last word on it, the rounds tried so far and when the
next is due. A flag only ever goes from not stored to stored, and only on the
PACS's positive answer for that instance (``dicom.outcome``): nothing is
marked forwarded that was not stored. A forward is done when every flag is
set; until then ``receive`` and ``watch`` with that target, and ``sealdrop
forward``, send what is missing.

The file holds paths (which may carry a patient's name, as the files do) but
no DICOM UID or tag; mode 0600, changed under its file lock like the other
stores. A transfer whose forwards were all done over ``KEEP_DONE`` (30 days)
ago is dropped from it when another is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .filelock import locked
from .jsonstore import read_section, write_section
from .layout import FORWARDS_FILE

_MAX_STORE = 64 * 1024 * 1024
_MAX_TEXT = 300
# A forward done this long ago is dropped when a new one is recorded: the file
# is rewritten whole on every change and must not grow with a year of studies.
KEEP_DONE = 30 * 86400


class ForwardStore:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / FORWARDS_FILE

    def load(self) -> dict[str, dict[str, Any]]:
        """relay id -> {"into", "files": [{"path", "placed", "sha256"}], "targets": {key: …}}."""
        body = read_section(self.path, "forwards", what="the forwards file",
                            max_bytes=_MAX_STORE,
                            hint="move it aside: pending forwards are then forgotten (the "
                            "received files stay where they are)")
        return {str(k): v for k, v in body.items() if isinstance(v, dict)}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        write_section(self.path, "forwards", data, what="the forwards file")

    def begin(self, relay_id: str, *, into: Path, files: Sequence[dict[str, str]],
              targets: Sequence[dict[str, str]]) -> None:
        """Record ``relay_id``'s placed DICOM files (once) and add ``targets`` not yet there.

        Each target: {"key", "kind", "address", "calling_aet"}.
        """
        with locked(self.path):
            data = self.load()
            old = time.time() - KEEP_DONE
            for rid in [rid for rid, r in data.items() if rid != relay_id and all(
                    t.get("done") and t.get("at", 0) < old
                    for t in r.get("targets", {}).values())]:
                del data[rid]
            rec = data.setdefault(relay_id, {"into": str(into), "files": list(files),
                                             "targets": {}})
            n = len(rec["files"])
            for t in targets:
                rec["targets"].setdefault(t["key"], {
                    **t, "stored": [False] * n, "status": [""] * n, "reason": [""] * n,
                    "rounds": 0, "next_at": 0.0, "error": None, "done": n == 0,
                    "at": int(time.time())})
            self._save(data)

    def update(self, relay_id: str, key: str, *, stored: dict[int, tuple[bool, str, str]],
               error: str | None, next_at: float) -> dict[str, Any]:
        """Merge one attempt's answers (index -> (stored, status, reason)); the new record."""
        with locked(self.path):
            data = self.load()
            t = data[relay_id]["targets"][key]
            for i, (ok, status, reason) in stored.items():
                if 0 <= i < len(t["stored"]):
                    t["stored"][i] = bool(t["stored"][i]) or ok  # never back to "not stored"
                    if not t["stored"][i] or ok:
                        t["status"][i], t["reason"][i] = status, reason[:_MAX_TEXT]
            t["rounds"] = int(t.get("rounds", 0)) + 1
            t["error"] = error[:_MAX_TEXT] if error else None
            t["done"] = all(t["stored"])
            t["at"] = int(time.time())
            t["next_at"] = 0.0 if t["done"] else next_at
            self._save(data)
            return dict(t)

    def pending(self) -> list[tuple[str, str]]:
        """(relay id, target key) of every forward not done."""
        return [(rid, key) for rid, rec in self.load().items()
                for key, t in rec.get("targets", {}).items()
                if isinstance(t, dict) and not t.get("done")]
