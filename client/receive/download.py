"""Downloading a transfer's ciphertext into the spool, resuming a partial download.

The relay serves the blob with HTTP Range from however many bytes the spool
already holds (``profile.spool``), so an interrupted download continues where
it stopped. Nothing here decrypts: the ciphertext authenticates itself later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..errors import ReceiveError
from ..profile.session import Session

Progress = Callable[[int, int], None]


class _Bounded:
    """Writes to ``f`` until ``limit`` bytes are held: a relay cannot send more than it
    announced (and more than the size the receive was allowed for)."""

    def __init__(self, f: BinaryIO, held: int, limit: int, relay_id: str) -> None:
        self._f, self._held, self._limit, self._id = f, held, limit, relay_id

    def write(self, data: bytes, /) -> int:
        if self._held + len(data) > self._limit:
            raise ReceiveError(f"the relay sent more than the {self._limit} bytes it announced "
                               f"for {self._id}; download stopped")
        self._held += len(data)
        return self._f.write(data)


def download(session: Session, relay_id: str, *, on_progress: Progress | None = None,
             pause_after_block: float = 0.0, size: int | None = None) -> Path:
    """The complete ciphertext of ``relay_id`` in the spool; returns its path.

    ``size``: the blob size the relay announced (asked for if not given); never
    more is written. ``on_progress(done, total)`` hears each block (1 MiB);
    ``pause_after_block`` seconds are slept after each, a crude rate limit for
    callers that need one.
    """
    path = session.spool.path(relay_id)  # first: checks the id before it goes in a URL
    if size is None:
        size = int(session.relay.status(relay_id)["size"])
    have = session.spool.held(relay_id, size)
    if have < size:
        with open(path, "ab") as f:
            session.relay.download(relay_id, _Bounded(f, have, size, relay_id), offset=have,
                                   progress=_paced(on_progress, pause_after_block))
    elif on_progress is not None:
        on_progress(size, size)
    if path.stat().st_size != size:
        raise ReceiveError(f"the download of {relay_id} is incomplete; run receive again")
    return path


def _paced(on_progress: Progress | None, pause: float) -> Progress | None:
    if not pause:
        return on_progress

    def progress(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(done, total)
        time.sleep(pause)

    return progress
