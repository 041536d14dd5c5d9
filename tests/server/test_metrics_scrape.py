"""/metrics as Prometheus reads it: parsed with prometheus-client's own parsers,
with the database up and with it really down (PostgreSQL refusing connections,
SQLite's file gone), exact integer values, counters at zero before their first
increment, and the multiprocess mode summing several relay processes."""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from sealdrop.crypto.protocol import ErrorCode
from sealdrop.server import metrics as metrics_mod
from sealdrop.server.config import load_config
from sealdrop.server.errors import ConfigError
from sealdrop.server.metrics import Metrics

from .relaykit import (
    RelayProcess,
    RunningRelay,
    _pg_admin,
    upload_blob,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _scrape(relay: RunningRelay) -> Samples:
    st, h, data = relay.raw("GET", "/metrics")
    assert st == 200, data
    assert h["Content-Type"].startswith("text/plain; version=0.0.4")
    return _parse(data.decode())


def _v(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _send(relay: RunningRelay, size: int) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    tid = alice.create_transfer(["bob-lab"], size)["id"]
    upload_blob(alice, tid, os.urandom(size), chunk_size=64 * 1024)
    alice.complete(tid)


def _database_down(relay: RunningRelay, db_url: str) -> None:
    """Make the database unreachable for real, as an outage would."""
    if db_url.startswith("postgresql"):
        name = db_url.rsplit("/", 1)[1]
        _pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        _pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{name}'")
        return
    # SQLite: the file is gone and its path cannot be opened (a directory stands
    # there). Pooled connections would still hold the old file open, as a crashed
    # disk would not let them: drop them, as the pool does after an error.
    db = relay.config.data_dir / "relay.db"
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{db}{suffix}")
        if p.exists():
            p.rename(f"{p}.away")
    db.mkdir()
    relay.run(relay.relay.store.engine.dispose())


def _database_back(relay: RunningRelay, db_url: str) -> None:
    if db_url.startswith("postgresql"):
        name = db_url.rsplit("/", 1)[1]
        _pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        return
    db = relay.config.data_dir / "relay.db"
    db.rmdir()
    for suffix in ("", "-wal", "-shm"):
        away = Path(f"{db}{suffix}.away")
        if away.exists():
            away.rename(f"{db}{suffix}")


def test_scrape_parses_with_the_database_up_and_down(
    relay: RunningRelay, db_url: str
) -> None:
    size = 1_234_567  # more digits than %g kept: it printed 1.23457e+06
    _send(relay, size)
    up = _scrape(relay)
    assert _v(up, "sealdrop_database_up") == 1
    assert _v(up, "sealdrop_upload_bytes_total") == size
    assert _v(up, "sealdrop_stored_bytes", state="complete") == size
    assert _v(up, "sealdrop_transfers", state="complete") == 1
    assert _v(up, "sealdrop_accounts") == 2
    assert all(name.startswith("sealdrop_") for name, _ in up)

    _database_down(relay, db_url)
    try:
        # The API itself cannot answer, but the scrape does, and says why.
        down = _scrape(relay)
        assert _v(down, "sealdrop_database_up") == 0
        assert _v(down, "sealdrop_upload_bytes_total") == size  # counters live on
        # A scrape is counted once answered: the one before this one shows.
        scrapes = ("sealdrop_http_requests_total",
                   (("method", "GET"), ("route", "/metrics"), ("status", "200")))
        assert down[scrapes] == up.get(scrapes, 0) + 1
        st, _, _ = relay.raw("GET", "/readyz")
        assert st == 503
    finally:
        _database_back(relay, db_url)
    again = _scrape(relay)
    assert _v(again, "sealdrop_database_up") == 1
    assert _v(again, "sealdrop_stored_bytes", state="complete") == size


def test_counters_are_exported_at_zero_before_their_first_increment(
    relay: RunningRelay,
) -> None:
    fresh = _scrape(relay)
    routes = {(r.method, r.resource.canonical) for r in relay.app.router.routes()
              if r.resource is not None}
    assert ("GET", "/v1/info") in routes and ("PATCH", "/v1/transfers/{id}/data") in routes
    for method, route in routes:
        for status in metrics_mod.WATCHED_STATUSES:
            assert _v(fresh, "sealdrop_http_requests_total", method=method, route=route,
                      status=status) == 0
        assert _v(fresh, "sealdrop_http_request_duration_seconds_count", route=route) \
            in (0, 1)  # /metrics itself is being counted
    for reason in metrics_mod.AUTH_FAILURE_REASONS:
        assert _v(fresh, "sealdrop_auth_failures_total", reason=reason) == 0
    for reason in metrics_mod.DELETE_REASONS:
        assert _v(fresh, "sealdrop_transfers_deleted_total", reason=reason) == 0
    for name in ("internal_errors", "rate_limited", "body_timeouts", "upload_bytes",
                 "download_bytes", "transfers_created", "transfers_completed"):
        assert _v(fresh, f"sealdrop_{name}_total") == 0
    # And the first increment shows: a request signed with a clock an hour off.
    _, alice = relay.user("alice")
    st, _, _ = relay.raw("GET", "/v1/inbox", sign=alice, now=time.time() - 3600)
    assert st == 401
    later = _scrape(relay)
    assert _v(later, "sealdrop_auth_failures_total",
              reason=ErrorCode.STALE_TIMESTAMP.value) == 1
    assert _v(later, "sealdrop_auth_failures_total",
              reason=ErrorCode.INVALID_SIGNATURE.value) == 0


def test_exact_integer_values() -> None:
    m = Metrics()
    big = 53_492_123  # %g printed 5.34921e+07, off by 23
    m.inc("sealdrop_upload_bytes_total", big)
    m.inc("sealdrop_upload_bytes_total", 1)
    m.set_store_stats({"accounts": 3, "bytes_complete": 8 * 2**30 - 1})
    body, _ = m.expose()
    got = _parse(body.decode())
    assert _v(got, "sealdrop_upload_bytes_total") == big + 1
    assert _v(got, "sealdrop_stored_bytes", state="complete") == 8 * 2**30 - 1
    assert _v(got, "sealdrop_stored_bytes", state="uploading") == 0
    assert _v(got, "sealdrop_accounts") == 3


def test_a_counter_added_later_is_counted_not_a_crash() -> None:
    m = Metrics()
    m.inc("sealdrop_something_new_total", reason="x")
    got = _parse(m.expose()[0].decode())
    assert _v(got, "sealdrop_something_new_total", reason="x") == 1


def test_openmetrics_when_the_scraper_asks(relay: RunningRelay) -> None:
    st, h, data = relay.raw(
        "GET", "/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"},
    )
    assert st == 200 and h["Content-Type"].startswith("application/openmetrics-text")
    names = {f.name for f in openmetrics_families(data.decode())}
    assert {"sealdrop_http_requests", "sealdrop_database_up"} <= names


def test_info_states_the_largest_chunk(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(max_chunk_bytes=100_000)
    st, h, data = relay.raw("GET", "/v1/info")  # unsigned
    assert st == 200 and h["Cache-Control"] == "no-store"
    info = json.loads(data)
    assert info.pop("log")["origin"].startswith("sealdrop.invalid/")  # docs/transparency.md
    # the expiry bounds, so that a refused --expires is worded from data
    assert info.pop("expiry_seconds") == {"min": 60, "max": 30 * 86400}
    assert info == {"max_chunk_bytes": 100_000, "chunk_hashes": ["blake3", "sha256"]}
    alice, _ = relay.user("alice")
    assert alice.expiry_bounds() == (60, 30 * 86400)
    assert alice.max_chunk_bytes() == 100_000
    assert alice.upload_terms() == (100_000, "blake3")


def test_max_chunk_below_what_clients_need_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 65536"):
        load_config(tmp_path, env={"SEALDROP_RELAY_MAX_CHUNK_BYTES": "65535"})
    assert load_config(tmp_path, env={"SEALDROP_RELAY_MAX_CHUNK_BYTES": "65536"}
                       ).max_chunk_bytes == 65536


# -- multiprocess mode -------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class _EnvRelayProcess(RelayProcess):
    """A relay process with more environment variables."""

    def __init__(self, data_dir: Path, log_path: Path, extra: dict[str, str]) -> None:
        super().__init__(data_dir, "", log_path)
        self.extra = extra

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self.extra}


def test_multiprocess_mode_sums_every_relay_process(tmp_path: Path) -> None:
    """Two relay processes with one PROMETHEUS_MULTIPROC_DIR: either one's /metrics
    counts the requests both answered."""
    shared = tmp_path / "prom"
    shared.mkdir()
    procs: list[RelayProcess] = []
    try:
        for name in ("a", "b"):
            p = _EnvRelayProcess(tmp_path / name, tmp_path / f"{name}.log",
                                 {"PROMETHEUS_MULTIPROC_DIR": str(shared)})
            p.cli("init")
            procs.append(p)
            p.start()
        a, b = procs
        for _ in range(3):
            assert _get(a.port, "/healthz")[0] == 200
        for _ in range(2):
            assert _get(b.port, "/healthz")[0] == 200
        for p in procs:
            st, text = _get(p.port, "/metrics")
            assert st == 200
            got = _parse(text)
            assert _v(got, "sealdrop_http_requests_total", method="GET", route="/healthz",
                      status="200") == 5
            assert _v(got, "sealdrop_database_up") == 1
        assert any(shared.iterdir()), "each process writes its values there"
    finally:
        for p in procs:
            p.stop()


def test_the_multiproc_folder_is_read_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert metrics_mod.multiprocess_dir() is None
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    assert metrics_mod.multiprocess_dir() is None

