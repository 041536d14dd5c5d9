"""One `serve` per SQLite database.

Why: on SQLite the relay keeps each upload's lock in its own memory
(server.locks: a database lease per chunk would cost two statements and a
commit per chunk, a quarter of the small-transfer rate). That is only sound
while the process is the database's one server, so ``serve`` takes an
exclusive ``flock`` on a file beside the database for its lifetime and a
second one is refused with a sentence. The kernel drops the lock when the
process dies, however it dies. PostgreSQL relays take leases instead and may
run as many processes as wanted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

SUFFIX = ".serving"


@contextlib.contextmanager
def only_server(database: Path) -> Iterator[None]:
    """Hold the serving lock of the SQLite file ``database``; ``ConfigError`` if
    another process holds it."""
    path = database.with_name(database.name + SUFFIX)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another sealdrop-relay serve is already running on {database}; a SQLite "
                "relay runs as one process (several processes need PostgreSQL: "
                "docs/operations.md)") from None
        yield
    finally:
        os.close(fd)
