"""PostgreSQL restarted, and crashed, under two relay processes behind nginx
while practices send, the lab's watch receives and its inbox is polled (issue
14: "requests fail cleanly with 503 and recover").

The PostgreSQL is the module's own (``tests.pgkit``: the test stops and kills
it), the two processes share one data folder (the local-files store on one
host, "PostgreSQL and several processes" in docs/operations.md), and nginx is
the shipped template. What the outage may show: successes, 503
``store_unavailable`` (and a 409 with the committed offset for a chunk
resent after its commit was lost); never a 500, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import pgkit
from tests.e2e.kit import RELAY, Relay, free_port, make_case, tree, wait_for
from tests.e2e.nginxkit import FrontedUser, Nginx

KiB = 1024
MiB = 1024 * KiB
SENDS = 3  # concurrent sends
BIG = 1 * MiB  # each case's big file: 16 chunks of 64 KiB
UP = 256 * KiB  # bytes a second into each process: the sends span both faults

if (_why := pgkit.missing()) is not None:
    pytest.skip(_why, allow_module_level=True)


@dataclass
class Site:
    db: pgkit.PgCluster
    db_url: str
    relays: list[Relay]
    front: Nginx
    practice: FrontedUser
    lab: FrontedUser
    root: Path

    def sql(self, query: str) -> list[tuple[object, ...]]:
        out = subprocess.run(
            ["psql", "-X", "-A", "-t", "-F", "\t", "-d", self.db_url, "-c", query],
            capture_output=True, text=True, timeout=60, check=True)
        return [tuple(line.split("\t")) for line in out.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pgrestart")
    db = pgkit.PgCluster(free_port())
    relays: list[Relay] = []
    front: Nginx | None = None
    try:
        url = db.createdb("sealdrop")
        data = root / "relay"  # one data folder, both processes (local files, one host)
        data.mkdir(mode=0o700)
        # The reaper runs gc every other second on each process: gc runs, and
        # holds its lease, now and then through the faults.
        (data / "relay.toml").write_text(f'database_url = "{url}"\ngc_interval_seconds = 2\n')
        for name in ("a", "b"):
            r = Relay(data, root / f"relay-{name}.log")  # the second `init` finds it done
            r.env["SEALDROP_RELAY_TRUSTED_PROXIES"] = "127.0.0.1/32"
            r.start()
            relays.append(r)
        for r, code in zip(relays, _invites(url, 2), strict=True):
            r._invites = [code]
        # nginx reaches each process through its link (tests.e2e.kit.Link), which
        # the test throttles so the sends are still going when the faults come.
        front = Nginx(root / "nginx", [r.link.port for r in relays])
        front.start()
        practice = FrontedUser(root, "cabinet-martin", relays[0], front)
        lab = FrontedUser(root, "labo-dupont", relays[1], front)
        for u in (practice, lab):
            u.env["SEALDROP_RETRY_FOR"] = "120"
            u.init()
        practice.trust(lab)
        lab.trust(practice)
        yield Site(db, url, relays, front, practice, lab, root)
    finally:
        if front is not None:
            front.stop()
        for r in relays:
            r.close()
        db.close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _readyz(port: int) -> tuple[int, object]:
    """/readyz of one process: (status, what it says is failing)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz",  # noqa: S310
                                    timeout=10) as resp:
            return int(resp.status), None
    except urllib.error.HTTPError as exc:
        return int(exc.code), tuple(json.loads(exc.read()).get("failing", ()))


@dataclass
class Watchers:
    """Threads that poll while the fault happens: each process's /readyz, and
    the lab's inbox through nginx."""

    ports: list[int]
    lab: FrontedUser
    ready: dict[int, list[tuple[int, object]]] = field(default_factory=dict)
    inbox: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.threads = [threading.Thread(target=self._ready, args=(p,)) for p in self.ports]
        self.threads.append(threading.Thread(target=self._inbox))
        for t in self.threads:
            t.start()

    def _ready(self, port: int) -> None:
        seen = self.ready.setdefault(port, [])
        while not self.stop.is_set():
            seen.append(_readyz(port))
            self.stop.wait(0.1)

    def _inbox(self) -> None:
        while not self.stop.is_set():
            self.inbox.append(self.lab.run("inbox", "--json", check=False, timeout=300))
            self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(300)


