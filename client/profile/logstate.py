"""What this profile knows of the relay's transparency log (docs/transparency.md).

The log-state file of the profile folder (``layout.LOGSTATE_FILE``)::

    {"v": 1, "log": {"origin": "sealdrop.invalid/relay-1",
                     "vkey": "sealdrop.invalid/relay-1+1a2b3c4d+AT...",
                     "checkpoint": "<the last signed note this profile verified>",
                     "size": 42, "scanned": 42, "pinned_at": 1764662400,
                     "own": ["<SHA-256 hex of each key bundle this profile made>"]}}

- ``origin`` and ``vkey``: the log and its key, pinned at ``init`` from the
  relay's ``/v1/info`` (a profile made before the log pins on first use and
  says so once). Never replaced: a relay that shows another key is refused.
- ``checkpoint`` (with its ``size``): the newest checkpoint that passed every
  check. Only ever moves forward: two processes on one profile (``watch`` and
  a ``receive`` by hand) may finish in either order, and the smaller one must
  not overwrite the larger (the next run would see a false rollback). One of
  the same size with another root is refused under the lock (``LogForkError``):
  the relay showed the two processes two forks; a larger one stored meanwhile
  is checked to extend ours by the caller (``LogClient.advance``).
- ``scanned``: how many entries were read for key entries. The first
  checkpoint has every entry read for our own handle (once per profile: a
  request per 256 entries); pinned contacts' from then on.
- ``pinned_at``: when this profile pinned the log (unix seconds, its own
  clock). The relay has logged since then at least, so a transfer newer than
  this must have a log entry: the relay cannot drop it to skip the checks.
  A file from before this field gets the time it is first read again.
- ``own``: the digests (``crypto.tlog.entries.bundle_digest``) of every key
  bundle this profile registered; a key entry for our handle that is not one
  of them is a key this profile never made. Recorded BEFORE the bundle is sent,
  so a crash between the two cannot make our own key look foreign.

Changes read, decide and write under the store's file lock (``filelock``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sealdrop.crypto.errors import LogError
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.note import NoteVerifier, open_note

from ..errors import ClientError, LogForkError
from .filelock import locked
from .jsonstore import read_section, write_section
from .layout import LOGSTATE_FILE

# A checkpoint note is a few hundred bytes; a profile registers a handful of keys.
_MAX_STORE = 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")
_HINT = ("the file keeps what this profile verified of the relay's log; restore it from a "
         "backup of the profile, or ask your IT support")


# As client.tlog.logclient.CALL (which imports this module): stop, and call.
_CALL = ("do not send or receive anything until this is cleared up: call the relay's "
         "operator, and tell your practice's IT support or data protection officer")


def _forked(old: LogState, checkpoint: str) -> bool:
    """Two notes of one size: do they sign different trees? (Two notes of one tree
    may still differ, e.g. in their witnesses' cosignatures.)"""
    assert old.checkpoint is not None
    try:
        return _root(old.checkpoint, old.vkey) != _root(checkpoint, old.vkey)
    except LogError as exc:
        raise LogStateError(f"the log checkpoint kept in the log-state file cannot be read: "
                            f"{exc}", hint=_HINT) from exc


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
    pinned_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "vkey": self.vkey, "checkpoint": self.checkpoint,
                "size": self.size, "scanned": self.scanned, "own": list(self.own),
                "pinned_at": self.pinned_at}

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: Path) -> LogState:
        try:
            origin, vkey, note = obj["origin"], obj["vkey"], obj.get("checkpoint")
            size, scanned, own = obj.get("size", 0), obj.get("scanned", 0), obj.get("own", [])
            pinned_at = obj.get("pinned_at")
            ok = (isinstance(origin, str) and origin and isinstance(vkey, str) and vkey
                  and (pinned_at is None or _count(pinned_at))
                  and (note is None or isinstance(note, str))
                  and _count(size) and _count(scanned) and isinstance(own, list)
                  and all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in own))
        except KeyError:
            ok = False
        if not ok:
            raise LogStateError(f"the log-state file {path} is damaged", hint=_HINT)
        return cls(origin=origin, vkey=vkey, checkpoint=note, size=size, scanned=scanned,
                   own=tuple(own), pinned_at=pinned_at)


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


def _root(note: str, vkey: str) -> bytes:
    """The root hash a checkpoint note signs (the pinned key's signature checked)."""
    return Checkpoint.parse(open_note(note, [NoteVerifier.from_vkey(vkey)]).text).root


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

    def pin(self, origin: str, vkey: str, *, now: int | None = None) -> LogState:
        """Pin the log ``origin`` signed with ``vkey``; a second pin must name the same.
        The pin time is recorded once (``pinned_at``), also for a file without it."""
        at = int(time.time()) if now is None else now

        def how(old: LogState | None) -> LogState:
            if old is None:
                return LogState(origin=origin, vkey=vkey, pinned_at=at)
            if (old.origin, old.vkey) != (origin, vkey):
                raise LogStateError(
                    f"this profile already pinned the log {old.origin}; refusing to pin "
                    f"{origin} over it")
            return old if old.pinned_at is not None else replace(old, pinned_at=at)
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
                if old.checkpoint != checkpoint and _forked(old, checkpoint):
                    raise LogForkError(
                        f"the relay REWROTE its transparency log: two different trees of "
                        f"{size} entries were signed (another sealdrop process on this "
                        "profile verified the other one)", hint=_CALL)
                return replace(old, scanned=max(old.scanned, scanned))
            return replace(old, checkpoint=checkpoint, size=size, scanned=scanned)
        state = self._change(how)
        assert state is not None
        return state
