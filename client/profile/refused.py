"""Transfers refused here, so that ``watch`` and ``receive --all`` move on past them.

A refused transfer stays in the relay's inbox (for a person to look at), so
without a record every ``receive --all`` and every restart of ``watch`` would
download and refuse it again, forever, and a hostile account could keep a lab
busy with one blob. The refused file of the profile folder
(``layout.REFUSED_FILE``) maps each relay id to why it was refused:

- ``hostile``: the transfer itself failed a check (tampered, malformed,
  replayed, not addressed to us). No later run can change that: never retried
  automatically.
- ``sender``: the sender was not acceptable (unknown, unverified, a changed
  key, or over the size allowed to unverified senders). Retried automatically
  once the sender the relay names is a verified contact.

``sealdrop receive ID`` always tries again (the user asked for that one), and
a success removes the record. Written atomically under a lock (mode 0600), so
two processes on one profile lose no entry.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from .filelock import locked
from .jsonstore import read_section, write_section
from .layout import REFUSED_FILE

_MAX_STORE = 16 * 1024 * 1024
_MAX_ERROR = 500


class Reason(StrEnum):
    HOSTILE = "hostile"
    SENDER = "sender"


class RefusedStore:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / REFUSED_FILE

    def load(self) -> dict[str, dict[str, Any]]:
        """relay id -> {"reason", "sender", "error", "at"}."""
        body = read_section(self.path, "refused", what="the refused-transfers file",
                            max_bytes=_MAX_STORE,
                            hint="delete it: refused transfers will then be tried once more")
        return {str(k): v for k, v in body.items() if isinstance(v, dict)}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        write_section(self.path, "refused", data, what="the refused-transfers file")

    def mark(self, relay_id: str, *, reason: Reason, sender: str, error: str) -> None:
        with locked(self.path):
            data = self.load()
            data[relay_id] = {"reason": reason.value, "sender": sender,
                              "error": error[:_MAX_ERROR], "at": int(time.time())}
            self._save(data)

    def forget(self, relay_id: str) -> None:
        with locked(self.path):
            data = self.load()
            if data.pop(relay_id, None) is not None:
                self._save(data)
