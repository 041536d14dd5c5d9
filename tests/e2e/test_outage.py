"""A relay outage during a send, as the person at the terminal sees it.

- the send that outlives its retries stops with a sentence naming the relay's
  URL and saying the upload is safe; the same command resumes it;
- in a real terminal (a pty, the real CLI process) the progress bar shows the
  retry line while the relay is down, and the send finishes once it is back;
- Ctrl-C (the pty's ^C, so the terminal sends SIGINT) says how to resume and
  how much is already on the relay, and the same command resumes.

The link in front of the relay is throttled so the send is slow enough to
interrupt (see test_resume.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.kit import SEALDROP, User, make_case, tree, wait_for

CHUNK = 64 * 1024
SMALL_CHUNKS = ("--chunk-size", str(CHUNK))
UP_RATE = 1024 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _chunks_logged(user: User) -> int:
    return sum(len(p.read_text().splitlines()) for p in (user.home / "outbox").glob("*.chunks"))


def test_an_outage_longer_than_the_retries_names_the_relay_and_resumes(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=3 * 1024 * 1024)
    with relay.throttled(up=UP_RATE):
        proc = practice.popen("send", str(case), "--to", lab.handle, *SMALL_CHUNKS,
                              env={"SEALDROP_RETRY_FOR": "3"})
        wait_for(lambda: _chunks_logged(practice) >= 8, 60, "some chunks to upload")
        relay.stop()
        relay.link.drop_connections()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    error, hint = (line for line in err.splitlines() if line.startswith(("sealdrop: error",
                                                                          "sealdrop: hint")))
    assert error.startswith(f"sealdrop: error: the connection to the relay at {relay.url} "
                            "was cut") or error.startswith(
        f"sealdrop: error: cannot reach the relay at {relay.url}")
    assert re.search(r"; \d+(\.\d)? [KM]B of 3\.\d MB already on the relay$", error), error
    assert hint.endswith("Your upload is safe: run the same command again to resume."), hint
    assert "Errno" not in err and "Traceback" not in err

    relay.start()
    done = practice.json("send", str(case), "--to", lab.handle, *SMALL_CHUNKS)
    assert done["resumed"] is True and done["skipped_bytes"] > 0
    assert done["skipped_bytes"] + done["uploaded_bytes"] == done["size"]
    assert relay.sql("select state from transfers") == [("complete",)]


class _Terminal:
    """The real ``sealdrop`` in a pseudo-terminal, 120 columns wide; its screen output
    is collected (escape sequences stripped for matching)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
                os.execve(SEALDROP, [SEALDROP, *args], {**env, "TERM": "xterm-256color"})
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self._raw = bytearray()
        self._lock = threading.Lock()
        self.code: int | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        return
                    with self._lock:
                        self._raw += data
            except OSError:  # EIO: the child closed the terminal
                return

    @property
    def screen(self) -> str:
        with self._lock:
            text = self._raw.decode("utf-8", "replace")
        return _ANSI.sub("", text)

    def press_ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")  # the line discipline turns it into SIGINT

    def wait(self, timeout: float) -> int:
        def exited() -> bool:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
            return self.code is not None

        wait_for(exited, timeout, "sealdrop to exit")
        time.sleep(0.3)  # the reader drains what was written last
        assert self.code is not None
        return self.code

    def close(self) -> None:
        if self.code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        os.close(self.fd)


# A pty and a throttled upload raced against a relay restart: alone on the
# machine it takes about a minute; beside two busy workers it measured a timeout.
@pytest.mark.serial
def test_the_terminal_shows_the_retry_line_and_ctrl_c_says_how_to_resume(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    env = {**practice.env, "SEALDROP_RETRY_FOR": "120"}

    # 1. The relay stops mid-send: the bar says so, then the send finishes.
    case = make_case(tmp_path / "one", big=3 * 1024 * 1024)
    with relay.throttled(up=UP_RATE):
        term = _Terminal(["send", str(case), "--to", lab.handle, *SMALL_CHUNKS], env)
        try:
            wait_for(lambda: _chunks_logged(practice) >= 8, 60, "some chunks to upload")
            assert "sending" in term.screen  # the bar is up
            relay.stop()
            relay.link.drop_connections()
            wait_for(lambda: re.search(r"relay unreachable, retrying in \d+ s \(upload safe\)",
                                       term.screen) is not None, 60, "the retry line")
            relay.start()
            assert term.wait(120) == 0, term.screen
        finally:
            term.close()
    assert "Transfer id: " in term.screen
    assert "Errno" not in term.screen and "Traceback" not in term.screen

    # 2. Ctrl-C mid-send: how to resume, and how much the relay already holds.
    other = make_case(tmp_path / "two", marker="B", big=3 * 1024 * 1024)
    with relay.throttled(up=UP_RATE):
        term = _Terminal(["send", str(other), "--to", lab.handle, *SMALL_CHUNKS], env)
        try:
            wait_for(lambda: _chunks_logged(practice) >= 8, 60, "some chunks to upload")
            term.press_ctrl_c()
            assert term.wait(60) == 130, term.screen
        finally:
            term.close()
    m = re.search(r"sealdrop: interrupted: run the same command again to resume; "
                  r"(\d+(?:\.\d)? [KM]B) of (3\.\d MB) already on the relay", term.screen)
    assert m, term.screen
    assert m.group(1) != "0 B"
    assert "Traceback" not in term.screen
    relay.link.drop_connections()
    done = practice.json("send", str(other), "--to", lab.handle, *SMALL_CHUNKS)
    assert done["resumed"] is True and done["skipped_bytes"] > 0


def test_a_download_cut_by_an_outage_is_tried_again_and_finishes(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=3 * 1024 * 1024)
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    spool = lab.home / "inbox-spool" / f"{tid}.age.partial"
    with relay.throttled(down=1024 * 1024):
        proc = lab.popen("receive", "--into", str(dest), "--json", "--", tid)
        wait_for(lambda: spool.exists() and spool.stat().st_size > 256 * 1024, 60,
                 "part of the download")
        relay.kill()
        relay.link.drop_connections()
        time.sleep(1.0)  # the client sees the cut and waits to retry
        relay.start()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = json.loads(out)
    assert got["failed"] == [] and [r["transfer_id"] for r in got["received"]] == [tid]
    assert tree(dest / case.name) == tree(case)


def test_a_relay_down_before_a_receive_starts_is_told_at_once(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    case = make_case(tmp_path / "src")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    practice.relay.stop()
    r = lab.run("receive", "--into", str(tmp_path), "--", tid, check=False,
                env={"SEALDROP_RETRY_FOR": "300"}, timeout=60)
    assert r.returncode == 1
    assert f"the relay at {practice.relay.url}" in r.stderr
    assert "sealdrop: hint: " in r.stderr and "Errno" not in r.stderr
