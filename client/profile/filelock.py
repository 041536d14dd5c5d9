"""One writer at a time per profile store: an exclusive ``flock`` on a lock file beside it.

Two ``sealdrop`` processes on one profile (``watch`` plus a ``receive`` by
hand, two ``receive``s from two terminals) each read a store, change it and
write it back whole. Without a lock the second write silently drops what the
first added: a forgotten replay entry lets an old transfer be accepted again,
a forgotten contact pin loses trust-on-first-use. So every read-modify-write
of a store runs under ``locked(store)``.

Why a separate ``<store>.lock`` file and not the store itself: the stores are
replaced by rename (``outfile.atomic_output``), and a lock on the old inode
would not exclude a process that opened the new one. The lock file is never
renamed; the store locks are never removed either. A per-transfer lock may be
removed by its holder on the way out: whoever then gets the flock checks that
the path still names the inode it locked, and otherwise starts over on the
new file, so two processes never hold "the" lock on two different inodes.

Why ``flock``: it is released by the kernel when the process dies, even by
SIGKILL, so a crashed receive never leaves the profile locked; and two
``open``s of the file in one process exclude each other too, so threads are
covered as well as processes. Readers do not lock: a store is replaced by
rename, so a reader sees the old whole file or the new whole file.

A lock that stays taken (a process stopped with Ctrl-Z mid-write) is waited
for ``timeout`` seconds, then refused with an error the user can act on,
rather than hanging a service forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ClientError

LOCK_SUFFIX = ".lock"
DEFAULT_TIMEOUT = 60.0


class StoreLockedError(ClientError):
    """Another sealdrop process holds the lock of a profile store for too long."""


def lock_path(store: Path) -> Path:
    """The lock file of ``store``: ``<store>.lock`` in the same folder."""
    store = Path(store)
    return store.with_name(store.name + LOCK_SUFFIX)


def _open_lock(store: Path) -> int:
    path = lock_path(store)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ClientError(f"cannot open the lock file {path}: {exc.strerror}") from exc


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


@contextlib.contextmanager
def locked(
    store: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    wait: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold the exclusive lock of ``store`` for the block.

    ``wait=False``: refuse at once if another process holds it (for work that
    must never run twice at the same time, such as one send's upload).
    Raises StoreLockedError when the lock is not had in time.
    """
    fd = _open_lock(store)
    try:
        end = clock() + timeout
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _still_named(fd, lock_path(store)):
                    break
                # The holder we waited for removed the lock file on its way out
                # (a per-transfer lock): ours locks a dead inode, take the new one.
                os.close(fd)
                fd = -1
                fd = _open_lock(store)
                continue
            except BlockingIOError:
                if not wait or clock() >= end:
                    raise StoreLockedError(
                        f"{Path(store).name} in {Path(store).parent} is in use by another "
                        "sealdrop process",
                        hint="wait for the other sealdrop (receive, watch or send) on this "
                        "profile to finish, or stop it, then try again",
                    ) from None
                # Polling, not a blocking flock: a blocking one cannot time out.
                sleep(pause)
                pause = min(pause * 2, 0.1)
            except OSError as exc:
                raise ClientError(
                    f"cannot lock {lock_path(store)}: {exc.strerror}"
                ) from exc
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # closing the last descriptor releases the flock
