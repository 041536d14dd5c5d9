"""Times and sizes, as people write them on the command line and read them back."""

from __future__ import annotations

import re
import time

from ..errors import ClientError
from .terminal import for_terminal

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``2w`` or plain seconds."""
    m = _DURATION.match(text.lower())
    if not m:
        raise ClientError(f"cannot read the duration {text!r}; write e.g. 7d, 12h or 30m")
    return int(m.group(1)) * _UNITS[m.group(2)]


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
