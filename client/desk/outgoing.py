"""Files dropped on the desk's send screen, kept until they are sent.

A web page cannot hand a local path to the server that served it: the
browser uploads the dropped files (a case folder keeps its relative paths)
and the desk writes them into a private folder of the profile
(``desk-outgoing/<stage id>/``, 0700, files 0600) on this computer. The send
then reads them from there, like ``sealdrop send`` reads a folder, and the
stage is removed once the send completes or the user discards it. A failed
send keeps its stage, so sending it again resumes where it stopped (the
outbox knows a send by its paths).

Names come from the browser: each path part is checked here, never joined
blindly (no ``..``, no absolute paths, no NUL or backslash, bounded depth and
length), and a name given twice is refused rather than overwritten.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

from ..errors import ClientError
from ..profile.layout import DESK_OUTGOING_DIR

_STAGE = re.compile(r"[0-9a-f]{32}")
MAX_DEPTH = 32
MAX_PART = 255


class StageError(ClientError):
    """A dropped file's name or the stage cannot be used."""


def outgoing_root(home: Path) -> Path:
    return Path(home) / DESK_OUTGOING_DIR


def new_stage(home: Path) -> Path:
    root = outgoing_root(home)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    stage = root / secrets.token_hex(16)
    stage.mkdir(mode=0o700)
    return stage


def stage_path(home: Path, stage_id: str) -> Path:
    """The stage ``stage_id`` (as the page names it), which must exist."""
    if not _STAGE.fullmatch(stage_id):
        raise StageError("no such set of dropped files")
    stage = outgoing_root(home) / stage_id
    if not stage.is_dir():
        raise StageError("these dropped files are gone (sent or discarded); drop them again")
    return stage


def safe_relative(name: str) -> tuple[str, ...]:
    """The parts of a dropped file's relative path, or StageError."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        raise StageError(f"a dropped file has a name this desk cannot use: {name[:80]!r}")
    parts = tuple(name.split("/"))
    if len(parts) > MAX_DEPTH or any(
            p in ("", ".", "..") or len(p.encode()) > MAX_PART for p in parts):
        raise StageError(f"a dropped file has a name this desk cannot use: {name[:80]!r}")
    return parts


def open_target(stage: Path, name: str) -> Path:
    """Where the dropped file ``name`` goes in ``stage``: folders made (0700), a
    name already there refused."""
    parts = safe_relative(name)
    target = stage.joinpath(*parts)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        raise StageError(f"{name[:80]!r} was dropped twice")
    return target


def tops(stage: Path) -> list[Path]:
    """What to send: the folders and files at the stage's top, in name order."""
    return sorted(stage.iterdir())


def discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)


def sweep(home: Path, keep: set[str]) -> None:
    """Remove every stage but ``keep`` (at start: a crashed desk's leftovers
    whose sends are not waiting to resume)."""
    root = outgoing_root(home)
    if not root.is_dir():
        return
    for entry in os.scandir(root):
        if entry.name not in keep:
            discard(Path(entry.path))
