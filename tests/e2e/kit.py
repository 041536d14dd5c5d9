"""End-to-end harness: a real relay process on a fixed loopback port (so it can be
restarted under the same pinned URL) and users driving the real ``sealdrop`` CLI.

Between the two sits a small TCP proxy on 127.0.0.1 (``Link``): the URL users
pin is the proxy's. It passes bytes through untouched, and a test that needs
a transfer slow enough to interrupt midway throttles it (``Relay.throttled``)
instead of asking the product to slow itself down.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
SEALDROP = str(BIN / "sealdrop")
RELAY = str(BIN / "sealdrop-relay")
PASSPHRASE = "correct horse battery staple"


def _port_block() -> range:
    """The loopback ports this test process hands out: a block of its own
    below the kernel's ephemeral range, one block per pytest-xdist worker.

    A relay here is stopped and started again on the same port. Between the
    two, a port from ``bind(0)`` could be handed to another worker's test or
    become an outgoing connection's source port; ports below the ephemeral
    range are never picked by the kernel, and a block per worker keeps two
    workers from picking the same one."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    size = 2000
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... or unset
    slot = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    start = low - size * (slot + 1)
    return range(start, start + size) if start >= 1024 else range(0)


_PORTS = _port_block()
_next_port = [0]


def free_port() -> int:
    """A loopback port where nothing listens now, not handed out before by
    this process (see ``_port_block``)."""
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port[0] % len(_PORTS)]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken, or in TIME_WAIT: the next one
            return port
    with socket.socket() as s:  # no block (a tiny ephemeral range): any free port
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


class _Rate:
    """A byte budget per second shared by every connection in one direction; None: no limit."""

    def __init__(self) -> None:
        self.bytes_per_second: float | None = None
        self._lock = threading.Lock()
        self._free_at = 0.0

    def spend(self, n: int) -> None:
        with self._lock:
            rate = self.bytes_per_second
            if not rate:
                return
            now = time.monotonic()
            self._free_at = max(now, self._free_at) + n / rate
            delay = self._free_at - now
        time.sleep(delay)


class Link:
    """A TCP proxy from a port of its own to ``127.0.0.1:backend_port``, throttleable.

    Each accepted connection is joined to a fresh connection to the backend
    (closed at once if the backend is down, as a dead relay would be) and
    pumped both ways by two threads. ``up`` limits client-to-relay bytes
    (uploads), ``down`` relay-to-client bytes (downloads).
    """

    _BLOCK = 64 * 1024

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.up = _Rate()
        self.down = _Rate()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="e2e-link", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                backend = socket.create_connection(("127.0.0.1", self.backend_port), timeout=5)
                backend.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, backend}
            ends = threading.Semaphore(0)  # released once per direction that ended
            for src, dst, rate in ((client, backend, self.up), (backend, client, self.down)):
                threading.Thread(target=self._pump, args=(src, dst, rate, ends),
                                 daemon=True).start()
            threading.Thread(target=self._reap, args=(client, backend, ends),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: _Rate,
              ends: threading.Semaphore) -> None:
        try:
            while data := src.recv(self._BLOCK):
                rate.spend(len(data))
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the end of the stream on
        except OSError:
            self._close(src, dst)  # a reset: the other direction ends too
        finally:
            ends.release()

    def _reap(self, client: socket.socket, backend: socket.socket,
              ends: threading.Semaphore) -> None:
        ends.acquire()
        ends.acquire()
        self._close(client, backend)

    def _close(self, *socks: socket.socket) -> None:
        for s in socks:
            with self._lock:
                self._open.discard(s)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv; close would not
            with contextlib.suppress(OSError):
                s.close()

    def drop_connections(self) -> None:
        """Cut every open connection, as the network does when a process dies."""
        with self._lock:
            socks = list(self._open)
        self._close(*socks)

    def close(self) -> None:
        self._server.close()
        self.drop_connections()


def kill_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``proc`` if it runs, and reap it."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM ``proc`` if it runs; SIGKILL it if it has not ended within 30 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            kill_process(proc)


class Relay:
    def __init__(self, data: Path, log: Path, *, template: tuple[Path, list[str]] | None = None
                 ) -> None:
        import shutil

        self.data = data
        self.log = log
        self.port = free_port()
        self.link = Link(self.port)
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
        """The URL users pin: the link's, in front of the relay."""
        return f"http://127.0.0.1:{self.link.port}"

    @contextlib.contextmanager
    def throttled(self, *, up: float | None = None, down: float | None = None
                  ) -> Iterator[None]:
        """Limit uploads (``up``) and downloads (``down``) to so many bytes per second."""
        self.link.up.bytes_per_second = up
        self.link.down.bytes_per_second = down
        try:
            yield
        finally:
            self.link.up.bytes_per_second = self.link.down.bytes_per_second = None

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
        kill_process(self.proc)

    def stop(self) -> None:
        stop_process(self.proc)

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        """Stop the relay and the link in front of it."""
        self.stop()
        self.link.close()

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

        # Straight to the relay: the count must not wait behind a throttled link.
        direct = f"http://127.0.0.1:{self.port}"
        with urllib.request.urlopen(f"{direct}/metrics", timeout=10) as r:  # noqa: S310
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
            if m:
                total += float(m.group(2))
        return total


_VALUED = {"--into", "--home", "--passphrase-file", "--interval", "--max-backoff", "--layout"}


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
        # Files straight into --into, as before case folders: most tests are about
        # something else and compare `tree(dest / case.name)`. Tests of the case
        # folders (test_receive_layout.py) use `default_layout()`.
        self.env["SEALDROP_LAYOUT"] = "{flat}"

    def default_layout(self) -> User:
        """This user receives with the product's default layout (a folder per case)."""
        self.env.pop("SEALDROP_LAYOUT", None)
        return self

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


def refused(r: subprocess.CompletedProcess[str], status: int, *words: str,
            after_notice: bool = False) -> None:
    """The command stopped with exit ``status`` and a one-line ``sealdrop: error:``
    naming each of ``words`` (``after_notice``: the error may follow one notice,
    e.g. of a late pin)."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    if after_notice:
        assert any(line.startswith("sealdrop: error:") for line in r.stderr.splitlines()), \
            r.stderr
    else:
        assert r.stderr.startswith("sealdrop: error:"), r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def log_state(user: User) -> dict[str, Any]:
    """What the profile verified of the relay's log (``log.json``)."""
    return dict(json.loads((user.home / "log.json").read_text())["log"])
