"""Unfinished sends, kept so that an interrupted upload resumes byte-identically.

Two files per unfinished send in the outbox folder (names in ``layout``):

    <relay id>.age     the send record: JSON, age-encrypted to the user's own
                       post-quantum key (it holds the age ResumeState: the
                       file key of the transfer)
    <relay id>.chunks  one line per ciphertext chunk: its hash (hex; SHA-256 or
                       BLAKE3, the record's ``chunk_hash``), written
                       (and fsynced) BEFORE the chunk is sent

Why the chunk log is written ahead: after a crash the relay may hold a chunk
whose hash we would otherwise never have recorded; with the log written first,
every byte the relay committed has a recorded hash, and a resumed send proves
that it regenerates exactly those bytes before it skips them. The hashes are of
ciphertext the relay already holds: not secret, so the log is plain and appended.

Both files are removed when the relay confirms the transfer complete, or when
the send is cancelled.

One send is uploaded by one process at a time: ``journal`` takes the send's
file lock (``filelock``, ``<relay id>.age.lock``) without waiting and holds it
until the journal is closed. A second ``sealdrop send`` of the same files
while the first still runs is refused, instead of both appending to one chunk
log and corrupting the record of what the relay holds.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sealdrop.crypto import age, chunkhash
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import BundleError
from sealdrop.crypto.identity import SecretIdentity

from ..errors import ClientError
from ..outfile import atomic_output
from .filelock import lock_path, locked
from .layout import OUTBOX_DIR, OUTBOX_RECORD, outbox_files
from .ownsealed import read_sealed, write_sealed

_MAX_RECORD = 64 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class FileStamp:
    """A source file as it was when the send started: a changed stamp cancels a resume."""

    arcname: str
    path: str
    size: int
    mtime_ns: int
    media_type: str


def _chunk_hash(value: object) -> str:
    if value not in chunkhash.ALGORITHMS:
        raise ValueError("unknown chunk hash")
    return str(value)


@dataclass(frozen=True, slots=True)
class SendRecord:
    """Everything that fixes an unfinished send's ciphertext, and where it goes."""

    relay_id: str  # the relay's id of the transfer being uploaded
    relay: str
    job_key: str
    resume_state: bytes  # SECRET
    manifest_id: bytes  # the id signed into the manifest (not the relay's)
    created: int
    recipients: tuple[dict[str, Any], ...]  # the key bundles encrypted to (JSON)
    note: str
    dicom: dict[str, Any]
    files: tuple[FileStamp, ...]
    chunk_size: int
    size: int
    # `send --deidentify`: {"secret": base64 (SECRET: the pseudonym key),
    # "options": DeidOptions JSON, "sources": [[arcname, path, size, mtime_ns], ...]
    # of the originals}. None for a plain send. The copies sealed are in
    # layout.deid_folder(home, job_key), kept as long as this record.
    deid: dict[str, Any] | None = None
    # The chunk hash the relay gets and the chunk log holds (crypto.chunkhash);
    # records from before BLAKE3 have none: SHA-256.
    chunk_hash: str = chunkhash.SHA256

    def __repr__(self) -> str:
        return f"SendRecord(relay_id={self.relay_id!r}, <secret>)"

    def bundles(self) -> list[KeyBundle]:
        try:
            return [KeyBundle.from_json(b).verify() for b in self.recipients]
        except BundleError as exc:
            raise ClientError(f"the unfinished send {self.relay_id} is damaged: {exc}") from exc

    def to_bytes(self) -> bytes:
        obj = {
            "v": 1,
            "relay_id": self.relay_id,
            "relay": self.relay,
            "job_key": self.job_key,
            "resume_state": base64.b64encode(self.resume_state).decode(),
            # Stored as "transfer_id", its name before the relay's id and the
            # manifest's were told apart: records of interrupted sends made by
            # an earlier version still resume.
            "transfer_id": self.manifest_id.hex(),
            "created": self.created,
            "recipients": list(self.recipients),
            "note": self.note,
            "dicom": self.dicom,
            "files": [asdict(f) for f in self.files],
            "chunk_size": self.chunk_size,
            "size": self.size,
        }
        if self.deid is not None:
            obj["deid"] = self.deid
        if self.chunk_hash != chunkhash.SHA256:
            obj["chunk_hash"] = self.chunk_hash
        return json.dumps(obj, sort_keys=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> SendRecord:
        obj = json.loads(data)
        if obj.get("v") != 1:
            raise ValueError("unknown version")
        return cls(
            relay_id=str(obj["relay_id"]),
            relay=str(obj["relay"]),
            job_key=str(obj["job_key"]),
            resume_state=base64.b64decode(obj["resume_state"]),
            manifest_id=bytes.fromhex(obj["transfer_id"]),
            created=int(obj["created"]),
            recipients=tuple(obj["recipients"]),
            note=str(obj["note"]),
            dicom=dict(obj["dicom"]),
            files=tuple(FileStamp(**f) for f in obj["files"]),
            chunk_size=int(obj["chunk_size"]),
            size=int(obj["size"]),
            deid=dict(obj["deid"]) if obj.get("deid") is not None else None,
            chunk_hash=_chunk_hash(obj.get("chunk_hash", chunkhash.SHA256)),
        )


def job_key(relay: str, paths: list[Path], recipients: list[str], note: str,
            deid: dict[str, bool] | None = None) -> str:
    """What makes two `sealdrop send` runs "the same send": paths, recipients, note, relay,
    and the de-identification options if any (a plain send's key is unchanged)."""
    obj: dict[str, Any] = {
        "relay": relay,
        "paths": sorted(str(Path(p).absolute()) for p in paths),
        "to": sorted(recipients),
        "note": note,
    }
    if deid is not None:
        obj["deid"] = deid
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class Outbox:
    def __init__(self, home: Path, identity: SecretIdentity) -> None:
        self._home = Path(home)
        self.dir = self._home / OUTBOX_DIR
        self._identity = identity

    def _paths(self, relay_id: str) -> tuple[Path, Path]:
        return outbox_files(self._home, relay_id)

    def save(self, record: SendRecord) -> None:
        rec, log = self._paths(record.relay_id)
        try:
            write_sealed(rec, record.to_bytes(), self._identity)
            log.touch(mode=0o600, exist_ok=True)
        except OSError as exc:
            raise ClientError(f"cannot save the send state in {self.dir}: {exc.strerror}") from exc

    def load(self, path: Path) -> SendRecord | None:
        """The record in ``path``, or None if it is not ours or is damaged."""
        try:
            return SendRecord.from_bytes(read_sealed(path, self._identity, _MAX_RECORD))
        except (OSError, age.AgeError, ValueError, KeyError, TypeError):
            return None

    def records(self) -> list[SendRecord]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.glob(f"*{OUTBOX_RECORD}")):
            rec = self.load(p)
            if rec is not None:
                out.append(rec)
        return out

    def find(self, key: str) -> SendRecord | None:
        for rec in self.records():
            if rec.job_key == key:
                return rec
        return None

    def chunk_hashes(self, relay_id: str) -> list[str]:
        _, log = self._paths(relay_id)
        try:
            lines = log.read_text(encoding="ascii").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise ClientError(f"cannot read the send state {log}") from exc
        out = []
        for line in lines:
            if not _HEX64.match(line):
                break  # a torn last line from a crash mid-append
            out.append(line)
        return out

    def journal(self, relay_id: str, *, keep: int) -> ChunkJournal:
        """The chunk log, cut to its first ``keep`` entries, opened for appending.

        Holds the send's lock until ``close``; raises StoreLockedError if another
        process is uploading this send.
        """
        rec, log = self._paths(relay_id)
        with contextlib.ExitStack() as stack:
            stack.enter_context(locked(rec, wait=False))
            hashes = self.chunk_hashes(relay_id)[:keep]
            with atomic_output(log, mode=0o600) as f:
                f.write("".join(h + "\n" for h in hashes).encode("ascii"))
            journal = ChunkJournal(log, hold=stack.pop_all())
        return journal

    def remove(self, relay_id: str) -> None:
        rec, log = self._paths(relay_id)
        for p in (rec, log, lock_path(rec)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


class ChunkJournal:
    """The chunk log opened for appending; each line is on disk before it returns."""

    def __init__(self, path: Path, *, hold: contextlib.ExitStack | None = None) -> None:
        self._f = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._hold = hold or contextlib.ExitStack()  # the send's lock, released by close()

    def append(self, hex_digest: str) -> None:
        self._f.write(hex_digest.encode("ascii") + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            self._hold.close()
