"""Prometheus metrics, kept and exposed by ``prometheus-client``.

Names carry the ``sealdrop_`` prefix and base units (bytes, seconds). Labels
are bounded sets (method, route template, status, reason); never a handle, a
transfer id or anything else per user.

Why every known label set is created at start: a counter that appears only at
its first increment makes ``rate()`` and ``increase()`` blind to that first
increment, and an alert on "internal errors > 0" would never see the first
one. So each counter is exported at zero from the start, for every label set
known in advance (the route table × the statuses the alerts watch, every
authentication failure reason, every deletion reason).

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before the
process starts: ``prometheus-client`` reads it at import), every process
writes its values to files there and ``/metrics`` answers the sum over all of
them, so several relay processes behind one scrape target report one total.
docs/operations.md ("Monitoring") says how to set it up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from sealdrop.crypto.protocol import ErrorCode

# Why: the ``_created`` series double every counter and no sealdrop alert uses them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

Labels = tuple[tuple[str, str], ...]

# name -> (help, label names). Counter names end in _total here and on the wire.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sealdrop_http_requests_total": ("HTTP requests handled.", ("method", "route", "status")),
    "sealdrop_upload_bytes_total": ("Ciphertext bytes committed by uploads.", ()),
    "sealdrop_download_bytes_total": ("Ciphertext bytes sent to downloaders.", ()),
    "sealdrop_transfers_created_total": ("Transfers created.", ()),
    "sealdrop_transfers_completed_total": ("Transfers finalised.", ()),
    "sealdrop_transfers_deleted_total": ("Transfers deleted, by reason.", ("reason",)),
    "sealdrop_auth_failures_total": ("Rejected request signatures, by reason.", ("reason",)),
    "sealdrop_rate_limited_total": ("Requests refused by the rate limiter.", ()),
    "sealdrop_internal_errors_total": ("Unexpected errors answered with 500.", ()),
    "sealdrop_body_timeouts_total": ("Request bodies that arrived too slowly (408).", ()),
    "sealdrop_db_statements_total": ("SQL statements sent to the metadata database.", ()),
    "sealdrop_db_commits_total": ("Transactions committed in the metadata database.", ()),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sealdrop_http_request_duration_seconds": ("Time to handle a request.", ("route",)),
}
# Gauges read from the database at each scrape (``set_store_stats``), and whether
# that read worked. In multiprocess mode every process reports the same database,
# so the most recent value is the true one, not a sum.
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sealdrop_accounts": ("Registered accounts.", ()),
    "sealdrop_transfers": ("Live transfer rows, by state.", ("state",)),
    "sealdrop_stored_bytes": ("Committed ciphertext bytes, by transfer state.", ("state",)),
    "sealdrop_database_up": (
        "1 if the last scrape could read the database, 0 if not (the other gauges are then "
        "from the last scrape that could).", (),
    ),
}
TRANSFER_STATES = ("uploading", "complete")

# The label sets known in advance (see the top).
WATCHED_STATUSES = ("500", "503", "507")  # what deploy/prometheus/sealdrop-alerts.yml watches
AUTH_FAILURE_REASONS = (
    ErrorCode.STALE_TIMESTAMP.value,
    ErrorCode.INVALID_SIGNATURE.value,
    ErrorCode.REPLAYED_REQUEST.value,
)
DELETE_REASONS = ("sender", "gc")


def multiprocess_dir() -> str | None:
    """The multiprocess folder, or None when this process keeps its metrics alone."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The relay's metrics: ``inc`` and ``observe`` by name and labels, ``expose`` for /metrics.

    One registry per instance (several relays run in one test process). Names
    not declared above are registered at first use, so a caller adding a
    counter cannot crash a request; declare it above to have it at zero first.
    """

    def __init__(self, routes: Iterable[tuple[str, str]] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._gauges: dict[str, Gauge] = {}
        for name, (text, labels) in COUNTERS.items():
            self._counter(name, text, labels)
        for name, (text, labels) in HISTOGRAMS.items():
            self._histograms[name] = Histogram(
                name, text, labels, buckets=BUCKETS, registry=self.registry
            )
        for name, (text, labels) in GAUGES.items():
            self._gauges[name] = Gauge(
                name, text, labels, registry=self.registry, multiprocess_mode="mostrecent"
            )
        self._at_zero(routes)

    def _counter(self, name: str, text: str, labels: tuple[str, ...]) -> Counter:
        counter = Counter(name, text, labels, registry=self.registry)
        self._counters[name] = counter
        return counter

    def _at_zero(self, routes: Iterable[tuple[str, str]]) -> None:
        requests = self._counters["sealdrop_http_requests_total"]
        durations = self._histograms["sealdrop_http_request_duration_seconds"]
        for method, route in routes:
            durations.labels(route=route)
            for status in WATCHED_STATUSES:
                requests.labels(method=method, route=route, status=status)
        for reason in AUTH_FAILURE_REASONS:
            self._counters["sealdrop_auth_failures_total"].labels(reason=reason)
        for reason in DELETE_REASONS:
            self._counters["sealdrop_transfers_deleted_total"].labels(reason=reason)
        for state in TRANSFER_STATES:
            self._gauges["sealdrop_transfers"].labels(state=state)
            self._gauges["sealdrop_stored_bytes"].labels(state=state)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counter(name, name, tuple(sorted(labels)))
        (counter.labels(**labels) if labels else counter).inc(amount)

    def observe(self, name: str, value: float, **labels: str) -> None:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = Histogram(
                name, name, tuple(sorted(labels)), buckets=BUCKETS, registry=self.registry
            )
        (histogram.labels(**labels) if labels else histogram).observe(value)

    def set_store_stats(self, stats: dict[str, int] | None) -> None:
        """The database gauges from ``store.stats()``, or None when it could not be read."""
        up = self._gauges["sealdrop_database_up"]
        if stats is None:
            up.set(0)
            return
        self._gauges["sealdrop_accounts"].set(stats.get("accounts", 0))
        for state in TRANSFER_STATES:
            self._gauges["sealdrop_transfers"].labels(state=state).set(
                stats.get(f"transfers_{state}", 0)
            )
            self._gauges["sealdrop_stored_bytes"].labels(state=state).set(
                stats.get(f"bytes_{state}", 0)
            )
        up.set(1)

    def samples(self, name: str) -> dict[Labels, float]:
        """This process's current values of one counter or gauge, by label set (zeros
        included): what tests and callers read instead of scraping."""
        values: dict[Labels, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == name:
                    values[tuple(sorted(sample.labels.items()))] = sample.value
        return values

    def value(self, name: str, **labels: str) -> float:
        return self.samples(name).get(tuple(sorted(labels.items())), 0.0)

    def expose(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition body and its content type, in the format the scraper asked
        for (``Accept``: the Prometheus text format, or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept)
        folder = multiprocess_dir()
        if folder is None:
            return encoder(self.registry), content_type
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=folder)  # type: ignore[no-untyped-call]
        return encoder(merged), content_type
