"""Backup slots and retention under one backup target folder.

``sealdrop-relay backup --into TARGET --keep N`` writes each backup into
``TARGET/<UTC time>`` and keeps the newest N. A backup is written under a
``.partial-`` name and renamed only once whole, so a failed or interrupted run
never counts as one of the N and never displaces a good backup. Pruning only
ever touches folders whose name is a slot name: anything else an operator
keeps in the target is left alone.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import ConfigError

# 20261201T081831.123456Z: sorts by name in time order; microseconds so two runs
# in the same second do not collide.
SLOT_FORMAT = "%Y%m%dT%H%M%S.%fZ"
SLOT_RE = re.compile(r"\d{8}T\d{6}\.\d{6}Z")
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class Slot:
    partial: Path  # where the backup is written
    final: Path  # its name once complete


def prepare_target(target: Path) -> None:
    """Create the backup target (mode 0700: backups hold who-sent-to-whom metadata)."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"backup target {target} is not a folder")
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create backup target {target}: {exc.strerror}; "
            "create it owned by the relay's user (install -d -m 0700)"
        ) from exc


def new_slot(target: Path, now: datetime | None = None) -> Slot:
    name = (now or datetime.now(UTC)).strftime(SLOT_FORMAT)
    final = target / name
    if final.exists():
        raise ConfigError(f"backup {final} already exists; run the backup again")
    return Slot(partial=target / f"{PARTIAL_PREFIX}{name}", final=final)


def finish(slot: Slot) -> None:
    slot.partial.rename(slot.final)


def abandon(slot: Slot) -> None:
    """Remove what a failed backup wrote, so it never looks like a backup."""
    shutil.rmtree(slot.partial, ignore_errors=True)


def backups(target: Path) -> list[Path]:
    """The complete backups in ``target``, oldest first."""
    return sorted(
        (p for p in target.iterdir() if p.is_dir() and not p.is_symlink()
         and SLOT_RE.fullmatch(p.name)),
        key=lambda p: p.name,
    )


def prune(target: Path, keep: int) -> list[Path]:
    """Delete the oldest complete backups beyond the newest ``keep``; return them."""
    if keep < 1:
        raise ConfigError("--keep must be at least 1")
    doomed = backups(target)[:-keep]
    for old in doomed:
        shutil.rmtree(old)
    return doomed
