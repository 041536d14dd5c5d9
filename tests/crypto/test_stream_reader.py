"""The reading side of STREAM: buffers that cost only the pages a payload fills,
the read-ahead thread (order, errors, stopping it), and the small age files
(identity, profile records) opened with the defaults."""

from __future__ import annotations

import functools
import io
import os
import threading
import time

import pytest

from sealdrop.crypto.age import PayloadError
from sealdrop.crypto.age.readahead import ReadAhead
from sealdrop.crypto.age.stream import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    StreamReader,
    StreamWriter,
)
from tests.crypto.agetools import plaintext as _plaintext

KEY = bytes(range(32))


@functools.cache
def _long() -> bytes:
    return _plaintext(301 * CHUNK_SIZE)


def plaintext(size: int) -> bytes:
    """Prefixes of one reproducible plaintext, made once."""
    return _long()[:size]


def seal(pt: bytes) -> bytes:
    out = io.BytesIO()
    with StreamWriter(KEY, out, workers=1) as w:
        w.write(pt)
    return out.getvalue()


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux /proc")
@pytest.mark.parametrize("size", [0, 1, 3000, CHUNK_SIZE, CHUNK_SIZE + 1])
def test_a_small_payload_costs_a_few_pages_not_four_batch_sets(size: int) -> None:
    # Profile records, cards and the identity are a few KiB: four zeroed 8 MiB
    # sets each time took every command's peak RSS over its budget.
    pt = plaintext(size)
    ct = seal(pt)
    before = resident_bytes()
    r = StreamReader(KEY, io.BytesIO(ct))
    assert r.read() == pt
    grown = resident_bytes() - before
    assert len(r._sets) == 1  # one batch: one set mapped
    assert r._ahead is None  # and no read-ahead thread started
    assert grown < 1 << 20, grown  # a zeroed set alone is 8 MiB
    r.close()


def test_a_long_payload_uses_four_sets_of_a_batch_each() -> None:
    pt = plaintext(100 * CHUNK_SIZE + 5)
    r = StreamReader(KEY, io.BytesIO(seal(pt)), workers=2, batch_chunks=16)
    assert b"".join(bytes(c) for c in r.chunks()) == pt
    assert len(r._sets) == 4
    assert all(len(a) == 16 * ENC_CHUNK_SIZE and len(b) == 16 * CHUNK_SIZE for a, b in r._sets)
    r.close()


@pytest.mark.parametrize("batch", [2, 3, 64])
@pytest.mark.parametrize("chunks", [1, 2, 3, 5, 6, 7, 14, 15, 30, 31, 62, 127])
def test_round_trips_across_batches(batch: int, chunks: int) -> None:
    for extra in (-1, 0, 1):
        pt = plaintext(max(0, chunks * CHUNK_SIZE + extra))
        r = StreamReader(KEY, io.BytesIO(seal(pt)), workers=2, batch_chunks=batch)
        assert r.read() == pt
        r.close()


def test_views_stay_intact_while_the_thread_reads_ahead() -> None:
    # The caller holds each run while the thread reads three batches ahead
    # into the other buffer sets: a run must not change until the next is asked for.
    pt = plaintext(300 * CHUNK_SIZE + 7)

    class Slow(io.BytesIO):
        pass

    r = StreamReader(KEY, Slow(seal(pt)), workers=2, batch_chunks=4)
    pos = 0
    for run in r.chunks():
        first = bytes(run)
        time.sleep(0.002)  # the read-ahead thread fills the other sets meanwhile
        assert bytes(run) == first == pt[pos : pos + len(run)]
        pos += len(run)
    assert pos == len(pt)
    r.close()


@pytest.mark.parametrize("bad", [0, 1, 5, 40, 99])
def test_a_tampered_chunk_anywhere_stops_there_after_what_authenticated(bad: int) -> None:
    pt = plaintext(100 * CHUNK_SIZE)
    ct = bytearray(seal(pt))
    ct[bad * ENC_CHUNK_SIZE + 100] ^= 1
    r = StreamReader(KEY, io.BytesIO(bytes(ct)), workers=2, batch_chunks=8)
    got = bytearray()
    with pytest.raises(PayloadError, match=f"chunk {bad} failed to authenticate"):
        for run in r.chunks():
            got += run
    assert bytes(got) == pt[: bad * CHUNK_SIZE]
    with pytest.raises(PayloadError):  # and never a clean end after it
        r.read(1)
    r.close()
    assert r._ahead is None


