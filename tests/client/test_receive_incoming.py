"""The ciphertext as it arrives (receive.download.incoming): spool read back, then the
relay from where it stopped, every relay byte journalled into the spool."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealdrop.client.profile.spool import Spool
from sealdrop.client.receive.download import download, incoming
from sealdrop.client.receive.staging import receive_transfer
from sealdrop.client.relay_api import RelayProtocolError, RelayUnavailable
from sealdrop.crypto.errors import SealdropCryptoError
from tests.client.receivekit import ALICE, BOB, make_dest, snapshot
from tests.client.receivekit import Profile as Receiver
from tests.crypto.transferkit import build_archive, encrypt_to

RELAY_ID = "t" * 26
BLOB = os.urandom(3 * 1024 * 1024 + 12345)


class _Blob:
    def __init__(self, data: bytes, size: int, cut_at: int | None) -> None:
        self._data, self.size, self._cut, self.done = data, size, cut_at, 0

    def readinto(self, buf: memoryview) -> int:
        if self._cut is not None and self.done >= self._cut:
            raise RelayUnavailable("the download from the relay was cut; run it again to resume")
        n = min(len(buf), 100_000, len(self._data) - self.done)
        if self._cut is not None:
            n = min(n, self._cut - self.done)
        buf[:n] = self._data[self.done:self.done + n]
        self.done += n
        return n


class _Relay:
    """Serves BLOB from an offset (as HTTP Range would), optionally cut or mis-sized."""

    def __init__(self, *, data: bytes = BLOB, size: int | None = None,
                 cut_at: int | None = None) -> None:
        self.offsets: list[int] = []
        self._data, self._size, self._cut = data, len(data) if size is None else size, cut_at

    @contextlib.contextmanager
    def open_download(self, relay_id: str, *, offset: int = 0) -> Iterator[_Blob]:
        self.offsets.append(offset)
        cut = None if self._cut is None else self._cut - offset
        yield _Blob(self._data[offset:], self._size, cut)


class _Session:
    def __init__(self, home: Path, relay: _Relay) -> None:
        self.spool = Spool(home)
        self.relay = relay


def _read_all(src: Any) -> bytes:
    out = bytearray()
    buf = bytearray(4 << 20)
    while n := src.readinto(buf):
        out += buf[:n]
    return bytes(out)


def test_a_fresh_download_is_journalled_as_it_passes(tmp_path: Path) -> None:
    relay = _Relay()
    session = _Session(tmp_path, relay)
    seen: list[tuple[int, int]] = []
    with incoming(session, RELAY_ID, size=len(BLOB),  # type: ignore[arg-type]
                  on_progress=lambda d, t: seen.append((d, t))) as src:
        assert _read_all(src) == BLOB
        assert src.complete
    assert relay.offsets == [0]
    assert session.spool.path(RELAY_ID).read_bytes() == BLOB
    assert seen[-1] == (len(BLOB), len(BLOB)) and len(seen) > 3


def test_a_resume_reads_the_spool_back_then_asks_only_for_the_rest(tmp_path: Path) -> None:
    relay = _Relay()
    session = _Session(tmp_path, relay)
    held = 1_500_001  # not on any block or chunk boundary
    session.spool.path(RELAY_ID).write_bytes(BLOB[:held])
    with incoming(session, RELAY_ID, size=len(BLOB)) as src:  # type: ignore[arg-type]
        assert _read_all(src) == BLOB
    assert relay.offsets == [held]
    assert session.spool.path(RELAY_ID).read_bytes() == BLOB


def test_a_complete_spool_needs_no_relay(tmp_path: Path) -> None:
    relay = _Relay()
    session = _Session(tmp_path, relay)
    session.spool.path(RELAY_ID).write_bytes(BLOB)
    with incoming(session, RELAY_ID, size=len(BLOB)) as src:  # type: ignore[arg-type]
        assert _read_all(src) == BLOB
    assert relay.offsets == []


def test_a_cut_download_keeps_what_came_and_the_next_run_continues(tmp_path: Path) -> None:
    session = _Session(tmp_path, _Relay(cut_at=2_000_000))
    with pytest.raises(RelayUnavailable, match="resume"):
        with incoming(session, RELAY_ID, size=len(BLOB)) as src:  # type: ignore[arg-type]
            _read_all(src)
    assert session.spool.path(RELAY_ID).read_bytes() == BLOB[:2_000_000]
    relay = _Relay()
    session.relay = relay
    path = download(session, RELAY_ID, size=len(BLOB))  # type: ignore[arg-type]
    assert relay.offsets == [2_000_000] and path.read_bytes() == BLOB


def test_a_blob_of_another_size_than_announced_is_refused(tmp_path: Path) -> None:
    session = _Session(tmp_path, _Relay(size=len(BLOB) + 1))
    with pytest.raises(RelayProtocolError, match="announced"):
        with incoming(session, RELAY_ID, size=len(BLOB)) as src:  # type: ignore[arg-type]
            _read_all(src)
    assert session.spool.path(RELAY_ID).read_bytes() == b""


def test_a_spool_longer_than_the_blob_is_dropped(tmp_path: Path) -> None:
    relay = _Relay()
    session = _Session(tmp_path, relay)
    session.spool.path(RELAY_ID).write_bytes(b"x" * (len(BLOB) + 10))
    with incoming(session, RELAY_ID, size=len(BLOB)) as src:  # type: ignore[arg-type]
        assert _read_all(src) == BLOB
    assert relay.offsets == [0]


def test_a_cut_mid_receive_is_a_resumable_failure_not_a_refusal(tmp_path: Path) -> None:
    """One pass: the relay's bytes stop midway. The decryptor must not read that as
    a truncated (hostile) transfer: the relay client's error comes out as it is,
    DEST is untouched, staging is gone, and the journal keeps what came."""
    payload = os.urandom(3 << 20)
    arch, _ = build_archive([("big.bin", payload)], sender=ALICE, recipients=[BOB])
    blob = encrypt_to(arch.to_bytes(), BOB, classical=True)
    half = len(blob) // 2
    session = _Session(tmp_path / "home", _Relay(data=blob, cut_at=half))
    bob = Receiver(tmp_path / "home", BOB, verified=(ALICE,))
    dest = make_dest(tmp_path)
    before = snapshot(dest)
    with pytest.raises(RelayUnavailable) as info:
        with incoming(session, RELAY_ID, size=len(blob)) as src:  # type: ignore[arg-type]
            receive_transfer(src, identity=BOB, contacts=bob.contacts, replay=bob.replay,
                             dest=dest, home=tmp_path / "home")
    assert not isinstance(info.value, SealdropCryptoError)
    assert snapshot(dest) == before
    assert list((tmp_path / "home" / "staging").iterdir()) == []
    assert session.spool.path(RELAY_ID).read_bytes() == blob[:half]
    relay = _Relay(data=blob)  # the next run: the spool read back, the rest asked for
    session.relay = relay
    with incoming(session, RELAY_ID, size=len(blob)) as src:  # type: ignore[arg-type]
        receive_transfer(src, identity=BOB, contacts=bob.contacts, replay=bob.replay,
                         dest=dest, home=tmp_path / "home")
    assert relay.offsets == [half]
    assert (dest / "big.bin").read_bytes() == payload


class _SilentBlob(_Blob):
    """Serves ``until`` bytes, then blocks (a silent relay) until ``abort``."""

    def __init__(self, data: bytes, until: int) -> None:
        super().__init__(data, len(data), None)
        self._until = until
        self._aborted = threading.Event()
        self.blocked = threading.Event()

    def readinto(self, buf: memoryview) -> int:
        if self.done >= self._until:
            self.blocked.set()
            if self._aborted.wait(30):
                raise RelayUnavailable("the download from the relay was cut; run it again")
        return super().readinto(buf)

    def abort(self) -> None:
        self._aborted.set()


def test_an_interrupt_while_the_relay_is_silent_aborts_the_read_ahead(tmp_path: Path) -> None:
    """The decryptor reads the relay on a thread of its own. A signal (here, a
    stop from the main thread while that thread waits on a silent relay) must
    end it at once through ``abort``, before the journal's descriptor closes:
    the journal keeps exactly what came, staging is gone, DEST untouched."""
    payload = os.urandom(20 << 20)
    arch, _ = build_archive([("big.bin", payload)], sender=ALICE, recipients=[BOB])
    blob = encrypt_to(arch.to_bytes(), BOB, classical=True)
    until = 12 << 20  # past the first batch (read on the caller's thread)
    silent = _SilentBlob(blob, until)

    class _SilentRelay(_Relay):
        @contextlib.contextmanager
        def open_download(self, relay_id: str, *, offset: int = 0) -> Iterator[_Blob]:
            self.offsets.append(offset)
            yield silent

    session = _Session(tmp_path / "home", _SilentRelay(data=blob))
    bob = Receiver(tmp_path / "home", BOB, verified=(ALICE,))
    dest = make_dest(tmp_path)
    before = snapshot(dest)
    main = threading.get_ident()

    def interrupt() -> None:  # SIGTERM during a receive becomes this (receive.interrupt)
        silent.blocked.wait(30)
        time.sleep(0.1)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with incoming(session, RELAY_ID, size=len(blob)) as src:  # type: ignore[arg-type]
            receive_transfer(src, identity=BOB, contacts=bob.contacts, replay=bob.replay,
                             dest=dest, home=tmp_path / "home")
    assert time.monotonic() - t0 < 20  # not the silent relay's 30 s
    assert silent._aborted.is_set()
    assert not [t for t in threading.enumerate() if t.name == "age-read-ahead"]
    assert snapshot(dest) == before
    assert list((tmp_path / "home" / "staging").iterdir()) == []
    journal = session.spool.path(RELAY_ID).read_bytes()
    assert len(journal) == silent.done >= until and journal == blob[: len(journal)]