def _tail(path: Path, start: int) -> list[str]:
    with path.open("rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace").splitlines()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _relay_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def _invites(url: str, n: int) -> list[str]:
    """Invites made in this process (a `sealdrop-relay invite create` each
    would start the relay's CLI: a second or two apiece)."""
    from sealdrop.server.accounts import create_invite
    from sealdrop.server.config import async_url
    from sealdrop.server.metadata import SqlMetadataStore

    async def run() -> list[str]:
        store = SqlMetadataStore.open(async_url(url))
        try:
            return [await create_invite(store, now=int(time.time()), ttl=3600)
                    for _ in range(n)]
        finally:
            await store.close()

    return asyncio.run(run())


def _chunk_refused_since(site: Site, marks: dict[str, int]) -> bool:
    """Whether a process answered a chunk 503 ``store_unavailable`` since ``marks``."""
    return any('"store_unavailable","route":"/v1/transfers/{id}/data"'
               in "\n".join(_tail(r.log, marks[r.log.name])) for r in site.relays)


def _uploaded(site: Site) -> list[float]:
    return [r.metric("sealdrop_upload_bytes_total") for r in site.relays]


def _more(site: Site, before: list[float]) -> bool:
    """Both processes took chunk bytes since ``before``."""
    return all(now > then for now, then in zip(_uploaded(site), before, strict=True))


