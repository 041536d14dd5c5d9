"""Receipts: the relay ids this profile received, and whether the relay was told.

The receipts file of the profile folder (``layout.RECEIPTS_FILE``) maps each
relay id received here to the manifest id it carried, the unix time, the
case folder its files were placed in (``folder``: absolute; kept so that
receiving it again can say where it went), the transfer's log commitment
(``commitment``, hex, when the relay logs transfers), and ``acked``: whether the relay
heard "verified" for it. A receive whose final acknowledgement could not
reach the relay is recorded with ``acked: false`` and told on the next
receive, watch or inbox (``receive.transfer.flush_acks``). With a log, also
the commitment's ``salt`` (hex) and, under ``receipts``, each of our signed
receipts the relay logged, by status, with its tlog-proof (the inclusion
we checked: ``client.tlog.receipts.check_own``), so that it can be shown
and checked again without the relay.
``inbox`` and ``receive --all`` also read it to skip what is already here.

Not the replay store (``replay``): that one is keyed by manifest id and is the
security check; this one is bookkeeping keyed by the relay's id.

``mark`` reads, changes and writes under the store's file lock (``filelock``),
so ``watch`` and a ``receive`` on one profile both keep their receipts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .filelock import locked
from .jsonstore import read_section, write_section
from .layout import RECEIPTS_FILE

# A lab receiving a hundred transfers a day for years stays far below this.
_MAX_STORE = 64 * 1024 * 1024


class ReceiptStore:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / RECEIPTS_FILE

    def load(self) -> dict[str, dict[str, Any]]:
        """relay id -> {"manifest_id", "acked", "at", "folder"} ("folder" only if recorded)."""
        body = read_section(self.path, "received", what="the receipts file",
                            max_bytes=_MAX_STORE)
        return {str(k): v for k, v in body.items() if isinstance(v, dict)}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        write_section(self.path, "received", data, what="the receipts file")

    def mark(self, relay_id: str, *, manifest_id: str, acked: bool,
             folder: str | None = None, commitment: str | None = None,
             salt: str | None = None) -> None:
        """Record (or update) ``relay_id``; an update keeps the first time, folder and
        ``commitment`` (the transfer's log commitment, hex: a receipt not yet sent
        is signed over it later, client.tlog.receipts)."""
        with locked(self.path):
            data = self.load()
            old = data.get(relay_id, {})
            entry: dict[str, Any] = {"manifest_id": manifest_id, "acked": acked,
                                     "at": old.get("at", int(time.time()))}
            if folder is not None or "folder" in old:
                entry["folder"] = folder if folder is not None else old["folder"]
            if commitment is not None or "commitment" in old:
                entry["commitment"] = commitment if commitment is not None \
                    else old["commitment"]
            if salt is not None or "salt" in old:
                entry["salt"] = salt if salt is not None else old["salt"]
            if isinstance(old.get("receipts"), dict):
                entry["receipts"] = old["receipts"]
            data[relay_id] = entry
            self._save(data)

    def keep_receipt(self, relay_id: str, kept: dict[str, Any]) -> None:
        """Keep our logged receipt ``kept`` (``client.tlog.receipts.kept_receipt``)
        under its status, for a transfer recorded here."""
        with locked(self.path):
            data = self.load()
            entry = data.get(relay_id)
            if entry is None:
                return
            mine = entry.get("receipts")
            mine = dict(mine) if isinstance(mine, dict) else {}
            mine[str(kept["status"])] = kept
            entry["receipts"] = mine
            self._save(data)

    def unacked(self) -> list[str]:
        return [k for k, v in self.load().items() if not v.get("acked")]
