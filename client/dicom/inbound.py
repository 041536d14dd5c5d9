"""The listener's spool: every instance a scanner stored, on disk, grouped by study.

    <spool>/                                      0700
      incoming/         pynetdicom writes each C-STORE's data set here while it
                        arrives (a Part 10 file); anything left by a crash was
                        never acknowledged and is removed at start
      studies/<key>.<gen>/
        state.json      route, recipients, first/last instance time, status, note
        <folder>/<series>/<instance>.dcm     what the transfer carries

``<key>`` is a hash of (called AE title, StudyInstanceUID): one folder per
study and route, with no UID in any name. ``<gen>`` counts the transfers of that
study: once a study is *sealed* (chosen for sending) its files never change
again, so that an interrupted send resumes byte for byte; an instance of the
same study arriving after that starts generation ``gen + 1``, a new transfer.
``<folder>`` (``dicom-<UTC time>-<key prefix>-<gen>``) is the one name the
recipients see at the top of the transfer: unique, so two transfers of one
study never collide in the lab's folder. Series and instance files are named
by hashes of their UIDs: a scanner resending an instance replaces its copy.

Durability: ``store`` fsyncs the instance, renames it into place and fsyncs
the folder before it returns; the SCP answers success only after that. A study
folder and its state file are made durable before its first instance moves in,
so whatever was acknowledged is found, with its recipients, after a crash.

One process owns a spool (``lock``), and inside it one ``threading.Lock``
orders the choices of folder against sealing: an instance never lands in a
study that is already being sent.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import ClientError
from ..outfile import fsync_path
from ..profile.filelock import locked

INCOMING = "incoming"
STUDIES = "studies"
STATE = "state.json"
COLLECTING = "collecting"
SEALED = "sealed"
_MAX_STATE = 64 * 1024
_UID_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


class SpoolError(ClientError):
    """The spool folder cannot be used (permissions, damaged state, another listener)."""


class DamagedStudy(SpoolError):
    """One spooled study's state file cannot be read; ``path`` is that study's folder,
    so a caller can tell studies apart without reading the message."""

    def __init__(self, message: str, *, path: Path, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


@dataclass(frozen=True, slots=True)
class InstanceIds:
    study: str
    series: str  # "" when the data set has none (it is then its own unnamed series)
    sop: str


@dataclass(frozen=True, slots=True)
class StudyState:
    route: str  # the called AE title it was sent to
    recipients: tuple[str, ...]
    folder: str  # the top-level name inside the transfer
    first: float  # wall-clock time of the first and last instance (for people)
    last: float
    status: str = COLLECTING
    note: str = ""  # fixed when sealed: part of what makes a resumed send identical

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, **asdict(self), "recipients": list(self.recipients)},
                          sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StudyState:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("v") != 1:
            raise ValueError("unknown state version")
        recipients = obj["recipients"]
        if not isinstance(recipients, list) or not all(isinstance(h, str) for h in recipients):
            raise ValueError("bad recipients")
        state = cls(route=str(obj["route"]), recipients=tuple(recipients),
                    folder=str(obj["folder"]), first=float(obj["first"]),
                    last=float(obj["last"]), status=str(obj["status"]), note=str(obj["note"]))
        if state.status not in (COLLECTING, SEALED) or "/" in state.folder or \
                state.folder in ("", ".", ".."):
            raise ValueError("bad status or folder")
        return state


@dataclass(frozen=True, slots=True)
class Study:
    path: Path  # studies/<key>.<gen>
    state: StudyState

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def files(self) -> Path:
        """The folder that is sent (its name is the transfer's top-level folder)."""
        return self.path / self.state.folder

    def counts(self) -> tuple[int, int]:
        """(series, instances) on disk."""
        series = [p for p in self.files.iterdir() if p.is_dir()] if self.files.is_dir() else []
        return len(series), sum(1 for s in series for f in s.iterdir() if f.suffix == ".dcm")


def read_ids(path: Path) -> InstanceIds | None:
    """The three UIDs of a received instance; None if it lacks a study or instance UID.

    Reads the header only (stop_before_pixels): a 500 MB multi-frame costs a
    few kilobytes here.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_UID_TAGS))
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    values = [str(ds.get(tag, "") or "").strip() for tag in _UID_TAGS]
    study, series, sop = values
    if not study or not sop:
        return None
    return InstanceIds(study=study, series=series, sop=sop)


def _digest(*parts: str, size: int = 24) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:size]


def _mkdir_durable(path: Path) -> None:
    """Create ``path`` (0700) and make its entry in the parent durable."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    fsync_path(path.parent)


def _write_state(study_path: Path, state: StudyState) -> None:
    tmp = study_path / f".{STATE}.partial"
    with open(tmp, "wb") as f:
        f.write(state.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, study_path / STATE)
    fsync_path(study_path)


def _read_state(study_path: Path) -> StudyState:
    try:
        with open(study_path / STATE, "rb") as f:
            raw = f.read(_MAX_STATE + 1)
        if len(raw) > _MAX_STATE:
            raise ValueError("too large")
        return StudyState.from_json(raw)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedStudy(f"the spooled study {study_path} has a damaged state file ({exc})",
                           path=study_path,
                           hint="move that folder out of the spool and send its files by "
                           "hand with sealdrop send") from exc


class InboundSpool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / INCOMING
        self.studies_dir = self.root / STUDIES
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """Create the folders, hold the spool's lock (one listener per spool) and tidy up."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)  # health data: this user only, whatever the umask
            for sub in (self.incoming, self.studies_dir):
                sub.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot use the spool folder {self.root}: {exc.strerror}") from exc
        with locked(self.root / "listener", wait=False):
            self._sweep()
            yield

    def _sweep(self) -> None:
        """Remove what a crash left half-written: never acknowledged, so never needed."""
        for p in self.incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        for done in self.studies_dir.glob(".*.done"):
            shutil.rmtree(done)
        for study in self.studies_dir.iterdir():
            for partial in study.glob("**/.*.partial"):
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()

    def studies(self, on_damaged: Callable[[DamagedStudy], None] | None = None
                ) -> list[Study]:
        """Every study in the spool, the one whose first instance came first, first.

        A study whose state file is damaged raises DamagedStudy, or, given
        ``on_damaged``, is reported there and left alone (the others still go).
        """
        out = []
        for path in self.studies_dir.iterdir():
            if path.is_dir() and not path.name.startswith("."):
                try:
                    out.append(Study(path, _read_state(path)))
                except DamagedStudy as exc:
                    if on_damaged is None:
                        raise
                    on_damaged(exc)
        return sorted(out, key=lambda s: (s.state.first, s.name))

    def collecting(self, route: str, recipients: tuple[str, ...], study_uid: str, *,
                   claim: Callable[[str], None] = lambda name: None,
                   now: float | None = None) -> Study:
        """The study folder that collects ``study_uid`` for ``route``, created if needed.

        ``claim(name)`` runs under the lock that ``seal`` takes: the caller marks
        the study as in use before a dispatcher could decide it is idle.
        """
        when = time.time() if now is None else now
        key = _digest(route, study_uid)
        with self._lock:
            gens: list[tuple[int, Path]] = []
            for found in self.studies_dir.glob(f"{key}.*"):
                suffix = found.name.rpartition(".")[2]
                if suffix.isdigit():
                    gens.append((int(suffix), found))
            gen = 1
            if gens:
                latest, path = max(gens)
                state = _read_state(path)
                if state.status == COLLECTING:
                    claim(path.name)
                    return Study(path, state)
                gen = latest + 1
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
            state = StudyState(route=route, recipients=recipients,
                               folder=f"dicom-{stamp}-{key[:8]}-{gen}", first=when, last=when)
            path = self.studies_dir / f"{key}.{gen}"
            # Durable before any instance: after a crash, every acknowledged
            # instance is found beside its route and recipients.
            _mkdir_durable(path)
            _write_state(path, state)
            _mkdir_durable(path / state.folder)
            claim(path.name)
            return Study(path, state)

    def store(self, study: Study, received: Path, ids: InstanceIds,
              now: float | None = None) -> Path:
        """Move the received Part 10 file into ``study``, durably; return where it is."""
        fsync_path(received)
        series = study.files / f"S{_digest(ids.series, size=12)}"
        _mkdir_durable(series)
        name = f"{_digest(ids.sop, size=32)}.dcm"
        target = series / name
        _move(received, target)
        fsync_path(series)
        # A resent instance with a different series UID: keep only the newest copy.
        for other in study.files.glob(f"*/{name}"):
            if other != target:
                other.unlink()
                fsync_path(other.parent)
        self.touch(study, time.time() if now is None else now)
        return target

    def touch(self, study: Study, when: float) -> None:
        with self._lock:
            state = _read_state(study.path)
            if state.status == COLLECTING:
                _write_state(study.path, replace(state, last=max(state.last, when)))

    def seal(self, study: Study, note_for: Callable[[Study], str],
             still_ready: Callable[[], bool] = lambda: True) -> Study | None:
        """Freeze ``study`` for sending; ``note_for(study)`` writes its note once.

        None if ``still_ready()``, asked under the lock ``collecting`` takes, says no.
        """
        with self._lock:
            state = _read_state(study.path)
            if state.status == SEALED:
                return Study(study.path, state)
            if not still_ready():
                return None
            sealed = replace(state, status=SEALED, note=note_for(Study(study.path, state)))
            _write_state(study.path, sealed)
            return Study(study.path, sealed)

    def remove(self, study: Study) -> None:
        """Forget a study the relay confirmed.

        Renamed out of the way first (one atomic step: a crash never leaves half
        a study that looks pending), then deleted; ``_sweep`` finishes the job.
        """
        done = self.studies_dir / f".{study.name}.done"
        os.replace(study.path, done)
        fsync_path(self.studies_dir)
        shutil.rmtree(done)

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # pynetdicom's temporary folder on another filesystem: copy durably.
        tmp = dst.with_name(f".{dst.name}.partial")
        shutil.copyfile(src, tmp)
        fsync_path(tmp)
        os.replace(tmp, dst)