def test_a_restart_and_a_crash_under_traffic_fail_cleanly_and_recover(site: Site) -> None:
    access = site.front.folder / "access.log"
    marks = {"access": _size(access), **{r.log.name: _size(r.log) for r in site.relays}}
    cases = [make_case(site.root / f"src{i}", marker=str(i), big=BIG) for i in range(SENDS)]
    dest = site.root / "in"
    dest.mkdir()
    watch = site.lab.popen("watch", "--into", str(dest), "--interval", "0.5",
                           "--max-backoff", "1", "--json")
    before = _uploaded(site)
    sends = [site.practice.popen("send", str(c), "--to", site.lab.handle, "--json",
                                 "--chunk-size", str(64 * KiB)) for c in cases]
    watchers = Watchers([r.port for r in site.relays], site.lab)
    slow = contextlib.ExitStack()
    for r in site.relays:
        slow.enter_context(r.throttled(up=UP))
    try:
        wait_for(lambda: _more(site, before), 120, "both processes to take chunks")
        # Every send is past its first steps (which, as a relay down from the
        # start, are told at once) and in its upload, which rides out outages.
        wait_for(lambda: site.sql("select count(*) from transfers where committed > 0")
                 == [(str(SENDS),)], 120, "every send to be uploading")
        fault_at = time.time()
        site.db.restart("fast")
        # The sends go on, on both processes, through the restarted server...
        after_restart = _uploaded(site)
        wait_for(lambda: _more(site, after_restart), 120, "chunks after the restart")
        # ...until it crashes: every session cut, recovery from WAL at start.
        crash = {r.log.name: _size(r.log) for r in site.relays}
        site.db.stop("immediate")
        # Down, each process says so: /readyz and a signed request through nginx.
        wait_for(lambda: all(_status(f"http://127.0.0.1:{r.port}/readyz") == 503
                             for r in site.relays), 60, "/readyz 503 on both processes")
        down = site.lab.run("inbox", "--json", check=False, env={"SEALDROP_RETRY_FOR": "0"})
        assert down.returncode != 0 and "Traceback" not in down.stderr, down.stderr
        assert "the relay's database is unreachable" in down.stderr, down.stderr
        # Held down until the sends have met it too: a chunk answered 503.
        wait_for(lambda: _chunk_refused_since(site, crash), 120, "a chunk to meet the crash")
        site.db.start()
        back_at = time.time()
        results = [p.communicate(timeout=300) for p in sends]
        for p, (out, err) in zip(sends, results, strict=True):
            assert p.returncode == 0, err
            assert "Traceback" not in err
        tids = [json.loads(out)["transfer_id"] for out, _ in results]
        # The watch receives every case, each whole (signature and hashes
        # verified, or it would not be placed), each once.
        for c in cases:
            wait_for(lambda c=c: (dest / c.name).is_dir() and tree(dest / c.name) == tree(c),
                     120, f"{c.name} to be received")
        wait_for(lambda: all(_status(f"http://127.0.0.1:{r.port}/readyz") == 200
                             for r in site.relays), 60, "/readyz 200 again")
        # Each process's background gc outlived the outage (it logged gc_failed
        # meanwhile) and one of them leads a run again.
        wait_for(lambda: all(_gc_rounds(r, back_at) for r in site.relays)
                 and any("gc" in _gc_rounds(r, back_at) for r in site.relays),
                 60, "the reapers to run gc again")
    finally:
        slow.close()
        watchers.close()
        watch.send_signal(signal.SIGTERM)
        w_out, w_err = watch.communicate(timeout=60)
        for p in sends:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert watch.returncode == 0, w_err
    assert "Traceback" not in w_err
    received = [json.loads(line) for line in w_out.splitlines() if line.strip()]
    assert sorted(e["transfer_id"] for e in received if e["event"] == "received") == sorted(tids)

    # Each process's /readyz said 200, or 503 for the database and nothing
    # else: 503 in the crash (held down until both said so), then 200 again.
    for port, seen in watchers.ready.items():
        assert set(seen) <= {(200, None), (503, ("database",))}, (port, seen)
        statuses = [status for status, _ in seen]
        assert 503 in statuses and 200 in statuses[statuses.index(503):], (port, seen)
    # The inbox polls during the faults: an inbox, or a sentence; never a traceback.
    for polled in watchers.inbox:
        assert "Traceback" not in polled.stderr, polled.stderr
        if polled.returncode != 0:
            assert "the relay's database is unreachable" in polled.stderr, polled.stderr

    # nginx passed on only successes, 503s and 409s (a chunk resent after its
    # commit was cut off is refused with the committed offset; the client resumes).
    statuses = [int(m.group(1)) for line in _tail(access, marks["access"])
                if (m := re.search(r'" (\d{3}) ', line))]
    assert 503 in statuses and set(statuses) <= {200, 201, 204, 206, 409, 503}, statuses
    for r in site.relays:
        lines = _tail(r.log, marks[r.log.name])
        text = "\n".join(lines)
        assert "internal_error" not in text and "Traceback" not in text, text[-3000:]
        logged = _relay_lines(lines)
        # Every 503 an API route answered was the database's (the route logs
        # store_unavailable once per such answer); /readyz answers its own.
        api_503 = [e for e in logged if e.get("event") == "request" and e.get("status") == 503
                   and e.get("route") != "/readyz"]
        unavailable = [e for e in logged if e.get("event") == "store_unavailable"]
        assert api_503 and len(api_503) == len(unavailable), (api_503, unavailable)
        # Chunks were taken by this process after the faults: uploads resumed
        # on either process, each continuing where the other committed.
        assert _after(logged, fault_at, method="PATCH", route_end="/data", ok=True), r.log.name

    # Each transfer is in the lab's inbox once.
    listed = [t["id"] for t in site.lab.json("inbox")["transfers"]]
    assert all(listed.count(t) == 1 for t in tids), listed
    # No upload lease is left once the sends are done (none waits to run out);
    # rate buckets were spent after the faults (the shared limiter works on
    # the restarted server).
    assert site.sql("SELECT name FROM leases WHERE name LIKE 'upload:%'") == []
    assert float(str(site.sql("SELECT max(updated_at) FROM rate_buckets")[0][0])) >= fault_at
    # gc's leader lease is taken again: of two gcs at once, one runs (a lease
    # the reaper held when the database went would make both skip). A pair
    # may also meet a reaper's round (every 2 s, a few ms long): three tries.
    for _ in range(3):
        answers = _gc_twice(site)
        if any("skipped" not in a for a in answers):
            break
    assert any("skipped" not in a for a in answers), answers


def _after(logged: list[dict[str, object]], since: float, *, method: str, route_end: str,
           ok: bool) -> bool:
    for e in logged:
        status = e.get("status")
        if (e.get("event") == "request" and e.get("method") == method
                and str(e.get("route", "")).endswith(route_end)
                and float(str(e.get("ts", 0))) >= since
                and isinstance(status, int) and (200 <= status < 300) == ok):
            return True
    return False


def _gc_rounds(r: Relay, since: float) -> set[str]:
    """The reaper's rounds ``r`` logged since ``since``: gc, gc_skipped."""
    return {str(e["event"]) for e in _relay_lines(_tail(r.log, 0))
            if e.get("event") in ("gc", "gc_skipped") and float(str(e["ts"])) >= since}


def _gc_twice(site: Site) -> list[dict[str, object]]:
    """``sealdrop-relay gc`` on both processes' configuration at once."""
    r = site.relays[0]
    procs = [subprocess.Popen([RELAY, "gc", "--data", str(r.data), "--json"], env=r.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in site.relays]
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers.append(json.loads(out))
    return answers
