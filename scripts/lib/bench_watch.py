"""Idle `watch` polls against a real `sealdrop-relay serve` on loopback.

Target (issue 17): a hundred idle watchers cost the relay no more than a few
percent of a core. --watchers accounts (default 100) each poll their empty
inbox with a real signed `GET /v1/inbox` every --interval seconds (default 1 s,
thirty times `sealdrop watch`'s 30 s, so that the figure is measurable in a
short run; the share of a core at 30 s is this one divided by 30, printed too).
The relay also holds --traffic complete transfers for another account, so an
inbox query that scanned the relay's transfers instead of the caller's index
would show. Prints the relay's CPU (user + system, /proc/PID/stat) as a share
of one core, per poll, and SQL statements and commits per poll.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from sealdrop.crypto import protocol

sys.path.insert(0, str(Path(__file__).parent))
from bench_relay import (  # noqa: E402 - the sibling script's helpers
    COMMITS,
    REQUESTS,
    STATEMENTS,
    Account,
    _account,
    _counters,
    _cpu_seconds,
    _seal,
    _start,
)

EMPTY = hashlib.sha256(b"").hexdigest()


async def _traffic(url: str, sender: Account, recipient: Account, n: int) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            blob = _seal(1024, recipient[2])

            async def call(method: str, path: str, body: bytes, sha: str,
                           headers: dict[str, str]) -> bytes:
                h = protocol.sign_request(sender[1], sender[0], method, path, sha,
                                          timestamp=int(time.time()),
                                          nonce=os.urandom(protocol.NONCE_BYTES))
                async with s.request(method, url + path, data=body,
                                     headers={**h, **headers}) as r:
                    if r.status >= 400:
                        raise SystemExit(f"traffic: {method} {r.status}")
                    return await r.read()

            body = json.dumps({"recipients": [recipient[0]], "size": len(blob)}).encode()
            tid = json.loads(await call("POST", "/v1/transfers", body,
                                        hashlib.sha256(body).hexdigest(),
                                        {"Content-Type": "application/json"})
                             )["transfer"]["id"]
            sha = hashlib.sha256(blob).hexdigest()
            await call("PATCH", f"/v1/transfers/{tid}/data", blob, sha, {
                "Content-Type": "application/octet-stream",
                protocol.H_UPLOAD_OFFSET: "0", protocol.H_CHUNK_SHA256: sha})
            await call("POST", f"/v1/transfers/{tid}/complete", b"{}",
                       hashlib.sha256(b"{}").hexdigest(), {"Content-Type": "application/json"})


async def _watchers(url: str, accounts: list[Account], interval: float, seconds: float,
                    errors: list[str]) -> None:
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def watcher(i: int, who: Account) -> None:
            # Spread the watchers over the interval, as independent labs would be.
            await asyncio.sleep(interval * i / len(accounts))
            while time.monotonic() < end:
                h = protocol.sign_request(who[1], who[0], "GET", "/v1/inbox", EMPTY,
                                          timestamp=int(time.time()),
                                          nonce=os.urandom(protocol.NONCE_BYTES))
                async with s.get(url + "/v1/inbox", headers=h) as r:
                    data = await r.read()
                    if r.status != 200 or json.loads(data)["transfers"]:
                        errors.append(f"{r.status} {data[:100]!r}")
                await asyncio.sleep(interval)

        await asyncio.gather(*(watcher(i, a) for i, a in enumerate(accounts)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to measure")
    ap.add_argument("--traffic", type=int, default=200,
                    help="complete transfers for another account, present throughout")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sealdrop-bench-watch-") as tmp:
        data, log = Path(tmp) / "relay", Path(tmp) / "relay.log"
        proc, port = _start(data, log)
        url = f"http://127.0.0.1:{port}"
        try:
            busy = [_account(url, data, f"busy-{i}") for i in range(2)]
            asyncio.run(_traffic(url, busy[0], busy[1], args.traffic))
            accounts = [_account(url, data, f"watch-{i:03d}") for i in range(args.watchers)]
            errors: list[str] = []
            before = _counters(url)
            cpu0 = sum(_cpu_seconds(proc.pid))
            t0 = time.perf_counter()
            asyncio.run(_watchers(url, accounts, args.interval, args.seconds, errors))
            elapsed = time.perf_counter() - t0
            cpu = sum(_cpu_seconds(proc.pid)) - cpu0
            after = _counters(url)
        finally:
            proc.terminate()
            proc.wait(30)
    polls = after[REQUESTS] - before[REQUESTS] - 1  # the first scrape is counted by the second
    share = cpu / elapsed
    print(f"{args.watchers} idle watchers polling every {args.interval:g} s for {elapsed:.0f} s"
          f" ({polls:.0f} polls, {len(errors)} errors), {args.traffic} complete transfers"
          " for others on the relay")
    print(f"  relay CPU {cpu:.2f} s: {share:.1%} of a core, {cpu / max(polls, 1) * 1000:.2f} ms"
          f" a poll; at watch's 30 s interval: {share * args.interval / 30:.2%} of a core")
    print(f"  per poll: {(after[STATEMENTS] - before[STATEMENTS]) / max(polls, 1):.1f} SQL"
          f" statements, {(after[COMMITS] - before[COMMITS]) / max(polls, 1):.1f} commits")
    for e in sorted(set(errors))[:5]:
        print("  error:", e)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
