"""Durations as people write them (``7d``, ``12h``, ``30m``, ``0.5s``) and read them back.

One module for both directions, so that every bound the client checks or the
relay sets is said in the same words: "--expires must be between 1 minute and
30 days", never "60 <= x <= 2592000". Pure: text and numbers in, text and
numbers out. The CLI (``cli/format.py``) and the relay client (which turns the
relay's expiry refusal into days) both use it.
"""

from __future__ import annotations

import math
import re

from .errors import ClientError

MINUTE = 60
HOUR = 3600
DAY = 86400
# The relay refuses an expiry below a minute (docs/protocol.md, POST
# /v1/transfers); its maximum is the operator's (default 30 days), so the
# client only stops what no relay would take: more than a year is a typo.
MIN_EXPIRY = MINUTE
MAX_EXPIRY = 365 * DAY

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_UNITS: dict[str, int] = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": MINUTE, "min": MINUTE, "mins": MINUTE, "minute": MINUTE, "minutes": MINUTE,
    "h": HOUR, "hour": HOUR, "hours": HOUR,
    "d": DAY, "day": DAY, "days": DAY,
    "w": 7 * DAY, "week": 7 * DAY, "weeks": 7 * DAY,
}
_NAMES = ((DAY, "day"), (HOUR, "hour"), (MINUTE, "minute"))
EXAMPLES = "write e.g. 30s, 5m, 12h or 7d"


def _unit(n: float, name: str) -> str:
    text = f"{n:g}" if n != int(n) else str(int(n))
    return f"{text} {name}" + ("" if n == 1 else "s")


def human_duration(seconds: float) -> str:
    """``30 days``, ``1 day 12 hours``, ``1 minute``, ``0.5 seconds``: exact, largest units first.

    Every non-zero unit is named (no rounding): a bound said in words must be
    the bound itself, or a user who types exactly what we said gets refused.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r}")
    whole = int(seconds)
    if seconds != whole or whole < MINUTE:
        # Under a minute, or with a fraction (only --interval-like options take
        # one): in seconds, which is exact.
        return _unit(round(seconds, 3), "second")
    parts = []
    rest = whole
    for size, name in _NAMES:
        if rest >= size:
            parts.append(_unit(rest // size, name))
            rest %= size
    if rest:
        parts.append(_unit(rest, "second"))
    return " ".join(parts)


def parse_seconds(text: str) -> float:
    """``30``, ``0.2``, ``30s``, ``5m``, ``12h``, ``7d``, ``2w`` (and their spelled-out units)."""
    m = _DURATION.match(str(text).lower())
    unit = _UNITS.get(m.group(2)) if m else None
    if m is None or unit is None:
        raise ClientError(f"cannot read the duration {str(text)[:40]!r}; {EXAMPLES}")
    return float(m.group(1)) * unit


def checked(seconds: float, *, name: str, low: float, high: float) -> float:
    """``seconds`` if within [low, high], else an error in the user's units."""
    if not low <= seconds <= high:
        raise ClientError(
            f"{name} must be between {human_duration(low)} and {human_duration(high)} "
            f"(you gave {human_duration(seconds)})",
            hint=EXAMPLES,
        )
    return seconds


def parse_duration(text: str, *, name: str = "the duration", low: float = 1,
                   high: float = MAX_EXPIRY) -> int:
    """A whole number of seconds within [low, high]; the error names ``name`` and the bounds."""
    seconds = parse_seconds(text)
    if seconds != int(seconds):
        raise ClientError(f"{name} must be a whole number of seconds; {EXAMPLES}")
    return int(checked(seconds, name=name, low=low, high=high))


def parse_expiry(text: str) -> int:
    """``--expires``: 1 minute to a year here; the relay may allow less (``expiry_refused``)."""
    return parse_duration(text, name="--expires", low=MIN_EXPIRY, high=MAX_EXPIRY)


def expiry_refused(bounds: tuple[int, int] | None, asked: int) -> tuple[str, str]:
    """The message and hint for a relay's ``bad_expiry`` answer to ``asked`` seconds.

    ``bounds`` is the relay's [min, max] in seconds as ``GET /v1/info`` states
    it (``expiry_seconds``), said here in days and hours; None from a relay
    that does not state them, which still gets a sentence without bounds.
    Never read from the refusal's text: its wording is the relay's to change.
    """
    if bounds is None:
        return (f"the relay does not keep transfers for {human_duration(asked)}",
                "give a shorter --expires, e.g. --expires 7d")
    low, high = bounds
    if asked > high:
        return (f"the relay keeps transfers at most {human_duration(high)}; "
                f"--expires asked for {human_duration(asked)}",
                f"give --expires {_shortest(high)} or less (the relay's operator sets this "
                "limit)")
    return (f"--expires must be between {human_duration(low)} and {human_duration(high)} "
            f"on this relay (you gave {human_duration(asked)})", EXAMPLES)


def _shortest(seconds: int) -> str:
    """The duration as one ``--expires`` value: ``30d``, ``36h``, ``90m`` or ``45s``."""
    for size, suffix in ((DAY, "d"), (HOUR, "h"), (MINUTE, "m")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"
