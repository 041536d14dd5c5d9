"""One line per case, as a person tells cases apart: ``inbox`` (and its card);
and times as people say them (``10:42`` today, ``2 h ago``).

    cabinet-martin ✓ · CT 412 img · DUPONT^Marie · Couronne 36 · 1.2 GB · 2 h ago

Everything on it is the sender's or the relay's text: made terminal-safe here.
"""

from __future__ import annotations

import time
from typing import Any

from ..receive.cards import INVALID, UNVERIFIED, VERIFIED, CardView
from .format import human_size
from .terminal import for_terminal as safe

_MARK = {"verified": " ✓", "unverified": " (unverified)"}


def local_time(ts: object, now: float | None = None) -> str:
    """``10:42`` today, ``2026-11-30 10:42`` another day (local time); the relay's
    word, so anything not a plausible time is shown terminal-safe as it came."""
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < 1 << 40:
        return safe(ts)
    today = time.localtime(time.time() if now is None else now)[:3]
    at = time.localtime(ts)
    return time.strftime("%H:%M" if at[:3] == today else "%Y-%m-%d %H:%M", at)


def ago(ts: object, now: float | None = None) -> str:
    """``just now``, ``5 min ago``, ``2 h ago``, ``3 d ago``; the relay's word."""
    if not isinstance(ts, int) or isinstance(ts, bool):
        return safe(ts)
    d = int((time.time() if now is None else now) - ts)
    if d < 60:
        return "just now"
    if d < 3600:
        return f"{d // 60} min ago"
    if d < 86400:
        return f"{d // 3600} h ago"
    return f"{d // 86400} d ago"


def _size(n: object) -> str:
    ok = isinstance(n, int) and not isinstance(n, bool) and n >= 0
    return human_size(n) if ok and isinstance(n, int) else safe(n)


def case_line(t: dict[str, Any], view: CardView, *, now: float | None = None) -> str:
    """The line for inbox row ``t`` with its judged card ``view``."""
    sender = safe(t.get("sender"))
    c = view.card
    if view.state in (VERIFIED, UNVERIFIED) and c is not None:
        parts = [sender + _MARK.get(view.state, "")]
        if c.studies:
            s = c.studies[0]
            more = len(c.studies) - 1 + c.more_studies
            parts.append(f"{safe('/'.join(s.modalities) or 'DICOM')} {s.image_count} img"
                         + (f" +{more} studies" if more else ""))
            if s.patient_name:
                parts.append(safe(s.patient_name))
        what = c.label or c.note_line
        if what:
            parts.append(safe(what))
        parts.append(f"{c.file_count} file{'s' if c.file_count != 1 else ''}")
        parts.append(human_size(c.total_size))
    else:
        parts = [sender + _MARK.get(str(t.get("sender_state")), "")]
        if view.state == INVALID:
            parts.append("✗ card does not verify")
        parts.append(_size(t.get("size")))
    parts.append(ago(t.get("sent_at"), now))
    return " · ".join(parts)
