"""The forward step: after a transfer is received and verified, into the lab's PACS.

Runs only on what ``receive_one`` placed (every hash and the signature
verified): never during a download. Per target, in order:

1. record the placed DICOM files and the target in the forwards store
   (``profile.forwards``) before sending anything, so a crash or a dead PACS
   leaves a pending forward, not a forgotten one;
2. read every instance back (``dicom.instances``): one unreadable or changed
   file and nothing is sent;
3. send what the PACS has not stored yet (C-STORE or STOW-RS), up to
   ``attempts`` times with exponential backoff (``base_delay`` doubling);
4. record, per instance, what the PACS answered. What is still missing stays
   pending, due again after ``interval`` doubling per failed round up to
   ``max_backoff`` (``watch`` honours it; ``receive`` and ``forward`` by hand
   try at once).

Sending an instance again is harmless: the PACS keys it by its SOP instance
UID and keeps one copy.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dicom import forward_dimse, forward_web
from ..dicom.instances import DICOM_MEDIA_TYPE, InstancesError, PlacedFile, read_instances
from ..dicom.outcome import Attempt, Outcome
from ..errors import ClientError
from ..profile.filelock import StoreLockedError, lock_path, locked
from ..profile.forwards import ForwardStore
from ..profile.layout import FORWARD_LOCK_PREFIX
from .transfer import ReceiveResult


@dataclass(frozen=True, slots=True)
class Target:
    """Where to forward: a DIMSE PACS (``AET@HOST:PORT``) or a DICOMweb URL."""

    kind: str  # "dimse" | "dicomweb"
    address: str
    calling_aet: str = forward_dimse.DEFAULT_CALLING_AET

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.address}"

    @classmethod
    def pacs(cls, text: str, calling_aet: str = forward_dimse.DEFAULT_CALLING_AET) -> Target:
        return cls("dimse", str(forward_dimse.PacsTarget.parse(text)),
                   forward_dimse.check_aet(calling_aet, "the calling AE title"))

    @classmethod
    def dicomweb(cls, text: str) -> Target:
        return cls("dicomweb", str(forward_web.WebTarget.parse(text)))

    @classmethod
    def from_record(cls, t: dict[str, Any]) -> Target:
        return cls(str(t["kind"]), str(t["address"]),
                   str(t.get("calling_aet") or forward_dimse.DEFAULT_CALLING_AET))

    def describe(self) -> str:
        return f"the PACS {self.address}" if self.kind == "dimse" else \
            f"the DICOMweb server {self.address}"


@dataclass(frozen=True, slots=True)
class ForwardReport:
    """One forward of one transfer to one target, after this run's attempts."""

    relay_id: str
    target: Target
    files: tuple[str, ...]  # paths in the transfer
    stored: tuple[bool, ...]
    status: tuple[str, ...]
    reason: tuple[str, ...]
    error: str | None
    hint: str | None = None

    @property
    def done(self) -> bool:
        return self.error is None and all(self.stored)

    def to_json(self, *, phi: bool = False) -> dict[str, Any]:
        # The PACS's status words, and the file's place in the transfer; its
        # path only with ``phi`` (a sender's names may hold a patient's, as in
        # ``ReceiveResult.to_json``). Never SOP instance UIDs: they identify a
        # patient's study (PS3.15) and stay out of output meant for log collectors.
        return {
            "transfer_id": self.relay_id,
            "target": self.target.address,
            "protocol": self.target.kind,
            "state": "forwarded" if self.done else "pending",
            "stored": sum(self.stored),
            "total": len(self.files),
            "error": self.error,
            "instances": [
                {**({"path": p} if phi else {}), "index": i,
                 "state": "stored" if ok else "not stored", "status": st, "reason": why or None}
                for i, (p, ok, st, why) in enumerate(
                    zip(self.files, self.stored, self.status, self.reason, strict=True), 1)],
        }