def test_reordered_and_truncated_payloads_are_refused_through_the_thread() -> None:
    pt = plaintext(50 * CHUNK_SIZE + 3)
    ct = seal(pt)
    c = [ct[i : i + ENC_CHUNK_SIZE] for i in range(0, len(ct), ENC_CHUNK_SIZE)]
    swapped = b"".join(c[:20] + [c[21], c[20]] + c[22:])
    for bad, what in ((swapped, "chunk 20 failed"), (b"".join(c[:-1]), "truncated"),
                      (ct[: 30 * ENC_CHUNK_SIZE], "truncated")):
        r = StreamReader(KEY, io.BytesIO(bad), workers=2, batch_chunks=4)
        with pytest.raises(PayloadError, match=what):
            r.read()
        r.close()


class Failing(io.BytesIO):
    """A source that fails after ``after`` bytes (a download cut short)."""

    def __init__(self, data: bytes, after: int) -> None:
        super().__init__(data)
        self.after = after

    def readinto(self, buf):  # type: ignore[no-untyped-def,override]
        if self.tell() >= self.after:
            raise ConnectionError("cut")
        view = memoryview(buf)[: self.after - self.tell()]
        return super().readinto(view)


def test_a_source_error_reaches_the_caller_after_the_batches_before_it() -> None:
    pt = plaintext(60 * CHUNK_SIZE)
    cut = 37 * ENC_CHUNK_SIZE
    r = StreamReader(KEY, Failing(seal(pt), cut), workers=2, batch_chunks=4)
    got = bytearray()
    with pytest.raises(ConnectionError):
        for run in r.chunks():
            got += run
    # Everything that authenticated before the cut, and not a byte more than came.
    assert len(got) % CHUNK_SIZE == 0 and 0 < len(got) <= 37 * CHUNK_SIZE
    assert bytes(got) == pt[: len(got)]
    r.close()


class Blocking:
    """A source whose second read blocks until ``abort`` is called."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self._released = threading.Event()
        self.reads = 0
        self.aborted = False

    def readinto(self, buf: memoryview) -> int:
        self.reads += 1
        if self.reads > 1:
            self._released.wait(30)
            if self.aborted:
                raise ConnectionError("aborted")
        return self._data.readinto(buf)

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)

    def abort(self) -> None:
        self.aborted = True
        self._released.set()


def test_close_aborts_a_read_blocked_in_the_source_and_waits_for_the_thread() -> None:
    # receive stopped by a signal while the relay is silent: the read-ahead
    # thread must not outlive the reader (it writes the download journal).
    src = Blocking(seal(plaintext(20 * CHUNK_SIZE)))
    r = StreamReader(KEY, src, workers=2, batch_chunks=4)
    it = r.chunks()
    assert len(next(it)) == 3 * CHUNK_SIZE  # the first batch: four chunks, one held back
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for _ in it:
                pass
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    deadline = time.monotonic() + 10
    while src.reads < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert src.reads == 2 and consumer.is_alive()  # blocked in the source
    ahead = r._ahead
    assert ahead is not None
    r.close()
    assert src.aborted and not ahead._thread.is_alive()
    consumer.join(10)
    assert not consumer.is_alive() and isinstance(errors[0], ConnectionError)


def test_read_ahead_stop_aborts_only_a_read_in_progress() -> None:
    gate = threading.Event()
    aborted: list[bool] = []

    def read() -> tuple[int, bool]:
        gate.wait(10)
        return 1, False

    ahead = ReadAhead(read, slots=1, abort=lambda: (aborted.append(True), gate.set()))
    time.sleep(0.05)
    ahead.stop()
    assert aborted == [True]
    # Idle in its slot wait: stopped without an abort.
    calls: list[int] = []
    idle = ReadAhead(lambda: (calls.append(1), (1, False))[1], slots=1,
                     abort=lambda: aborted.append(False))
    assert idle.next() == 1
    time.sleep(0.05)
    idle.stop()
    assert aborted == [True] and calls == [1]
