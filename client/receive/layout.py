"""Where a received case lands under ``--into``: the ``--layout`` template.

By default each case gets its own folder, ``{date} {sender} {id}``, e.g.
``2026-11-30 cabinet-martin 3f9a2c1e``: it sorts by date in any file
browser, and the short relay id makes it unique, so two cases with the same
file names, or the same files sent twice, never collide. ``{flat}`` (or an
empty template) places the files straight into ``--into``, as before.

Placeholders: ``{date}`` (YYYY-MM-DD) and ``{time}`` (HHhMM), local time when
the receive starts; ``{sender}`` (the sender's handle); ``{id}`` (the first 8
hex digits of the relay id); ``{label}`` (the sender's label for the case,
``unlabelled`` when there is none). ``/`` in a template nests folders, e.g.
``{sender}/{date} {id}``.

Every value from the sender or the relay becomes ONE safe path component
(``component``): NFC, no control or format characters, no separators, none of
the characters Windows and SMB shares refuse (``<>:"/\\|?*``), no leading or
trailing dot or space, never ``.``/``..`` nor a reserved DOS device name
(``CON``, ``NUL``, ``COM1``…), at most ``MAX_COMPONENT_BYTES`` bytes of UTF-8.
Pure: no file system, no clock (the time is a parameter).
"""

from __future__ import annotations

import datetime
import re
import string
import unicodedata
from dataclasses import dataclass

DEFAULT_LAYOUT = "{date} {sender} {id}"
FLAT = "{flat}"
PLACEHOLDERS = ("date", "time", "sender", "id", "label")
NO_LABEL = "unlabelled"
# Folder names on ext4, NTFS and SMB allow 255 bytes; this leaves room for the
# rest of a template and for the files' own names in tools that add prefixes.
MAX_COMPONENT_BYTES = 120
MAX_VALUE_BYTES = 64

# What Windows (and thus a lab's SMB share) refuses in a name, plus both separators.
_FORBIDDEN = re.compile(r'[<>:"/\\|?*]')
_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


class LayoutError(ValueError):
    """The template is not usable; the message says what to change."""


def _truncate(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


def component(value: str, *, max_bytes: int = MAX_COMPONENT_BYTES, empty: str = "_") -> str:
    """``value`` as one path component that is safe on Linux, macOS and Windows shares."""
    text = unicodedata.normalize("NFC", value)
    # Control (Cc), format (Cf: bidi overrides, zero-width), unassigned and
    # surrogate characters: a name that displays differently from what it is.
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
                   else c for c in text)
    text = _FORBIDDEN.sub("-", text)
    text = _SPACES.sub(" ", text)
    text = _truncate(text, max_bytes)
    # After truncation: it may leave a trailing space or dot, which Windows drops.
    text = text.strip(" .")
    if not text:
        return empty
    if _RESERVED.match(text):
        text = _truncate("_" + text, max_bytes)
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True, slots=True)
class CaseInfo:
    """What a case folder may be named from (all known before the download)."""

    relay_id: str
    sender: str
    when: datetime.datetime
    label: str | None = None

    def values(self) -> dict[str, str]:
        return {
            "date": self.when.strftime("%Y-%m-%d"),
            "time": self.when.strftime("%Hh%M"),
            "sender": component(self.sender, max_bytes=MAX_VALUE_BYTES),
            "id": component(self.relay_id[:8], max_bytes=MAX_VALUE_BYTES),
            "label": component(self.label or "", max_bytes=MAX_VALUE_BYTES, empty=NO_LABEL),
        }


@dataclass(frozen=True, slots=True)
class Layout:
    """A parsed ``--layout`` template: folder parts under ``--into``, or flat."""

    template: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, template: str | None) -> Layout:
        text = DEFAULT_LAYOUT if template is None else template.strip()
        if text in ("", FLAT):
            return cls(FLAT, ())
        if text.startswith("/"):
            raise LayoutError(f"the layout {text!r} starts with '/': it names folders "
                              "under --into, not an absolute path")
        parts = tuple(text.split("/"))
        for part in parts:
            if part.strip() in ("", ".", ".."):
                raise LayoutError(f"the layout {text!r} has an empty, '.' or '..' folder")
            _check_fields(text, part)
        return cls(text, parts)

    @property
    def flat(self) -> bool:
        return not self.parts

    @property
    def unique(self) -> bool:
        """Whether two different transfers always get different folders."""
        return any("{id}" in p for p in self.parts)

    def folder(self, case: CaseInfo) -> str:
        """The case folder, relative to ``--into`` ('' when flat), '/'-separated."""
        values = case.values()
        return "/".join(component(p.format(**values)) for p in self.parts)


def _check_fields(template: str, part: str) -> None:
    try:
        fields = list(string.Formatter().parse(part))
    except ValueError as exc:
        raise LayoutError(f"the layout {template!r} is malformed ({exc}); write braces "
                          "only around a placeholder") from exc
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name == "flat":
            raise LayoutError("{flat} must be the whole layout (files straight into --into)")
        if name not in PLACEHOLDERS or spec or conversion:
            raise LayoutError(
                f"the layout {template!r} has an unknown placeholder {{{name}}}; use "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS) + ", or {flat}")
