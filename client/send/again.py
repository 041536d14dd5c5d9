""""You sent these already": the very same files to the same recipients within a day.

A dental assistant who runs the same ``send`` twice (a second click, a script
run again after it said "done") would otherwise upload the case twice and the
lab would make two crowns. Resuming an interrupted send is not a repeat
(``flow`` finds that first, in the outbox); this looks only at completed sends,
in the sender's own records (``profile.sent``), never at the relay.

The fingerprint is the files' content stamps (absolute path, size, mtime):
free, since the scan read them already. The SHA-256 of every file would be
better but costs a full read of a 1.5 GB study before the upload starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..profile.sent import SentCase
from .scan import ScannedFile

WINDOW = 24 * 3600


def content_key(files: Sequence[ScannedFile]) -> str:
    """The same for the same files unchanged, in any order."""
    stamps = sorted([str(f.path.absolute()), f.size, f.mtime_ns] for f in files)
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Repeat:
    case: SentCase

    def message(self, when: str) -> str:
        c = self.case
        return (f"you sent these {c.file_count} file(s) to {', '.join(c.recipients)} at "
                f"{when} (transfer {c.relay_id})")


def find_repeat(cases: Iterable[SentCase], content: str, recipients: Iterable[str], *,
                now: int) -> Repeat | None:
    """The latest completed, unretracted send of ``content`` to exactly ``recipients``
    within ``WINDOW``; None if there is none."""
    to = sorted(recipients)
    for c in cases:
        if (c.content == content and sorted(c.recipients) == to
                and c.completed_at is not None and c.retracted_at is None
                and now - c.completed_at < WINDOW):
            return Repeat(c)
    return None
