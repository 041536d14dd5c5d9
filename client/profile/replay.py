"""Manifest ids of transfers already accepted, so an old transfer cannot be replayed as new.

The accepted file of the profile folder (``layout.ACCEPTED_FILE``) maps each
accepted manifest id (hex) to the unix time it was accepted. Written
atomically (mode 0600). The id is the one inside the signed manifest, not the
relay's: a relay can re-offer an old blob under a new relay id, but it cannot
change the manifest id without breaking the signature, so replaying the same
blob is caught here.

``record`` checks and adds under the store's file lock (``filelock``): two
receives of one transfer at the same time cannot both record it, and two
receives of different transfers both keep theirs.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ClientError, ReplayError
from .filelock import locked
from .jsonstore import read_section, write_section
from .layout import ACCEPTED_FILE

# A lab receiving a hundred transfers a day for years stays far below this.
_MAX_STORE = 64 * 1024 * 1024


class ReplayStore:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / ACCEPTED_FILE

    def _load(self) -> dict[str, int]:
        accepted = read_section(self.path, "accepted", what="the replay store",
                                max_bytes=_MAX_STORE)
        try:
            return {str(k): int(v) for k, v in accepted.items()}
        except (ValueError, TypeError) as exc:
            raise ClientError(f"the replay store {self.path} is damaged") from exc

    def seen(self, manifest_id: bytes) -> bool:
        return manifest_id.hex() in self._load()

    def check(self, manifest_id: bytes) -> None:
        if self.seen(manifest_id):
            raise ReplayError(
                f"transfer {manifest_id.hex()} was already received once; "
                "refusing it again (a replayed transfer)",
                hint="if you need the files again, ask the sender to send them anew",
            )

    def record(self, manifest_id: bytes, now: int) -> None:
        with locked(self.path):
            self._record_locked(manifest_id, now)

    def _record_locked(self, manifest_id: bytes, now: int) -> None:
        accepted = self._load()
        if manifest_id.hex() in accepted:
            raise ReplayError(f"transfer {manifest_id.hex()} was already received once")
        accepted[manifest_id.hex()] = now
        write_section(self.path, "accepted", accepted, what="the replay store")
