"""What a forward did with each instance, whichever the protocol.

An instance counts as forwarded only on a positive answer from the PACS for
that very instance: a DIMSE status of success or one of the warnings PS3.4
Annex B counts as stored (``STORED_DIMSE``), or its SOP instance UID among a
STOW-RS response's referenced (stored) instances. Everything else, including
silence, a dropped connection or an answer we cannot read, leaves it
unforwarded, to be sent again.
"""

from __future__ import annotations

from dataclasses import dataclass

# PS3.4 B.2.3: success, and the three warnings under which the SCP stored the
# instance (coercion of data elements, elements discarded, data set does not
# match SOP class).
STORED_DIMSE = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One instance's fate in one attempt: ``status`` is the PACS's own word
    ("0x0000", "HTTP 409", "0xA700") or "" when it never answered for it."""

    index: int
    stored: bool
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at a forward: per instance sent, and what went wrong for all
    (``error``: the association or request failed, naming the target;
    ``transient``: worth trying again at once, rather than next round)."""

    outcomes: tuple[Outcome, ...]
    error: str | None = None
    transient: bool = True