def dicom_files(result: ReceiveResult) -> list[PlacedFile]:
    """The transfer's DICOM instances: what the manifest calls DICOM, and what
    carries DICOM's magic all the same. The sender's scan sends a DICOM file it
    cannot read whole as an opaque file (docs/dicom.md, "Malformed DICOM");
    counting it here makes the instance check refuse the whole forward, so the
    PACS never sees a study with an instance missing."""
    return [PlacedFile(f.path, Path(p).absolute(), f.sha256.hex())
            for f, p in zip(result.manifest.files, result.files, strict=True)
            if f.media_type == DICOM_MEDIA_TYPE or _has_dicom_magic(Path(p))]


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False  # the instance check reads every file again and names it


class Forwarder:
    def __init__(self, home: Path, targets: Sequence[Target], *,
                 auth: forward_web.BasicAuth | None = None, attempts: int = 3,
                 base_delay: float = 1.0, interval: float = 30.0, max_backoff: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = ForwardStore(home)
        self.targets = list(targets)
        self.auth = auth
        self.attempts = max(1, attempts)
        self.base_delay, self.interval, self.max_backoff = base_delay, interval, max_backoff
        self.clock = clock

    def after_receive(self, result: ReceiveResult, *, wait: Callable[[float], object] = time.sleep
                      ) -> list[ForwardReport]:
        """Forward a transfer just received to every target (nothing if it has no DICOM)."""
        files = dicom_files(result)
        if not files or not self.targets:
            return []
        self.store.begin(result.relay_id, into=result.into,
                         files=[{"path": f.path, "placed": str(f.placed), "sha256": f.sha256}
                                for f in files],
                         targets=[{"key": t.key, "kind": t.kind, "address": t.address,
                                   "calling_aet": t.calling_aet} for t in self.targets])
        return [self.run(result.relay_id, t, wait=wait) for t in self.targets]

    def pending(self, relay_ids: Iterable[str] | None = None, *, only_mine: bool = True,
                due: bool = False) -> list[tuple[str, Target]]:
        """Pending forwards: of ``relay_ids`` (None: all), to our targets or (``only_mine``
        False) to whatever target each was recorded with; ``due``: whose wait is over."""
        ids = None if relay_ids is None else set(relay_ids)
        mine = {t.key: t for t in self.targets}
        data = self.store.load()
        now = self.clock()
        out = []
        for rid, key in self.store.pending():
            if ids is not None and rid not in ids:
                continue
            if only_mine and key not in mine:
                continue
            rec = data[rid]["targets"][key]
            if due and float(rec.get("next_at", 0.0)) > now:
                continue
            out.append((rid, mine.get(key) or Target.from_record(rec)))
        return out

    def run_pending(self, relay_ids: Iterable[str] | None = None, *, only_mine: bool = True,
                    due: bool = False, wait: Callable[[float], object] = time.sleep
                    ) -> list[ForwardReport]:
        return [self.run(rid, t, wait=wait)
                for rid, t in self.pending(relay_ids, only_mine=only_mine, due=due)]

    def add_targets(self, relay_id: str) -> None:
        """Add our targets to a transfer already recorded (``sealdrop forward ID --to-pacs``)."""
        rec = self.store.load().get(relay_id)
        if rec is None:
            raise ClientError(
                f"transfer {relay_id} was not received here with a forward target, so the "
                "places of its files were not recorded",
                hint="send its DICOM files from the receive folder with your PACS's tools "
                "(e.g. dcmsend), or receive with --to-pacs/--to-dicomweb next time")
        self.store.begin(relay_id, into=Path(rec["into"]), files=rec["files"],
                         targets=[{"key": t.key, "kind": t.kind, "address": t.address,
                                   "calling_aet": t.calling_aet} for t in self.targets])

    def run(self, relay_id: str, target: Target, *,
            wait: Callable[[float], object] = time.sleep) -> ForwardReport:
        """Send what ``target`` lacks of ``relay_id``; never raises for the PACS's faults.

        One process at a time per transfer (a ``watch`` service and a
        ``forward`` by hand): the other skips it, rather than send it twice.
        """
        lock = self.lock_for(relay_id, target)
        try:
            with locked(lock, wait=False):
                try:
                    return self._run(relay_id, target, wait=wait)
                finally:
                    lock_path(lock).unlink(missing_ok=True)
        except StoreLockedError:
            rec = self.store.load()[relay_id]
            t = rec["targets"][target.key]
            return ForwardReport(
                relay_id=relay_id, target=target,
                files=tuple(str(f["path"]) for f in rec["files"]),
                stored=tuple(bool(x) for x in t["stored"]), status=tuple(t["status"]),
                reason=tuple(t["reason"]),
                error="being forwarded by another sealdrop process on this profile; "
                "skipped here")

    def lock_for(self, relay_id: str, target: Target) -> Path:
        """The per-forward lock (hashed: ids and URLs never become file names)."""
        name = hashlib.sha256(f"{relay_id}\0{target.key}".encode()).hexdigest()[:32]
        return self.store.path.with_name(f"{FORWARD_LOCK_PREFIX}{name}")

    def _run(self, relay_id: str, target: Target, *,
             wait: Callable[[float], object]) -> ForwardReport:
        rec = self.store.load()[relay_id]
        files = [PlacedFile(str(f["path"]), Path(f["placed"]), str(f["sha256"]))
                 for f in rec["files"]]
        state = rec["targets"][target.key]
        error: str | None = None
        hint: str | None = None
        answers: dict[int, tuple[bool, str, str]] = {}
        try:
            instances = read_instances(files)
        except InstancesError as exc:
            instances, error, hint = [], str(exc), exc.hint
        stored = list(state["stored"])
        for n in range(self.attempts if instances else 0):
            todo = [i for i in instances if not stored[i.index]]
            if not todo:
                break
            # ``wait`` is watch's stop event's wait in a service: True once
            # SIGTERM came, and then the next round (or run) retries instead.
            if n and wait(self.base_delay * 2 ** (n - 1)) is True:
                break
            attempt = self._send(target, todo)
            for o in attempt.outcomes:
                answers[o.index] = (o.stored, o.status, o.reason)
                stored[o.index] = stored[o.index] or o.stored
            error = attempt.error
            if attempt.error is not None and not attempt.transient:
                break
        if error is None and instances and not all(stored):
            error = f"{target.describe()} did not store {stored.count(False)} of " \
                    f"{len(stored)} instances"
        rounds = int(state.get("rounds", 0))
        delay = min(self.interval * 2 ** min(rounds, 20), self.max_backoff)
        new = self.store.update(relay_id, target.key, stored=answers, error=error,
                                next_at=self.clock() + delay)
        if error is not None and hint is None and not new["done"]:
            hint = ("the received files stay in their folder; the forward is pending and is "
                    "retried by the next `sealdrop receive`/`watch` with this target, or "
                    "`sealdrop forward`")
        return ForwardReport(
            relay_id=relay_id, target=target, files=tuple(f.path for f in files),
            stored=tuple(bool(s) for s in new["stored"]), status=tuple(new["status"]),
            reason=tuple(new["reason"]), error=None if new["done"] else error, hint=hint)

    def _send(self, target: Target, todo: Sequence[Any]) -> Attempt:
        try:
            if target.kind == "dimse":
                return forward_dimse.store(forward_dimse.PacsTarget.parse(target.address), todo,
                                           calling_aet=target.calling_aet)
            return forward_web.store(forward_web.WebTarget.parse(target.address), todo,
                                     auth=self.auth)
        except Exception as exc:  # noqa: BLE001 - a forward never takes the receive down
            return Attempt((), f"forwarding to {target.describe()} failed unexpectedly "
                           f"({type(exc).__name__}: {str(exc)[:120]})")


__all__ = ["Forwarder", "ForwardReport", "Outcome", "Target"]
