"""Test harness for the relay: a real relay on 127.0.0.1 (in a thread or a
subprocess), throwaway databases, accounts and raw signed requests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from nacl.signing import SigningKey

from sealdrop.client.relay_api import RelayClient
from sealdrop.crypto import chunkhash, protocol
from sealdrop.crypto.age import X25519Identity
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.server import schema
from sealdrop.server.accounts import create_invite
from sealdrop.server.app import create_app, make_runner
from sealdrop.server.blobs import chunk_list_digest
from sealdrop.server.config import RelayConfig, load_config
from sealdrop.server.db import make_engine, metadata
from sealdrop.server.state import RELAY_KEY, Relay

PG_URL = os.environ.get("SEALDROP_TEST_PG_URL", "")
VENV_BIN = Path(sys.executable).parent
RELAY_CMD = [str(VENV_BIN / "sealdrop-relay")]


# -- signed requests -----------------------------------------------------------


def sign_headers(
    signing_key: SigningKey,
    handle: str,
    method: str,
    path_qs: str,
    body_sha256: str,
    *,
    now: float | None = None,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """Signature headers made by the protocol module itself (not the client's
    code), so a client bug cannot hide a relay bug or the other way round."""
    return protocol.sign_request(
        signing_key, handle, method, path_qs, body_sha256,
        timestamp=int(time.time() if now is None else now),
        nonce=os.urandom(protocol.NONCE_BYTES) if nonce is None else nonce,
    )


def upload_blob(
    client: RelayClient, relay_id: str, blob: bytes, *,
    chunk_size: int = protocol.DEFAULT_CHUNK_SIZE, algorithm: str = chunkhash.SHA256,
) -> None:
    """Upload ``blob`` in plain sequential chunks from the relay's committed
    offset (the relay tests' upload; ``sealdrop send`` has its own pipeline)."""
    offset = client.upload_offset(relay_id)
    while offset < len(blob):
        offset = client.upload_chunk(relay_id, offset, blob[offset:offset + chunk_size],
                                     algorithm=algorithm)


# -- databases -------------------------------------------------------------


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def fresh_database(kind: str, data_dir: Path) -> Iterator[str]:
    """Yield a database URL for a brand-new, empty database; drop it afterwards."""
    if kind == "sqlite":
        yield ""  # default: relay.db inside the data folder
        return
    name = "sd_" + uuid.uuid4().hex[:16]
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- identities --------------------------------------------------------------


@dataclass
class Identity:
    handle: str
    signing_key: SigningKey
    x25519: X25519Identity
    bundle: KeyBundle


def make_identity(handle: str, *, created: int | None = None) -> Identity:
    sk = SigningKey.generate()
    x = X25519Identity.generate(os.urandom)
    pq = "age1pq1" + "q" * 60  # the relay only stores it; the PQ type is another issue's
    bundle = KeyBundle.create(
        handle=handle, signing_key=sk, x25519=str(x.recipient()), pq=pq,
        created=created if created is not None else int(time.time()),
    )
    return Identity(handle, sk, x, bundle)


# -- the relay in a thread -------------------------------------------------------


class FakeClock:
    """Real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class RunningRelay:
    config: RelayConfig
    base_url: str
    host: str
    port: int
    clock: FakeClock
    loop: asyncio.AbstractEventLoop
    app: web.Application
    identities: dict[str, Identity] = field(default_factory=dict)

    @property
    def relay(self) -> Relay:
        return self.app[RELAY_KEY]

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def invite(self, ttl: int = 3600) -> str:
        return self.run(create_invite(self.relay.store, now=int(self.clock()), ttl=ttl))

    def client(self, ident: Identity) -> RelayClient:
        return RelayClient(self.base_url, handle=ident.handle, signing_key=ident.signing_key,
                           clock=self.clock)

    def user(self, handle: str) -> tuple[RelayClient, Identity]:
        ident = make_identity(handle)
        c = self.client(ident)
        c.register(self.invite(), ident.bundle)
        self.identities[handle] = ident
        return c, ident

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        sign: Identity | None = None,
        body_sha256: str | None = None,
        sign_path: str | None = None,
        now: float | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request exactly as given (optionally signed) on a fresh connection."""
        hdrs = dict(headers or {})
        if sign is not None:
            sha = body_sha256 or hashlib.sha256(body or b"").hexdigest()
            hdrs.update(sign_headers(sign.signing_key, sign.handle, method, sign_path or path,
                                     sha, now=self.clock() if now is None else now))
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k: v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table (a database dump for assertions)."""
        import sqlalchemy as sa

        async def dump() -> dict[str, list[dict[str, Any]]]:
            out = {}
            async with self.relay.store.engine.connect() as conn:
                for table in metadata.sorted_tables:
                    res = await conn.execute(sa.select(table))
                    out[table.name] = [dict(r._mapping) for r in res]
            return out

        return self.run(dump())


def start_relay_thread(
    config: RelayConfig, **app_kw: Any
) -> tuple[RunningRelay, Callable[[], None]]:
    clock = app_kw.pop("clock", None) or FakeClock()
    # The operator's `db upgrade`: the relay itself never migrates.
    if app_kw.pop("migrate", True):
        asyncio.run(migrate_url(config.db_url))
    started: dict[str, Any] = {}
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def start() -> web.AppRunner:
        app = create_app(config, clock=clock, **app_kw)
        runner = make_runner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        started["app"] = app
        started["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            started["runner"] = loop.run_until_complete(start())
        except BaseException as exc:  # surfaced to the test below
            started["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(started["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(60)
    if "error" in started:
        raise started["error"]
    port = started["port"]
    running = RunningRelay(
        config=config, base_url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port,
        clock=clock, loop=loop, app=started["app"],
    )

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)

    return running, stop


def make_config(data_dir: Path, db_url: str, **overrides: Any) -> RelayConfig:
    data_dir.mkdir(parents=True, exist_ok=True)
    return load_config(data_dir, env={}, overrides={"database_url": db_url, **overrides})


# -- the relay as a real process -------------------------------------------------


class RelayProcess:
    def __init__(self, data_dir: Path, db_url: str, log_path: Path,
                 settings: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.db_url = db_url
        self.log_path = log_path
        self.settings = settings or {}  # e.g. {"rate_burst": "5"}: SEALDROP_RELAY_RATE_BURST
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_RELAY_")}
        env["SEALDROP_RELAY_DATABASE_URL"] = self.db_url
        env.update({"SEALDROP_RELAY_" + k.upper(): v for k, v in self.settings.items()})
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RELAY_CMD, *args, "--data", str(self.data_dir)], env=self.env,
            capture_output=True, text=True, check=check, timeout=120,
        )

    def start(self) -> None:
        log = self.log_path.open("ab")
        start_at = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [*RELAY_CMD, "serve", "--data", str(self.data_dir), "--host", "127.0.0.1",
             "--port", "0"], env=self.env, stdout=log, stderr=log,
        )
        log.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            text = self.log_path.read_bytes()[start_at:].decode("utf-8", "replace")
            m = re.search(r'"event":"listening".*?"port":(\d+)', text)
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited: {text}")
            time.sleep(0.05)
        raise RuntimeError("relay did not start")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def invite_via_cli(proc: RelayProcess) -> str:
    return json.loads(proc.cli("invite", "create", "--json").stdout)["code"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def migrate_url(url: str) -> None:
    engine = make_engine(url)
    try:
        await schema.upgrade(engine)
    finally:
        await engine.dispose()


def blob_digest(blob: bytes, ends: list[int], algorithm: str = chunkhash.SHA256) -> str:
    """The relay's digest of ``blob`` uploaded in chunks ending at ``ends``."""
    out, start = [], 0
    for end in ends:
        out.append((end, chunkhash.tagged_digest(algorithm, blob[start:end])))
        start = end
    return chunk_list_digest(out)
