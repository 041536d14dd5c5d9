"""Ids of transfers already accepted, so an old transfer cannot be replayed as new.

``accepted.json`` in the profile folder maps each accepted transfer id (hex) to
the unix time it was accepted. Written atomically (mode 0600). The signed
manifest carries the id, so a relay cannot change it without breaking the
signature; replaying the same blob is caught here.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ClientError, ReplayError
from .outfile import atomic_output

REPLAY_FILE = "accepted.json"


class ReplayStore:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / REPLAY_FILE

    def _load(self) -> dict[str, int]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ClientError(f"cannot read the replay store {self.path}") from exc
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ClientError(f"the replay store {self.path} is damaged") from exc
        accepted = obj.get("accepted") if isinstance(obj, dict) else None
        if not isinstance(accepted, dict):
            raise ClientError(f"the replay store {self.path} has an unknown format")
        return {str(k): int(v) for k, v in accepted.items()}

    def seen(self, transfer_id: bytes) -> bool:
        return transfer_id.hex() in self._load()

    def check(self, transfer_id: bytes) -> None:
        if self.seen(transfer_id):
            raise ReplayError(
                f"transfer {transfer_id.hex()} was already received once; "
                "refusing it again (a replayed transfer)",
                hint="if you need the files again, ask the sender to send them anew",
            )

    def record(self, transfer_id: bytes, now: int) -> None:
        accepted = self._load()
        if transfer_id.hex() in accepted:
            raise ReplayError(f"transfer {transfer_id.hex()} was already received once")
        accepted[transfer_id.hex()] = now
        data = json.dumps({"v": 1, "accepted": accepted}, sort_keys=True).encode("utf-8")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with atomic_output(self.path, mode=0o600) as f:
                f.write(data + b"\n")
        except OSError as exc:
            raise ClientError(f"cannot write the replay store {self.path}: {exc.strerror}") from exc
