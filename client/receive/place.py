"""Placing verified files into the destination: never overwriting, undoable, durable.

Staged files are moved from the staging folder (inside the destination, so a
move is a same-filesystem rename, never a copy) to their names. A name that
exists, or a parent that is a file or a link, refuses the whole transfer
before anything moves (``check_free``); a name that appears meanwhile makes
the move fail rather than overwrite (a hard link, unlike rename, refuses an
existing target). What was moved can be moved back (``Placer.undo``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from sealdrop.crypto.container import FILES_PREFIX

from ..errors import ReceiveError
from ..outfile import fsync_path


def check_free(dest: Path, path: str) -> None:
    """Refuse if the target exists, or a parent is a file or a symbolic link."""
    current = dest
    parts = path.split("/")
    for i, part in enumerate(parts):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ReceiveError(f"cannot check {current}: {exc.strerror}") from exc
        if i == len(parts) - 1:
            raise ReceiveError(
                f"{path!r} already exists in {dest}; nothing was written",
                hint="receive with a --layout that gives each case its own folder (the "
                     "default does), or move the existing file away",
            )
        if not stat.S_ISDIR(st.st_mode):
            raise ReceiveError(
                f"cannot place {path!r}: {current} exists and is not a folder "
                "(or is a link); nothing was written"
            )


def fsync_dirs(dirs: set[Path]) -> None:
    for d in sorted(dirs):
        fsync_path(d)


class Placer:
    """Moves staged files into DEST (its case folder ``prefix``, made here if
    missing) without overwriting; can undo what it did, folders made included."""

    def __init__(self, staging: Path, dest: Path, prefix: str = "") -> None:
        self.staging = staging
        self.dest = dest
        self.prefix = prefix
        self.moved: list[tuple[Path, Path]] = []
        self.made_dirs: list[Path] = []

    def _mkdirs(self, folder: Path) -> None:
        missing: list[Path] = []
        p = folder
        while p != self.dest and not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            os.mkdir(d)
            self.made_dirs.append(d)

    def place(self, path: str) -> Path:
        src = self.staging / FILES_PREFIX / path
        dst = self.dest / self.prefix / path if self.prefix else self.dest / path
        self._mkdirs(dst.parent)
        try:
            os.link(src, dst)  # unlike rename, fails if dst appeared meanwhile
            os.unlink(src)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                raise
            if os.path.lexists(dst):  # no hard links here: check, then rename
                raise FileExistsError(errno.EEXIST, "exists", str(dst)) from exc
            os.rename(src, dst)
        self.moved.append((src, dst))
        return dst

    def sync(self) -> None:
        """Make the placed names durable: fsync every folder that gained an entry."""
        dirs = {dst.parent for _, dst in self.moved} | {d.parent for d in self.made_dirs}
        fsync_dirs(dirs)

    def undo(self) -> None:
        for src, dst in reversed(self.moved):
            with contextlib.suppress(OSError):
                src.parent.mkdir(parents=True, exist_ok=True)
                os.rename(dst, src)
        for d in reversed(self.made_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(d)
        self.moved.clear()
        self.made_dirs.clear()
