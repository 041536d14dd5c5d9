"""Fixtures: every database test runs on SQLite and, when SEALDROP_TEST_PG_URL is
set, on PostgreSQL too, each with a brand-new database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .relaykit import PG_URL, RunningRelay, fresh_database, make_config, start_relay_thread

DB_KINDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path / "data")


@pytest.fixture
def relay_factory(tmp_path: Path, db_url: str) -> Iterator[object]:
    stops = []

    def factory(**overrides: object) -> RunningRelay:
        app_kw = {k: overrides.pop(k) for k in ("clock", "blobs") if k in overrides}
        cfg = make_config(tmp_path / "data", db_url, **overrides)
        running, stop = start_relay_thread(cfg, **app_kw)
        stops.append(stop)
        return running

    yield factory
    for stop in reversed(stops):
        stop()


@pytest.fixture
def relay(relay_factory) -> RunningRelay:  # type: ignore[no-untyped-def]
    return relay_factory()
