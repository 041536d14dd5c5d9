"""Downloads go out with sendfile: the right bytes for whole blobs and ranges, the
download-bytes metric, and a missing or short blob refused before any header
(503, JSON), never a 200 with a truncated body. A store without local files
still serves by streaming."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from sealdrop.server.blobs import LocalBlobStore

from .relaykit import RunningRelay, upload_blob

METRIC = "sealdrop_download_bytes_total"


def _upload(relay: RunningRelay, blob: bytes) -> tuple[str, Any]:
    alice, _ = relay.user("alice")
    _, bob = relay.user("bob-lab")
    t = alice.create_transfer(["bob-lab"], len(blob))
    upload_blob(alice, t["id"], blob, chunk_size=256 * 1024)
    alice.complete(t["id"])
    return t["id"], bob


def _downloaded(relay: RunningRelay, expected: float) -> float:
    """The download-bytes metric once it reached ``expected`` (or after 5 s):
    the relay counts after the last byte went out, which may be just after the
    client has read it."""
    deadline = time.monotonic() + 5
    while (value := relay.relay.metrics.value(METRIC)) < expected and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def _complete_file(relay: RunningRelay, tid: str) -> Path:
    return relay.config.data_dir / "blobs" / "complete" / tid[:2] / tid


def test_whole_and_ranged_downloads_use_sendfile_and_count_bytes(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int | None]] = []
    real = asyncio.BaseEventLoop.sendfile

    async def spy(self: asyncio.BaseEventLoop, transport: Any, file: BinaryIO,
                  offset: int = 0, count: int | None = None, **kw: Any) -> int:
        calls.append((offset, count))
        return await real(self, transport, file, offset, count, **kw)

    monkeypatch.setattr(asyncio.BaseEventLoop, "sendfile", spy)
    blob = os.urandom(3 * 1024 * 1024 + 17)
    tid, bob = _upload(relay, blob)
    path = f"/v1/transfers/{tid}/data"
    before = relay.relay.metrics.value(METRIC)
    st, h, data = relay.raw("GET", path, sign=bob)
    assert st == 200 and data == blob and h["Cache-Control"] == "no-store"
    assert h["ETag"] == f'"{h["Sealdrop-Blob-Digest"]}"'
    st, h, data = relay.raw("GET", path, headers={"Range": "bytes=1000-2000999"}, sign=bob)
    assert st == 206 and data == blob[1000:2001000]
    assert h["Content-Range"] == f"bytes 1000-2000999/{len(blob)}"
    assert calls == [(0, len(blob)), (1000, 2_000_000)]
    assert _downloaded(relay, before + len(blob) + 2_000_000) - before == len(blob) + 2_000_000


@pytest.mark.parametrize("damage", ["missing", "short"])
def test_missing_or_short_blob_is_refused_before_headers(
    relay: RunningRelay, damage: str
) -> None:
    blob = os.urandom(600_000)
    tid, bob = _upload(relay, blob)
    f = _complete_file(relay, tid)
    if damage == "missing":
        f.unlink()
    else:
        os.truncate(f, len(blob) - 1)
    before = relay.relay.metrics.value(METRIC)
    st, _, data = relay.raw("GET", f"/v1/transfers/{tid}/data", sign=bob)
    assert st == 503 and b'"store_unavailable"' in data
    # a range that ends before the damage is still served from an intact prefix
    if damage == "short":
        st, _, data = relay.raw("GET", f"/v1/transfers/{tid}/data",
                                headers={"Range": "bytes=0-99"}, sign=bob)
        assert st == 206 and data == blob[:100]
        assert _downloaded(relay, before + 100) - before == 100
    else:
        assert relay.relay.metrics.value(METRIC) == before


class StreamOnlyStore(LocalBlobStore):
    """A store with no local files to hand out, like an object store."""

    async def open_file(self, key: str, end: int) -> BinaryIO | None:
        return None


def test_a_store_without_local_files_streams(relay_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(blobs=StreamOnlyStore(tmp_path / "data" / "blobs"))
    blob = os.urandom(2 * 1024 * 1024 + 5)
    tid, bob = _upload(relay, blob)
    st, _, data = relay.raw("GET", f"/v1/transfers/{tid}/data", sign=bob)
    assert st == 200 and data == blob
    st, _, data = relay.raw("GET", f"/v1/transfers/{tid}/data",
                            headers={"Range": "bytes=-10"}, sign=bob)
    assert st == 206 and data == blob[-10:]
    assert _downloaded(relay, len(blob) + 10) == len(blob) + 10
