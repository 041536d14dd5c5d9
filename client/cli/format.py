"""Times and sizes, as people write them on the command line and read them back."""

from __future__ import annotations

import time

import click

from ..durations import human_duration, parse_duration, parse_expiry, parse_seconds
from ..errors import ClientError
from .terminal import for_terminal

__all__ = ["Seconds", "claimed_size", "claimed_time", "human_duration", "human_size",
           "parse_duration", "parse_expiry", "when"]


class Seconds(click.ParamType[float]):
    """An option in seconds that also takes ``30s``, ``5m``, ``1h``; bounds said in words.

    For the float options (``watch --interval``, ``--max-backoff``) that took a
    bare number of seconds: a bare number still means seconds, and an error
    reads "--interval must be between 0.1 seconds and 1 day", not
    ``0.1<=x<=86400``.
    """

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            try:
                seconds = parse_seconds(str(value))
            except ClientError as exc:
                self.fail(str(exc), param, ctx)
        if not self.low <= seconds <= self.high:
            # click prefixes "Invalid value for '--interval':".
            self.fail(f"must be between {human_duration(self.low)} and "
                      f"{human_duration(self.high)} (you gave {human_duration(seconds)})",
                      param, ctx)
        return seconds

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS"


def when(ts: int | None) -> str:
    """A local time for people; '-' for none."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def human_size(n: int) -> str:
    """Decimal units (1 KB = 1000 B), as file managers show them."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def claimed_size(n: object) -> str:
    """A size the relay reports, right-aligned; shown terminal-safe if not a number."""
    if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
        return f"{human_size(n):>9}"
    return f"{for_terminal(n):>9}"


def claimed_time(ts: object) -> str:
    """A time the relay reports; shown terminal-safe if not a number."""
    if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts < 1 << 40:
        return when(ts)
    return for_terminal(ts)
