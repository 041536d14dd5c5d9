"""A private PostgreSQL cluster a test owns, so it can stop, crash and restart it
without touching the run's shared server (SEALDROP_TEST_PG_URL, .ci/run's).

initdb into a fresh folder under /tmp, then ``pg_ctl`` on a free loopback
port (``tests.e2e.kit.free_port``) with its socket in that folder. Started
cheap: no fsync (a test's data need not survive the host, only its server),
small buffers. Commits stay synchronous: with ``synchronous_commit=off`` a
crash (``stop("immediate")``) would lose committed transactions, which a
real server configured as docs/operations.md says does not.
As root, every command runs as the ``postgres`` user (PostgreSQL refuses to
run as root), as .ci/run does; the folder is theirs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

PGBIN = Path("/usr/lib/postgresql/15/bin")


def missing() -> str | None:
    """Why a cluster cannot be made here (a skip reason), or None."""
    if not (PGBIN / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({PGBIN}; .ci/run installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


class PgCluster:
    """One PostgreSQL server on 127.0.0.1:``port``, data in a folder of its own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="sealdrop-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(PGBIN / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise AssertionError(f"{tool} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
                                 f"\n{self.server_log()}")

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *args)

    @property
    def _options(self) -> str:
        return (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
                "-c full_page_writes=off -c shared_buffers=16MB "
                "-c max_connections=60")

    def start(self) -> None:
        self._ctl("-o", self._options, "start")

    def stop(self, mode: str) -> None:
        """``pg_ctl stop -m mode``: ``fast`` ends sessions and checkpoints,
        ``immediate`` kills the server (a crash: it recovers from WAL at start)."""
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str) -> None:
        self._ctl("-m", mode, "-o", self._options, "restart")

    def createdb(self, name: str) -> str:
        """A new database's URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        try:
            self._ctl("-m", "immediate", "stop")
        except AssertionError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)
