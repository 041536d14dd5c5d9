"""Concurrent small transfers against a real `sealdrop-relay serve` on loopback.

Target (PRODUCT.md, issue 17): the relay serves 200 concurrent small
transfers without error, at least 55 a second on the 2-core machine. Each
transfer is a real age file (X25519) sent by one of --senders accounts to
another: create, upload in one chunk, complete; then the recipient downloads
it with a Range-less GET, compares it, and acknowledges. All --transfers run
at once.

Besides errors (must be 0), wall time and transfers/s, it prints where the
time goes, figures that hold up on a loaded machine: the relay's CPU seconds
(user + system, /proc/PID/stat) and the load generator's own (rusage), per
transfer; and from the relay's own counters, requests, SQL statements and
database commits per transfer.

The load generator (--client lean, the default) is one asyncio loop with
aiohttp, signing every request with ``sealdrop.crypto.protocol.sign_request``,
the code ``sealdrop`` itself signs with; the age files are sealed before the
clock starts (sealing is the client's work, not the relay's). --client real
runs each transfer in its own thread through ``sealdrop.client.relay_api``, as
``sealdrop`` does: measured, that generator costs more CPU than the relay
itself (a thread per transfer and a watchdog thread per request), and on two
shared cores it slows the relay it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from nacl.signing import SigningKey

from sealdrop.client.relay_api import RelayClient
from sealdrop.crypto import age, protocol
from sealdrop.crypto.bundle import KeyBundle

REQUESTS = "sealdrop_http_requests_total"
STATEMENTS = "sealdrop_db_statements_total"
COMMITS = "sealdrop_db_commits_total"
COUNTED = (REQUESTS, STATEMENTS, COMMITS)

Account = tuple[str, SigningKey, age.X25519Identity]


def _start(data: Path, log: Path, env: dict[str, str] | None = None
           ) -> tuple[subprocess.Popen[bytes], int]:
    """``init`` then ``serve`` on a free port; the process and its port."""
    subprocess.run(["sealdrop-relay", "init", "--data", str(data)], check=True,
                   capture_output=True, env=env)
    with log.open("ab") as out:
        proc = subprocess.Popen(["sealdrop-relay", "serve", "--data", str(data), "--host",
                                 "127.0.0.1", "--port", "0"], stdout=out, stderr=out, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r'"event":"listening".*?"port":(\d+)', log.read_text("utf-8", "replace"))
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit("relay exited:\n" + log.read_text("utf-8", "replace"))
        time.sleep(0.05)
    raise SystemExit("relay did not start")


def _account(url: str, data: Path, handle: str, ca_file: str | None = None) -> Account:
    code = json.loads(subprocess.run(
        ["sealdrop-relay", "invite", "create", "--data", str(data), "--json"],
        check=True, capture_output=True, text=True).stdout)["code"]
    sk = SigningKey.generate()
    x = age.X25519Identity.generate(os.urandom)
    pq = age.HybridIdentity.generate(os.urandom)
    bundle = KeyBundle.create(handle=handle, signing_key=sk, x25519=str(x.recipient()),
                              pq=str(pq.recipient()), created=int(time.time()))
    client = RelayClient(url, handle=handle, signing_key=sk, ca_file=ca_file)
    client.register(code, bundle)
    client.close()
    return handle, sk, x


def _seal(size: int, to: age.X25519Identity) -> bytes:
    buf = io.BytesIO()
    with age.Encryptor(buf, [to.recipient()], workers=1) as e:
        e.write(os.urandom(size))
    return buf.getvalue()


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _own_cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, every thread (rusage)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _minus(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] - b[0], a[1] - b[1]


def _counters(url: str) -> dict[str, float]:
    """The relay's request, statement and commit counters, summed over labels."""
    host, port = url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out = dict.fromkeys(COUNTED, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the lean generator: one asyncio loop ------------------------------------------


class _Lean:
    """Signed requests on one aiohttp session, as docs/protocol.md describes them."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    def _headers(self, who: Account, method: str, path: str, sha: str) -> dict[str, str]:
        return protocol.sign_request(who[1], who[0], method, path, sha,
                                     timestamp=int(time.time()),
                                     nonce=os.urandom(protocol.NONCE_BYTES))

    async def call(self, who: Account, method: str, path: str, *, body: bytes | None = None,
                   sha: str | None = None, headers: dict[str, str] | None = None,
                   json_body: bool = True) -> tuple[int, bytes]:
        digest = sha or hashlib.sha256(body or b"").hexdigest()
        hdrs = self._headers(who, method, path, digest)
        if json_body and body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        async with self.session.request(method, self.url + path, data=body,
                                        headers=hdrs) as resp:
            data = await resp.read()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path.split('/')[2]}: {resp.status} "
                                   f"{data[:200]!r}")
            return resp.status, data

    async def upload(self, sender: Account, tid: str, blob: bytes) -> None:
        """The whole blob as one chunk."""
        sha = hashlib.sha256(blob).hexdigest()
        await self.call(sender, "PATCH", f"/v1/transfers/{tid}/data", body=blob, sha=sha,
                        json_body=False, headers={
                            "Content-Type": "application/octet-stream",
                            protocol.H_UPLOAD_OFFSET: "0", protocol.H_CHUNK_SHA256: sha})

    async def transfer(self, sender: Account, recipient: Account, blob: bytes) -> None:
        body = json.dumps({"recipients": [recipient[0]], "size": len(blob)}).encode()
        _, answer = await self.call(sender, "POST", "/v1/transfers", body=body)
        tid = json.loads(answer)["transfer"]["id"]
        await self.upload(sender, tid, blob)
        await self.call(sender, "POST", f"/v1/transfers/{tid}/complete", body=b"{}")
        _, got = await self.call(recipient, "GET", f"/v1/transfers/{tid}/data")
        if got != blob:
            raise RuntimeError("downloaded blob differs")
        await self.call(recipient, "POST", f"/v1/transfers/{tid}/ack",
                        body=b'{"status":"verified"}')


async def _run_lean(url: str, jobs: list[tuple[Account, Account, bytes]],
                    errors: list[str]) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        lean = _Lean(session, url)

        async def one(job: tuple[Account, Account, bytes]) -> None:
            try:
                await lean.transfer(*job)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(j) for j in jobs))


# -- the real client: a thread per transfer -------------------------------------------


def _run_real(url: str, jobs: list[tuple[Account, Account, bytes]],
              errors: list[str]) -> None:
    lock = threading.Lock()

    def one(job: tuple[Account, Account, bytes]) -> None:
        (s_handle, s_key, _), (r_handle, r_key, _), blob = job
        sender = RelayClient(url, handle=s_handle, signing_key=s_key)
        recipient = RelayClient(url, handle=r_handle, signing_key=r_key)
        try:
            t = sender.create_transfer([r_handle], len(blob))
            sender.upload_chunk(t["id"], 0, blob)
            sender.complete(t["id"])
            got = io.BytesIO()
            recipient.download(t["id"], got)
            if got.getvalue() != blob:
                raise RuntimeError("downloaded blob differs")
            recipient.ack(t["id"], "verified")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            sender.close()
            recipient.close()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(one, jobs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transfers", type=int, default=200)
    ap.add_argument("--senders", type=int, default=10)
    ap.add_argument("--size", type=int, default=32 * 1024, help="plaintext bytes each")
    ap.add_argument("--client", choices=("lean", "real"), default="lean",
                    help="load generator: one asyncio loop (default), or a thread per "
                         "transfer through sealdrop's own relay client")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sealdrop-bench-relay-") as tmp:
        data, log = Path(tmp) / "relay", Path(tmp) / "relay.log"
        proc, port = _start(data, log)
        url = f"http://127.0.0.1:{port}"
        try:
            accounts = [_account(url, data, f"bench-{i:03d}") for i in range(args.senders)]
            jobs = []
            for i in range(args.transfers):
                sender, recipient = accounts[i % len(accounts)], accounts[(i + 1) % len(accounts)]
                jobs.append((sender, recipient, _seal(args.size, recipient[2])))
            errors: list[str] = []
            before = _counters(url)
            relay_cpu0, own_cpu0 = _cpu_seconds(proc.pid), _own_cpu_seconds()
            t0 = time.perf_counter()
            if args.client == "lean":
                asyncio.run(_run_lean(url, jobs, errors))
            else:
                _run_real(url, jobs, errors)
            elapsed = time.perf_counter() - t0
            relay_us = _minus(_cpu_seconds(proc.pid), relay_cpu0)
            own_us = _minus(_own_cpu_seconds(), own_cpu0)
            after = _counters(url)
            rss = _peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    # The first scrape is counted by the second.
    spent = {k: after[k] - before[k] - (1 if k == REQUESTS else 0) for k in COUNTED}
    n = args.transfers
    relay_cpu, own_cpu = sum(relay_us), sum(own_us)
    print(f"{n} concurrent transfers of {args.size} bytes from {args.senders} senders"
          f" ({args.client} client): {len(errors)} errors, {elapsed:.2f} s,"
          f" {n / elapsed:.0f} transfers/s, relay peak RSS {rss:.0f} MB")
    print(f"  relay CPU {relay_cpu:.2f} s (user {relay_us[0]:.2f} + sys {relay_us[1]:.2f}):"
          f" {relay_cpu / n * 1000:.1f} ms a transfer, {relay_cpu / elapsed:.0%} of a core")
    print(f"  load generator CPU {own_cpu:.2f} s (user {own_us[0]:.2f} + sys {own_us[1]:.2f}):"
          f" {own_cpu / n * 1000:.1f} ms a transfer")
    print(f"  per transfer: {spent[REQUESTS] / n:.1f} requests,"
          f" {spent[STATEMENTS] / n:.1f} SQL statements, {spent[COMMITS] / n:.1f} commits")
    for e in sorted(set(errors))[:10]:
        print("  error:", e)
    print("target met: 0 errors" if not errors else "target MISSED: errors above")
    print(f"55 transfers/s: {'met' if n / elapsed >= 55 and not errors else 'missed'}"
          " (a wall-clock figure: meaningful on an idle machine only)")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
