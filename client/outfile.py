"""Writing a file all-or-nothing: a temporary name beside it, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o644, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Yield a file that appears at ``path`` only if the block completes.

    On any exception the temporary file is removed and ``path`` is untouched,
    so a failed decryption never leaves a half-written output behind.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(path)
    if _special(path):
        # A device, a FIFO or a socket (``-o /dev/null``, a pipe to another
        # program): there is nothing to replace atomically, and a rename over it
        # would put a regular file in its place (run as root: /dev/null itself,
        # for every process on the machine). Written straight into, like age does.
        with path.open("wb") as f:
            yield f
            f.flush()
        return
    import tempfile  # here: its import (shutil, random) was 15 ms of each `sealdrop age` start

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if path appeared meanwhile, unlike rename().
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _special(path: Path) -> bool:
    """``path`` exists and is not a regular file (nor a link to one)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def fsync_path(path: Path) -> None:
    """Make a file's data, or a folder's entries, durable (by path: a folder
    cannot be opened for writing)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
