"""What this profile knows of the relay's transparency log (docs/transparency.md).

The log-state file of the profile folder (``layout.LOGSTATE_FILE``)::

    {"v": 1, "log": {"origin": "sealdrop.invalid/relay-1",
                     "vkey": "sealdrop.invalid/relay-1+1a2b3c4d+AT...",
                     "checkpoint": "<the last signed note this profile verified>",
                     "size": 42, "scanned": 42,
                     "own": ["<SHA-256 hex of each key bundle this profile made>"]}}

- ``origin`` and ``vkey``: the log and its key, pinned at ``init`` from the
  relay's ``/v1/info`` (a profile made before the log pins on first use and
  says so once). Never replaced: a relay that shows another key is refused.
- ``checkpoint`` (with its ``size``): the newest checkpoint that passed every
  check. Only ever moves forward: two processes on one profile (``watch`` and
  a ``receive`` by hand) may finish in either order, and the smaller one must
  not overwrite the larger (the next run would see a false rollback).
- ``scanned``: how many entries were read for key entries (own handle, pinned
  contacts). Entries before the pin are never read: they hold no key of this
  profile, and reading a long log at first use would cost a tile per 256.
- ``own``: the digests (``crypto.tlog.entries.bundle_digest``) of every key
  bundle this profile registered; a key entry for our handle that is not one
  of them is a key this profile never made. Recorded BEFORE the bundle is sent,
  so a crash between the two cannot make our own key look foreign.

Changes read, decide and write under the store's file lock (``filelock``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ClientError
from .filelock import locked
from .jsonstore import read_section, write_section
from .layout import LOGSTATE_FILE

# A checkpoint note is a few hundred bytes; a profile registers a handful of keys.
_MAX_STORE = 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")
_HINT = ("the file keeps what this profile verified of the relay's log; restore it from a "
         "backup of the profile, or ask your IT support")


class LogStateError(ClientError):
    """The log-state file cannot be read or is damaged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogState:
    origin: str
    vkey: str
    checkpoint: str | None = None
    size: int = 0
    scanned: int = 0
    own: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "vkey": self.vkey, "checkpoint": self.checkpoint,
                "size": self.size, "scanned": self.scanned, "own": list(self.own)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: Path) -> LogState:
        try:
            origin, vkey, note = obj["origin"], obj["vkey"], obj.get("checkpoint")
            size, scanned, own = obj.get("size", 0), obj.get("scanned", 0), obj.get("own", [])
            ok = (isinstance(origin, str) and origin and isinstance(vkey, str) and vkey
                  and (note is None or isinstance(note, str))
                  and _count(size) and _count(scanned) and isinstance(own, list)
                  and all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in own))
        except KeyError:
            ok = False
        if not ok:
            raise LogStateError(f"the log-state file {path} is damaged", hint=_HINT)
        return cls(origin=origin, vkey=vkey, checkpoint=note, size=size, scanned=scanned,
                   own=tuple(own))


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


class LogStateStore:
    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOGSTATE_FILE

    def load(self) -> LogState | None:
        """The pinned log and what was verified of it; None if nothing is pinned yet."""
        body = read_section(self.path, "log", what="the log-state file", max_bytes=_MAX_STORE,
                            error=LogStateError, hint=_HINT)
        return LogState.from_json(body, self.path) if body else None

    def _change(self, how: Callable[[LogState | None], LogState | None]) -> LogState | None:
        with locked(self.path):
            old = self.load()
            new = how(old)
            if new is not None and new != old:
                write_section(self.path, "log", new.to_json(), what="the log-state file",
                              error=LogStateError)
            return new

    def pin(self, origin: str, vkey: str) -> LogState:
        """Pin the log ``origin`` signed with ``vkey``; a second pin must name the same."""
        def how(old: LogState | None) -> LogState:
            if old is None:
                return LogState(origin=origin, vkey=vkey)
            if (old.origin, old.vkey) != (origin, vkey):
                raise LogStateError(
                    f"this profile already pinned the log {old.origin}; refusing to pin "
                    f"{origin} over it")
            return old
        state = self._change(how)
        assert state is not None
        return state

    def add_own(self, digest: str) -> LogState:
        """Remember that this profile made the key bundle with ``digest`` (hex)."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError("a bundle digest is 64 lower-case hex digits")

        def how(old: LogState | None) -> LogState:
            if old is None:
                raise LogStateError("no log is pinned in this profile yet")
            return old if digest in old.own else replace(old, own=(*old.own, digest))
        state = self._change(how)
        assert state is not None
        return state

    def advance(self, checkpoint: str, *, size: int, scanned: int) -> LogState:
        """Store ``checkpoint`` (of ``size`` entries, the first ``scanned`` read) as the
        newest verified, unless another process stored a larger one meanwhile."""
        if not (_count(size) and _count(scanned) and scanned <= size):
            raise ValueError("scanned must be between 0 and size")

        def how(old: LogState | None) -> LogState:
            if old is None:
                raise LogStateError("no log is pinned in this profile yet")
            if old.checkpoint is not None and old.size > size:
                return old  # another process got further: keep its checkpoint
            if old.checkpoint is not None and old.size == size:
                return replace(old, scanned=max(old.scanned, scanned))
            return replace(old, checkpoint=checkpoint, size=size, scanned=scanned)
        state = self._change(how)
        assert state is not None
        return state
