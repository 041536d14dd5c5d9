"""Concurrent small transfers against a real `sealdrop-relay serve` on loopback.

Target (PRODUCT.md): the relay serves 200 concurrent small transfers without
error. Each transfer is a real age file (X25519) sent by one of --senders
accounts to another: create, upload, complete; then the recipient lists its
inbox, downloads with a Range-less GET and acknowledges. All --transfers run at
once from as many threads. Prints errors (must be 0), wall time, transfers/s
and the relay's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nacl.signing import SigningKey

from sealdrop.client.relay_api import RelayClient
from sealdrop.crypto import age
from sealdrop.crypto.bundle import KeyBundle


def _start(data: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    subprocess.run(["sealdrop-relay", "init", "--data", str(data)], check=True,
                   capture_output=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(["sealdrop-relay", "serve", "--data", str(data), "--host",
                                 "127.0.0.1", "--port", "0"], stdout=out, stderr=out)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r'"event":"listening".*?"port":(\d+)', log.read_text("utf-8", "replace"))
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit("relay exited:\n" + log.read_text("utf-8", "replace"))
        time.sleep(0.05)
    raise SystemExit("relay did not start")


def _account(url: str, data: Path, handle: str) -> tuple[RelayClient, age.X25519Identity]:
    code = json.loads(subprocess.run(
        ["sealdrop-relay", "invite", "create", "--data", str(data), "--json"],
        check=True, capture_output=True, text=True).stdout)["code"]
    sk = SigningKey.generate()
    x = age.X25519Identity.generate(os.urandom)
    pq = age.HybridIdentity.generate(os.urandom)
    bundle = KeyBundle.create(handle=handle, signing_key=sk, x25519=str(x.recipient()),
                              pq=str(pq.recipient()), created=int(time.time()))
    client = RelayClient(url, handle=handle, signing_key=sk)
    client.register(code, bundle)
    client.close()
    return client, x


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--transfers", type=int, default=200)
    ap.add_argument("--senders", type=int, default=10)
    ap.add_argument("--size", type=int, default=32 * 1024, help="plaintext bytes each")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sealdrop-bench-relay-") as tmp:
        data, log = Path(tmp) / "relay", Path(tmp) / "relay.log"
        proc, port = _start(data, log)
        url = f"http://127.0.0.1:{port}"
        try:
            accounts = [_account(url, data, f"bench-{i:03d}") for i in range(args.senders)]
            keys = [(c.handle, c._key) for c, _ in accounts]  # noqa: SLF001
            errors: list[str] = []
            lock = threading.Lock()

            def one(i: int) -> None:
                s_handle, s_key = keys[i % len(keys)]
                r_index = (i + 1) % len(keys)
                r_handle, r_key = keys[r_index]
                sender = RelayClient(url, handle=s_handle, signing_key=s_key)
                recipient = RelayClient(url, handle=r_handle, signing_key=r_key)
                try:
                    buf = io.BytesIO()
                    with age.Encryptor(buf, [accounts[r_index][1].recipient()], workers=1) as e:
                        e.write(os.urandom(args.size))
                    blob = buf.getvalue()
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

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.transfers) as pool:
                list(pool.map(one, range(args.transfers)))
            elapsed = time.perf_counter() - t0
            rss = _peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"{args.transfers} concurrent transfers of {args.size} bytes from {args.senders}"
          f" senders: {len(errors)} errors, {elapsed:.2f} s,"
          f" {args.transfers / elapsed:.0f} transfers/s, relay peak RSS {rss:.0f} MB")
    for e in sorted(set(errors))[:10]:
        print("  error:", e)
    print("target met: 0 errors" if not errors else "target MISSED: errors above")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
