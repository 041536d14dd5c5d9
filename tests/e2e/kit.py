"""End-to-end harness: a real relay process on a fixed loopback port (so it can be
restarted under the same pinned URL) and users driving the real ``sealdrop`` CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
SEALDROP = str(BIN / "sealdrop")
RELAY = str(BIN / "sealdrop-relay")
PASSPHRASE = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_template(data: Path, invites: int = 8) -> list[str]:
    """An initialised relay data folder with unused invites, to copy per test (fast)."""
    import asyncio

    from sealdrop.server.accounts import create_invite
    from sealdrop.server.config import load_config
    from sealdrop.server.db import make_engine
    from sealdrop.server.metadata import SqlMetadataStore

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
    subprocess.run([RELAY, "init", "--data", str(data)], env=env, check=True,
                   capture_output=True)
    cfg = load_config(data, env={})

    async def run() -> list[str]:
        engine = make_engine(cfg.db_url)
        try:
            store = SqlMetadataStore(engine)
            return [await create_invite(store, now=int(time.time()), ttl=86400)
                    for _ in range(invites)]
        finally:
            await engine.dispose()

    return asyncio.run(run())


class Relay:
    def __init__(self, data: Path, log: Path, *, template: tuple[Path, list[str]] | None = None
                 ) -> None:
        import shutil

        self.data = data
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
        self._invites: list[str] = []
        if template is not None:
            shutil.copytree(template[0], data)
            self._invites = list(template[1])
        else:
            subprocess.run([RELAY, "init", "--data", str(data)], env=self.env, check=True,
                           capture_output=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        start_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [RELAY, "serve", "--data", str(self.data), "--host", "127.0.0.1",
                 "--port", str(self.port)], env=self.env, stdout=log, stderr=log)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace"))
            return b'"listening"' in self.log.read_bytes()[start_at:]

        wait_for(listening, 60, "the relay to listen")

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

    def restart(self) -> None:
        self.kill()
        self.start()

    def invite(self) -> str:
        if self._invites:
            return self._invites.pop()
        out = subprocess.run([RELAY, "invite", "create", "--data", str(self.data), "--json"],
                             env=self.env, check=True, capture_output=True, text=True)
        return str(json.loads(out.stdout)["code"])

    # -- looking behind the relay's back ------------------------------------------

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data / "relay.db", timeout=30)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.db() as conn:
            return list(conn.execute(query, args))

    def blob_path(self, transfer_id: str) -> Path:
        return self.data / "blobs" / "complete" / transfer_id[:2] / transfer_id

    def metric(self, name: str) -> float:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as r:  # noqa: S310
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
            if m:
                total += float(m.group(2))
        return total


_VALUED = {"--into", "--home", "--passphrase-file", "--interval", "--max-backoff"}


def _ids_after_dashdash(args: tuple[str, ...]) -> tuple[str, ...]:
    """Relay ids may start with '-': pass them after ``--``, as a script must."""
    if not args or args[0] not in ("receive", "status") or "--" in args:
        return args
    opts: list[str] = []
    ids: list[str] = []
    it = iter(args[1:])
    for a in it:
        if a in _VALUED:
            opts += [a, next(it)]
        elif a.startswith("--"):
            opts.append(a)
        else:
            ids.append(a)
    return (args[0], *opts, "--", *ids) if ids else (args[0], *opts)


class User:
    """One profile folder, driving the real CLI in subprocesses."""

    def __init__(self, root: Path, handle: str, relay: Relay) -> None:
        self.handle = handle
        self.home = root / f"home-{handle}"
        self.relay = relay
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
        self.env.update(SEALDROP_HOME=str(self.home), SEALDROP_PASSPHRASE=PASSPHRASE,
                        SEALDROP_RETRY_FOR="60")

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        args = _ids_after_dashdash(args)
        r = subprocess.run([SEALDROP, *args], env={**self.env, **(env or {})},
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"sealdrop {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kw).stdout)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([SEALDROP, *args], env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def init(self) -> dict[str, Any]:
        return dict(self.json("init", "--relay", self.relay.url, "--handle", self.handle,
                              "--invite", self.relay.invite(), "--work-factor", "10"))

    @property
    def safety_number(self) -> str:
        from sealdrop.crypto import safety
        from sealdrop.crypto.bundle import KeyBundle

        bundle = KeyBundle.loads((self.home / "bundle.json").read_text())
        return safety.safety_number(bundle.signing_key)

    def trust(self, other: User) -> None:
        self.run("contacts", "add", other.handle, "--fingerprint", other.safety_number)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_case(root: Path, *, marker: str = "", big: int = 0) -> Path:
    """A small clinical case: DICOM files, an STL, a PDF; optionally a big random file."""
    import shutil

    import pydicom
    from pydicom.data import get_testdata_file

    case = root / f"case{marker}"
    (case / "CBCT").mkdir(parents=True)
    for i, name in enumerate(("CT_small.dcm", "MR_small.dcm")):
        src = Path(get_testdata_file(name))
        if marker:
            ds = pydicom.dcmread(src)
            ds.PatientName = f"Doe^{marker}"
            ds.save_as(case / "CBCT" / f"IM{i:04d}{marker}")
        else:
            shutil.copy(src, case / "CBCT" / f"IM{i:04d}")
    (case / f"scan{marker}.stl").write_bytes(b"solid t\n" + marker.encode() * 50 + b"endsolid\n")
    (case / "prescription.pdf").write_bytes(b"%PDF-1.4\n" + marker.encode() * 20 + os.urandom(500))
    if big:
        with open(case / "big.bin", "wb") as f:
            f.write(os.urandom(big))
    return case
