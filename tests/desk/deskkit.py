"""A running ``sealdrop desk`` for the browser tests: the real command, in a
process of its own, on a profile driven by the real CLI (tests.e2e.kit)."""

from __future__ import annotations

import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.kit import SEALDROP, User

PASSPHRASE_ENV = "SEALDROP_PASSPHRASE"


@dataclass
class Desk:
    user: User
    proc: subprocess.Popen[str]
    url: str  # with its token
    log: Path  # the desk's stderr

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def origin(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.url).port or 0)


@contextmanager
def desk(user: User) -> Iterator[Desk]:
    # The desk asks the passphrase in the page, never from the environment.
    env = {k: v for k, v in user.env.items() if k != PASSPHRASE_ENV}
    log = user.home.parent / f"desk-{user.handle}.log"
    with log.open("ab") as err:
        proc = subprocess.Popen([SEALDROP, "desk", "--no-browser"], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "?token=" in url, (
            url, log.read_text(errors="replace"))
        yield Desk(user, proc, url, log)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    # It serves until SIGTERM, then stops cleanly (a unit's `systemctl stop`).
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(30) == 0, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
