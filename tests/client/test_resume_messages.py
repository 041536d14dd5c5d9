"""What an interrupted transfer tells the person (cli/resume.py, progress.retry_line)."""

from __future__ import annotations

import pytest

from sealdrop.client.cli.resume import TransferWatch, retry_reason
from sealdrop.client.errors import Interrupted
from sealdrop.client.progress import retry_line
from sealdrop.client.relay_api import RelayRateLimited, RelayUnavailable


class _Bar:
    def __init__(self) -> None:
        self.said: list[tuple[float, str, str]] = []

    def advance(self, n: int) -> None:
        pass

    def set(self, done: int) -> None:
        pass

    def retrying(self, seconds: float, reason: str, safe: str) -> None:
        self.said.append((seconds, reason, safe))


def test_ctrl_c_mid_upload_says_how_much_is_on_the_relay() -> None:
    w = TransferWatch(upload=True)
    w.start(1_200_000_000)
    w.add(400_000_000)
    w.add(12_000_000)
    with pytest.raises(Interrupted) as info, w.resumable():
        raise KeyboardInterrupt
    assert info.value.message == ("run the same command again to resume; 412.0 MB of 1.2 GB "
                                  "already on the relay")


def test_ctrl_c_mid_download_says_what_is_kept() -> None:
    w = TransferWatch(upload=False)
    w.set(5_000_000, 20_000_000)
    with pytest.raises(Interrupted) as info, w.resumable():
        raise KeyboardInterrupt
    assert info.value.message.endswith("5.0 MB of 20.0 MB already downloaded, kept")


def test_before_the_transfer_starts_nothing_is_promised() -> None:
    w = TransferWatch(upload=True)
    with pytest.raises(KeyboardInterrupt) as info, w.resumable():
        raise KeyboardInterrupt
    assert not isinstance(info.value, Interrupted)
    with pytest.raises(RelayUnavailable) as info2, w.resumable():
        raise RelayUnavailable("cannot reach the relay at https://r: connection refused",
                               hint="Is the relay running?")
    assert info2.value.hint == "Is the relay running?"


def test_an_outage_after_the_start_adds_that_the_upload_is_safe_once() -> None:
    w = TransferWatch(upload=True)
    w.start(10)
    with pytest.raises(RelayUnavailable) as info, w.resumable():
        raise RelayUnavailable("x", hint="Is the relay running?")
    assert info.value.hint == ("Is the relay running? Your upload is safe: run the same "
                               "command again to resume.")
    with pytest.raises(RelayUnavailable) as info, w.resumable():
        raise RelayUnavailable("x", hint="try again later")
    assert info.value.hint == ("try again later. Your upload is safe: run the same "
                               "command again to resume.")
    already = "Your upload is safe: run the same command again to resume."
    with pytest.raises(RelayUnavailable) as info, w.resumable():
        raise RelayUnavailable("x", hint=already)
    assert info.value.hint == already


def test_the_retry_line_counts_down_and_names_the_cause() -> None:
    assert retry_line("relay unreachable", 7.2, "upload safe") == (
        "relay unreachable, retrying in 8 s (upload safe)")
    assert retry_line("relay unreachable", -1, "upload safe").endswith("in 0 s (upload safe)")
    bar = _Bar()
    w = TransferWatch(upload=True)
    w.bar = bar
    w.retry(8.0, RelayUnavailable("down"))
    w.retry(2.0, RelayRateLimited("slow down", retry_after=2, status=429))
    w.retry(1.0, RelayUnavailable("boom", status=503))
    assert bar.said == [(8.0, "relay unreachable", "upload safe"),
                        (2.0, "relay busy", "upload safe"),
                        (1.0, "relay answered HTTP 503", "upload safe")]
    assert retry_reason(RelayUnavailable("down")) == "relay unreachable"
