"""Receipts: the relay ids this profile received, and whether the relay was told.

The receipts file of the profile folder (``layout.RECEIPTS_FILE``) maps each
relay id received here to the manifest id it carried, the unix time, and
``acked``: whether the relay heard "verified" for it. A receive whose final
acknowledgement could not reach the relay is recorded with ``acked: false``
and told on the next receive, watch or inbox (``receive.transfer.flush_acks``).
``inbox`` and ``receive --all`` also read it to skip what is already here.

Not the replay store (``replay``): that one is keyed by manifest id and is the
security check; this one is bookkeeping keyed by the relay's id.

``mark`` reads, changes and writes under the store's file lock (``filelock``),
so ``watch`` and a ``receive`` on one profile both keep their receipts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import ClientError
from ..outfile import atomic_output
from .filelock import locked
from .layout import RECEIPTS_FILE


class ReceiptStore:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / RECEIPTS_FILE

    def load(self) -> dict[str, dict[str, Any]]:
        """relay id -> {"manifest_id", "acked", "at"}."""
        try:
            obj = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ClientError(f"cannot read {self.path}; it is damaged") from exc
        return dict(obj.get("received", {})) if isinstance(obj, dict) else {}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with atomic_output(self.path, mode=0o600) as f:
                f.write(json.dumps({"v": 1, "received": data}, sort_keys=True).encode() + b"\n")
        except OSError as exc:
            raise ClientError(f"cannot write {self.path}: {exc.strerror}") from exc

    def mark(self, relay_id: str, *, manifest_id: str, acked: bool) -> None:
        with locked(self.path):
            data = self.load()
            data[relay_id] = {"manifest_id": manifest_id, "acked": acked, "at": int(time.time())}
            self._save(data)

    def unacked(self) -> list[str]:
        return [k for k, v in self.load().items() if not v.get("acked")]
