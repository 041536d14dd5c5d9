"""A progress bar on stderr (bytes, rate, ETA), only when a person is watching.

Off when stderr is not a terminal or when the output is JSON: services, scripts
and logs get no control characters. The label may carry a relay's transfer id:
it passes the terminal gate (``cli.terminal``) and rich's markup escaping, so
that neither an escape sequence nor ``[link=…]`` markup in it takes effect.

While a transfer waits to retry (the relay is unreachable), the bar says so
with a countdown ("relay unreachable, retrying in 8 s (upload safe)") and
shows no speed or ETA: a frozen bar with a stale estimate reads as a hang.
The next progress ends the retry line.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from .cli.terminal import for_terminal


class Progress(Protocol):
    def advance(self, n: int) -> None: ...

    def set(self, done: int) -> None: ...

    def retrying(self, seconds: float, reason: str, safe: str) -> None:
        """Say "{reason}, retrying in {seconds} s ({safe})" until the next progress."""


def retry_line(reason: str, seconds_left: float, safe: str) -> str:
    """The words of the retry line, e.g. "relay unreachable, retrying in 8 s (upload safe)"."""
    return f"{reason}, retrying in {max(0, math.ceil(seconds_left))} s ({safe})"


class _Silent:
    def advance(self, n: int) -> None:
        pass

    def set(self, done: int) -> None:
        pass

    def retrying(self, seconds: float, reason: str, safe: str) -> None:
        pass


class _Rich:
    """Called from upload threads too: rich's Progress takes its own lock."""

    def __init__(self, bar: object, task: object) -> None:
        self._bar = bar
        self._task = task
        self._retrying = False

    def advance(self, n: int) -> None:
        self._bar.update(self._task, advance=n, **self._resumed())  # type: ignore[attr-defined]

    def set(self, done: int) -> None:
        self._bar.update(self._task, completed=done,  # type: ignore[attr-defined]
                         **self._resumed())

    def retrying(self, seconds: float, reason: str, safe: str) -> None:
        self._retrying = True
        self._bar.update(self._task, retry_until=time.monotonic() + seconds,  # type: ignore[attr-defined]
                         retry_reason=reason, retry_safe=safe)

    def _resumed(self) -> dict[str, object]:
        if not self._retrying:
            return {}
        self._retrying = False
        return {"retry_until": None}


def enabled(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


@contextmanager
def progress_bar(label: str, total: int, *, show: bool) -> Iterator[Progress]:
    if not show:
        yield _Silent()
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        ProgressColumn,
        Task,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    def waiting(task: Task) -> bool:
        return task.fields.get("retry_until") is not None

    class Status(ProgressColumn):
        """The label, or the retry line with its countdown (re-rendered ~10 times a second)."""

        def render(self, task: Task) -> Text:
            if waiting(task):
                left = float(task.fields["retry_until"]) - time.monotonic()
                return Text(retry_line(str(task.fields["retry_reason"]), left,
                                       str(task.fields["retry_safe"])), style="yellow")
            return Text.from_markup(task.description)

    class Speed(TransferSpeedColumn):
        def render(self, task: Task) -> Text:
            return Text("") if waiting(task) else super().render(task)

    class Eta(TimeRemainingColumn):
        def render(self, task: Task) -> Text:
            return Text("") if waiting(task) else super().render(task)

    bar = RichProgress(
        Status(), BarColumn(), DownloadColumn(), Speed(), Eta(),
        console=Console(stderr=True), transient=True,
    )
    with bar:
        task = bar.add_task(escape(for_terminal(label)), total=total, retry_until=None)
        yield _Rich(bar, task)
