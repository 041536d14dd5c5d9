"""The local blob store's readiness probe (``/readyz``) holds when the relay
processes sharing one data folder ("PostgreSQL and several processes" in
docs/operations.md) probe it at the same moment: each probe writes a file of
its own. With one shared probe file name, one process deleted the file the
other was about to delete, and a healthy process answered 503 (seen in
tests/e2e/test_pg_restart.py). And it still fails when the folder cannot be
written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sealdrop.server.blobs import LocalBlobStore
from sealdrop.server.errors import StoreUnavailable


def test_two_stores_on_one_folder_probe_at_once(tmp_path: Path) -> None:
    a, b = LocalBlobStore(tmp_path), LocalBlobStore(tmp_path)
    a.create_dirs()

    async def run() -> None:
        # Many at once on both: to_thread runs them on several threads.
        await asyncio.gather(*(s.ready() for _ in range(300) for s in (a, b)))

    asyncio.run(run())
    assert list(a.partial_dir.iterdir()) == []  # no probe left behind


def test_a_folder_that_cannot_be_written_is_not_ready(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.create_dirs()
    # A file where the folder should be: unwritable even for root.
    store.partial_dir.rmdir()
    store.partial_dir.write_bytes(b"")
    with pytest.raises(StoreUnavailable, match="blob store not writable"):
        asyncio.run(store.ready())
