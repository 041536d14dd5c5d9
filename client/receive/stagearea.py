"""Where a transfer is staged while it is verified: private, same filesystem, never in DEST.

A PACS import folder, a viewer or a watched folder picks up whatever appears
in the destination, so nothing unverified may ever appear there, not even in
a hidden folder. Staging therefore happens in a private area (mode 0700)
outside the destination but on its filesystem, so that placing is a rename
(``place``), never a copy. The area is, in order:

1. the folder the user named (``--staging`` / ``SEALDROP_STAGING``);
2. ``PROFILE/staging/`` when the profile is on the destination's filesystem;
3. ``.sealdrop-staging/`` beside the destination (in its parent folder).

A candidate inside the destination, on another filesystem, or not private
(a link, another owner, group or world access) is skipped; if none is left
the receive is refused with a hint rather than staging somewhere unsafe.

Each transfer stages into ``<area>/<random>/``, holding an exclusive ``flock``
on that folder while it lives. A receive killed with SIGKILL cannot remove its
folder, but its lock dies with it: the next receive (``sweep``) removes every
folder whose lock it can take.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import ReceiveError
from ..profile.layout import STAGING_DIR

SIBLING_NAME = ".sealdrop-staging"
# What older versions staged inside DEST; swept from there on sight (see sweep).
LEGACY_PREFIX = ".sealdrop-staging-"
_NAME = re.compile(r"[0-9a-f]{16}")


def _private_dir(path: Path) -> Path | None:
    """``path`` made (0700) or found as a private folder of ours; None if unusable."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    if st.st_mode & 0o077:
        # Ours, but someone widened it: narrow it again rather than stage in the open.
        try:
            os.chmod(path, 0o700, follow_symlinks=False)
        except OSError:
            return None
    return path


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def staging_area(dest: Path, *, home: Path | None = None, configured: Path | None = None
                 ) -> Path:
    """The private folder to stage transfers for ``dest`` in (see the module text)."""
    real_dest = Path(dest).resolve()
    try:
        dev = os.stat(real_dest).st_dev
    except OSError as exc:
        raise ReceiveError(f"cannot use the destination {dest}: {exc.strerror}") from exc
    if configured is not None:
        candidates = [Path(configured)]
    else:
        candidates = [Path(home) / STAGING_DIR] if home is not None else []
        candidates.append(real_dest.parent / SIBLING_NAME)
    for candidate in candidates:
        parent = candidate.parent.resolve()
        if _inside(parent / candidate.name, real_dest):
            continue
        area = _private_dir(parent / candidate.name)
        if area is None or _inside(area.resolve(), real_dest):
            continue
        if os.stat(area).st_dev != dev:
            continue
        return area
    where = f"{configured}" if configured is not None else "the profile or beside it"
    raise ReceiveError(
        f"no private staging folder on the filesystem of {dest} ({where} is not usable); "
        "nothing was received",
        hint="give --staging DIR (or SEALDROP_STAGING): a folder you own on the same "
        "filesystem as the destination, outside it, that no PACS or viewer watches",
    )


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def sweep(area: Path, dest: Path | None = None) -> list[Path]:
    """Remove staging folders whose receive died (their lock is free); returns them.

    Also removes ``DEST/.sealdrop-staging-*`` folders an older sealdrop left in
    the destination when killed: they hold unverified files a PACS could import.
    """
    gone: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(area):
            if not _NAME.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                if _try_lock(fd):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    gone.append(Path(entry.path))
            finally:
                os.close(fd)
    if dest is not None:
        with contextlib.suppress(OSError):
            for entry in os.scandir(dest):
                legacy = entry.name[len(LEGACY_PREFIX):]
                if (entry.name.startswith(LEGACY_PREFIX) and _NAME.fullmatch(legacy)
                        and entry.is_dir(follow_symlinks=False)):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    gone.append(Path(entry.path))
    return gone


@contextlib.contextmanager
def staging_folder(area: Path) -> Iterator[Path]:
    """A fresh private folder in ``area``, locked while in use, removed on the way out.

    Removed on any exit, including KeyboardInterrupt (SIGINT, and SIGTERM during
    a receive: ``interrupt``); after SIGKILL, by the next ``sweep``.
    """
    token = secrets.token_hex(8)
    folder = area / token
    # Made under a name sweep ignores, locked, then renamed: a concurrent sweep
    # never sees it unlocked. (A kill in between leaves an empty folder, no data.)
    fresh = area / f"{token}.new"
    try:
        os.mkdir(fresh, 0o700)
        fd = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ReceiveError(f"cannot stage in {area}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.rename(fresh, folder)
        except OSError as exc:
            os.rmdir(fresh)
            raise ReceiveError(f"cannot stage in {area}: {exc.strerror}") from exc
        yield folder
    finally:
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
