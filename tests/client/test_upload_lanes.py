"""Two upload lanes: a chunk that overtakes the one before it is sent again, and
only a relay that goes back from what it had confirmed is a loss.

The relay here is a stand-in (said so): the race needs the relay's 409 for
the second chunk to be answered before the first chunk commits but handled
after the first chunk's 204, an interleaving a real relay produces only now
and then (it failed `tests/e2e/test_chunk_fit.py` once in CI).
"""

from __future__ import annotations

import threading
import time

import pytest

from sealdrop.client.errors import ClientError
from sealdrop.client.relay_api import RelayConflict
from sealdrop.client.send.upload import ChunkUploader
from sealdrop.crypto import chunkhash
from sealdrop.crypto.protocol import ErrorCode

CHUNK = 1000


class RacingRelay:
    """Commits chunks in order. A chunk that arrives early is refused 409 with
    the committed offset of that moment, and the refusal reaches its lane only
    once the uploader has confirmed the chunk before it (the other lane's 204
    came first). ``lose_at``: after that many bytes the relay 'restarts' and
    reports less than it had confirmed: a real loss."""

    def __init__(self, up: list[ChunkUploader], lose_at: int | None = None,
                 shared: dict[str, int] | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.up = up
        self.lose_at = lose_at
        self.state = shared if shared is not None else {"committed": 0, "conflicts": 0}
        self.lock = lock or threading.Lock()

    def clone(self) -> RacingRelay:
        return RacingRelay(self.up, self.lose_at, self.state, self.lock)

    def close(self) -> None:
        pass

    def upload_chunk(self, relay_id: str, offset: int, data: memoryview, *,
                     hex_digest: str, algorithm: str) -> int:
        assert chunkhash.hex_digest(algorithm, data) == hex_digest
        if offset == 0:
            time.sleep(0.05)  # the first chunk is slow: the second overtakes it
        with self.lock:
            committed = self.state["committed"]
            if self.lose_at is not None and committed >= self.lose_at:
                self.state["committed"] = committed = CHUNK  # lost past the first chunk
                self.lose_at = None
            if offset == committed:
                self.state["committed"] = offset + len(data)
                return offset + len(data)
            self.state["conflicts"] += 1
        # Answered now, handled once the chunk before is confirmed on this side.
        up = self.up[0]
        while up._confirmed < offset and up._error is None:  # noqa: SLF001 - the race under test
            time.sleep(0.001)
        raise RelayConflict("offset mismatch", offset=committed, status=409,
                            code=ErrorCode.OFFSET_MISMATCH)


class Journal:
    def append(self, digest: str) -> None:
        pass


def _send(relay: RacingRelay, size: int) -> ChunkUploader:
    up = ChunkUploader(relay, "t", size=size, chunk_size=CHUNK, committed=0,  # type: ignore[arg-type]
                       known_hashes=[], journal=Journal(), lanes=2, retry_for=5)  # type: ignore[arg-type]
    relay.up.append(up)
    try:
        up.write(bytes(size))
        up.close()
    except BaseException:
        up.abort()
        raise
    return up


def test_a_chunk_that_overtook_the_one_before_is_sent_again_not_called_lost() -> None:
    relay = RacingRelay([])
    _send(relay, 4 * CHUNK)
    assert relay.state["committed"] == 4 * CHUNK
    assert relay.state["conflicts"] >= 1  # the race happened


def test_a_relay_that_goes_back_from_what_it_confirmed_is_a_loss() -> None:
    relay = RacingRelay([], lose_at=3 * CHUNK)
    with pytest.raises(ClientError, match="lost the chunks after byte 1000"):
        _send(relay, 6 * CHUNK)
