"""Which object version brings each blob back, for a restore from a pg_dump (pure).

A PostgreSQL + S3 backup is a dump of the database plus the bucket's
versioning (server.pgbackup): the dump says which transfers were complete at
its snapshot, and the bucket still holds every version of their objects
(deleted ones too, behind a delete marker) until its lifecycle rule expires
them. Restoring a blob is making the right version current again.

The right version: a relay writes a blob's object once (the multipart upload's
completion) and afterwards only deletes it, so a complete transfer's object
has one data version. It is chosen as the newest data version of the recorded
size written no later than the snapshot's time (plus ``CLOCK_SLACK`` for the
object store's clock running ahead of the database's). Delete markers are
passed over, whenever they were written: the dump's row says the blob
existed whole, and ``verify`` re-hashes every restored blob against the
dump's chunk records, so bringing a version back can never pass off wrong
bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

# How far the object store's clock may run ahead of the database's. NTP keeps
# both within a second; a blob has one data version, so a wide margin cannot
# pick a wrong one, while a narrow one could miss the version of a transfer
# completed just before the dump.
CLOCK_SLACK = 300.0

CURRENT = "current"  # the version is already the object: nothing to do
UNMARK = "unmark"  # only delete markers hide it: delete them
COPY = "copy"  # copy the version onto the object (another place, or data after it)
MISSING = "missing"  # no version brings it back: named to the operator


@dataclass(frozen=True, slots=True)
class Version:
    """One entry of ListObjectVersions for a blob's key, newest first as listed."""

    version_id: str
    modified: float  # epoch seconds, the object store's clock
    size: int  # 0 for a delete marker
    deleted: bool  # a delete marker
    latest: bool


@dataclass(frozen=True, slots=True)
class Step:
    transfer: str
    action: str  # CURRENT | UNMARK | COPY | MISSING
    version: Version | None = None
    markers: tuple[str, ...] = ()  # UNMARK: the delete markers' version ids
    why: str = ""  # MISSING: what an operator reads


@dataclass(slots=True)
class Plan:
    steps: list[Step] = field(default_factory=list)

    def of(self, action: str) -> list[Step]:
        return [s for s in self.steps if s.action == action]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_of(versions: Sequence[Version], at: float, size: int,
          slack: float = CLOCK_SLACK) -> Version | None:
    """The data version of ``size`` bytes the blob had at ``at``; None if none.
    ``versions`` newest first (S3's order): two versions within one second of
    each other keep their order, which their times at one-second precision lose."""
    for v in versions:
        if not v.deleted and v.size == size and v.modified <= at + slack:
            return v
    return None


def _missing_why(versions: Sequence[Version], at: float, size: int) -> str:
    data = [v for v in versions if not v.deleted]
    if not versions:
        return ("the bucket holds no version of its blob (never written there, or its "
                "versions expired: the lifecycle rule must keep them longer than the backups)")
    if not data:
        return "the bucket holds only delete markers for its blob (its data versions expired)"
    if all(v.size != size for v in data):
        return f"no version of its blob has the recorded size of {size} bytes"
    return f"every version of its blob was written after the backup ({_when(at)})"


def plan(
    wanted: Sequence[tuple[str, int]],
    versions: Mapping[str, Sequence[Version]],
    at: float,
    *,
    in_place: bool,
) -> Plan:
    """One step per complete transfer (id, size) of the dump.

    ``in_place``: the versions are those of the very keys being restored (the
    restore writes where the backup was taken), so the chosen version may
    already be current, or be hidden only by delete markers. Otherwise every
    blob is copied to its new place."""
    out = Plan()
    for tid, size in wanted:
        listed = list(versions.get(tid, ()))
        chosen = as_of(listed, at, size)
        if chosen is None:
            out.steps.append(Step(tid, MISSING, why=_missing_why(listed, at, size)))
            continue
        if not in_place:
            out.steps.append(Step(tid, COPY, chosen))
            continue
        if chosen.latest:
            out.steps.append(Step(tid, CURRENT, chosen))
            continue
        newer = listed[: listed.index(chosen)]
        if newer and all(v.deleted for v in newer):
            out.steps.append(Step(tid, UNMARK, chosen, tuple(v.version_id for v in newer)))
        else:
            out.steps.append(Step(tid, COPY, chosen))
    return out
