"""A progress bar on stderr (bytes, rate, ETA), only when a person is watching.

Off when stderr is not a terminal or when the output is JSON: services, scripts
and logs get no control characters. The label may carry a relay's transfer id:
it passes the terminal gate (``cli.terminal``) and rich's markup escaping, so
that neither an escape sequence nor ``[link=…]`` markup in it takes effect.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from .cli.terminal import for_terminal


class Progress(Protocol):
    def advance(self, n: int) -> None: ...

    def set(self, done: int) -> None: ...


class _Silent:
    def advance(self, n: int) -> None:
        pass

    def set(self, done: int) -> None:
        pass


class _Rich:
    def __init__(self, bar: object, task: object) -> None:
        self._bar = bar
        self._task = task

    def advance(self, n: int) -> None:
        self._bar.update(self._task, advance=n)  # type: ignore[attr-defined]

    def set(self, done: int) -> None:
        self._bar.update(self._task, completed=done)  # type: ignore[attr-defined]


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
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as RichProgress

    bar = RichProgress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )
    with bar:
        task = bar.add_task(escape(for_terminal(label)), total=total)
        yield _Rich(bar, task)
