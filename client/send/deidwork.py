"""The de-identified copies a `send --deidentify` seals, in a private work folder.

    scanned originals --(DICOM: PS3.15 profile, photos: metadata stripped,
                         others: linked as they are)--> <profile>/deid/<job key>/<top names>

Sealing streams files from disk and must know every size before the first
byte (plan.py), and a resumed send must regenerate the same ciphertext. So
the copies are written once, before the scan that plans the transfer, into a
folder of the profile (0700, files 0600) under the same top-level names, so
the names in the transfer are the sender's; the send record keeps the
pseudonym secret, and the folder lives as long as the record: a resumed send
seals the very same copies, and they are deleted when the send completes or
is cancelled. If the folder was lost meanwhile, the copies are made again with
the same secret (the output is deterministic) and the chunk log proves them.

Never an un-de-identified object by mistake: a DICOM file pydicom cannot read,
or a photo whose metadata cannot be removed, refuses the whole send and names
the file. A DICOMDIR (an index full of patient names, pointing at the original
file names) is left out. Other files (PDF, STL, …) are sent as they are, and
the caller is told so.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import os
import shutil
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..dicom.deidentify import (
    DeidError,
    DeidOptions,
    deidentify,
    identifying_words,
    name_identifies,
)
from ..dicom.header import BARE_DATA_SET
from ..dicom.photos import PhotoError, photo_kind, strip_metadata
from ..errors import SealError
from ..profile.layout import deid_folder
from .scan import DICOM, OPEN_FLAGS, ScannedFile

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
# A DICOM data set without the Part 10 preamble (older exports, no file
# extension) starts with a little-endian group 0008 (or 0002) element.
_RAW_DICOM_STARTS = (b"\x08\x00", b"\x02\x00")
_HINT = "leave this file out, or send without --deidentify if it may be sent as it is"
_MAX_LISTED = 3  # names shown in a one-line notice before "and N more"


@dataclass(frozen=True, slots=True)
class Copies:
    """The work folder's top-level paths (what to scan) and what the sender should know."""

    tops: tuple[Path, ...]
    dicom: int  # DICOM objects de-identified
    photos: int  # photos stripped of their metadata
    renamed: int  # DICOM files and photos whose names held the patient's name or id
    notices: tuple[str, ...]


def folder(home: Path, job_key: str) -> Path:
    return deid_folder(home, job_key)


def remove(home: Path, job_key: str) -> None:
    """Delete the work folder of ``job_key`` (nothing if there is none)."""
    shutil.rmtree(deid_folder(home, job_key), ignore_errors=True)


def make_copies(home: Path, job_key: str, originals: Sequence[ScannedFile],
                options: DeidOptions, secret: bytes) -> Copies:
    """Write the de-identified copies of ``originals`` afresh; the old folder goes first."""
    root = deid_folder(home, job_key)
    remove(home, job_key)
    try:
        root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        root.mkdir(mode=0o700)
        return _write(root, originals, options, secret)
    except BaseException:
        remove(home, job_key)
        raise


def restore_times(root: Path, stamps: Sequence[tuple[str, int]]) -> None:
    """Give regenerated copies the modification times the send record holds."""
    for arcname, mtime_ns in stamps:
        with contextlib.suppress(FileNotFoundError):
            os.utime(root / arcname, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def _write(root: Path, originals: Sequence[ScannedFile], options: DeidOptions,
           secret: bytes) -> Copies:
    tops: list[str] = []
    taken = {f.arcname for f in originals}
    dicom = photos = renamed = 0
    as_is: list[str] = []
    dropped: list[str] = []
    words: set[str] = set()
    handled: list[str] = []  # read as DICOM (named so, or a data set without preamble)
    for f in originals:
        top = f.arcname.split("/", 1)[0]
        if top not in tops:
            tops.append(top)
        if f.malformed is not None and f.malformed not in BARE_DATA_SET:
            # The scan sends such a file as an opaque one; de-identification
            # cannot vouch for a file it cannot read whole, so it refuses.
            raise SealError(f"cannot de-identify {f.path}: it looks like DICOM but cannot be "
                            f"read whole ({f.malformed}); nothing was sent", hint=_HINT)
        head, data = _read(f)
        kind = photo_kind(head)
        arcname = f.arcname
        ds = _parse(f, data) if _looks_dicom(f) else _parse_raw(head, data)
        if ds is not None:
            handled.append(f.arcname)
            out, found, sop_uid, is_dicomdir = _dicom(f, ds, options, secret)
            if is_dicomdir:
                dropped.append(f.arcname)
                continue
            words.update(found)
            if name_identifies(PurePosixPath(arcname).name, found):
                arcname = _neutral(arcname, sop_uid or _token(secret, arcname), ".dcm", taken)
                renamed += 1
            dicom += 1
        elif kind is not None:
            try:
                out = strip_metadata(data)
            except PhotoError as exc:
                raise SealError(f"cannot remove the metadata of {f.path}: {exc}",
                                hint="send it without --deidentify, or leave it out") from exc
            photos += 1
        else:
            _link_or_copy(f, root / arcname)
            as_is.append(arcname)
            continue
        _write_file(root / arcname, out)
    # The patient's name in a photo's or a folder's name: photos are renamed,
    # folders and other files only named to the sender (see docs/dicom.md).
    moved = _rename_photos(root, originals, tuple(sorted(words)), secret, taken)
    renamed += len(moved)
    notices = []
    if as_is:
        notices.append(f"not de-identified, sent as they are: {_listed(as_is)} "
                       "(check that their content names no patient)")
    if dropped:
        notices.append(f"left out: {_listed(dropped)} (a DICOMDIR indexes the original "
                       "patient names and files)")
    told = _identifying_names(originals, tuple(sorted(words)), [*dropped, *moved, *handled])
    if told:
        notices.append(f"these names in the transfer contain the patient's name or id and are "
                       f"sent as they are: {_listed(told)}")
    return Copies(tops=tuple(root / t for t in tops), dicom=dicom, photos=photos,
                  renamed=renamed, notices=tuple(notices))


def _read(f: ScannedFile) -> tuple[bytes, bytes]:
    """(first bytes, all bytes) of DICOM files and photos; (first bytes, b"") otherwise."""
    try:
        fd = os.open(f.path, OPEN_FLAGS)
    except OSError as exc:
        raise SealError(f"cannot open {f.path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
            raise SealError(f"{f.path} changed while the transfer was being prepared; send again")
        head = src.read(8)
        if not _looks_dicom(f) and photo_kind(head) is None \
                and not head.startswith(_RAW_DICOM_STARTS):
            return head, b""
        src.seek(0)
        return head, src.read()


def _looks_dicom(f: ScannedFile) -> bool:
    """Scanned as DICOM, or a bare data set (``header.BARE_DATA_SET``)."""
    return f.media_type == DICOM or f.malformed is not None


def _parse(f: ScannedFile, data: bytes) -> Dataset:
    """A file scanned as DICOM: read, without or (no preamble) with force; else refused."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return pydicom.dcmread(io.BytesIO(data))
            except InvalidDicomError:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
                if not _is_instance(ds):
                    raise
                return ds
    except (InvalidDicomError, ValueError, TypeError, KeyError, AttributeError, OSError,
            EOFError, NotImplementedError, OverflowError, IndexError) as exc:
        raise SealError(f"cannot de-identify {f.path}: pydicom cannot read it as DICOM; "
                        "nothing was sent", hint=_HINT) from exc


def _parse_raw(head: bytes, data: bytes) -> Dataset | None:
    """A file not named as DICOM that holds a data set without preamble, or None."""
    if not data or not head.startswith(_RAW_DICOM_STARTS):
        return None
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            return ds if _is_instance(ds) else None
    except Exception:  # noqa: BLE001 - not DICOM after all: sent as it is, with the notice
        return None


def _is_instance(ds: Dataset) -> bool:
    """Forced reading accepts garbage: a DICOM instance has at least its identifiers."""
    try:
        return any(str(ds.get(k, "") or "") for k in (
            "SOPInstanceUID", "StudyInstanceUID", "PatientName", "PatientID"))
    except Exception:  # noqa: BLE001 - a garbage element raised while decoded
        return False


def _dicom(f: ScannedFile, ds: Dataset, options: DeidOptions,
           secret: bytes) -> tuple[bytes, tuple[str, ...], str, bool]:
    """(de-identified bytes, the patient's identifying words, new SOP UID, is a DICOMDIR)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta else ""
    if sop_class == _DICOMDIR_CLASS:
        return b"", (), "", True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = identifying_words(ds)
            clean = deidentify(ds, options, secret)
            buf = io.BytesIO()
            clean.save_as(buf, enforce_file_format=True)
    except DeidError as exc:
        raise SealError(f"cannot de-identify {f.path}: {exc}; nothing was sent",
                        hint=_HINT) from exc
    except (ValueError, TypeError, KeyError, AttributeError, OSError, EOFError,
            NotImplementedError, OverflowError) as exc:
        raise SealError(f"cannot de-identify {f.path}: its de-identified copy is not a valid "
                        f"DICOM file ({exc}); nothing was sent", hint=_HINT) from exc
    return buf.getvalue(), found, str(clean.get("SOPInstanceUID", "") or ""), False


def _neutral(arcname: str, stem: str, suffix: str, taken: set[str]) -> str:
    """``arcname`` with its file name replaced by ``stem + suffix``, unique in the transfer."""
    parent = PurePosixPath(arcname).parent
    name = str(parent / f"{stem}{suffix}") if str(parent) != "." else f"{stem}{suffix}"
    n = 1
    candidate = name
    while candidate in taken:
        n += 1
        candidate = name[: -len(suffix)] + f"-{n}{suffix}"
    taken.add(candidate)
    return candidate


def _token(secret: bytes, arcname: str) -> str:
    mac = hmac.new(secret, b"name\x1f" + arcname.encode(), hashlib.sha256)
    return "deid-" + mac.hexdigest()[:16]


def _rename_photos(root: Path, originals: Sequence[ScannedFile], words: tuple[str, ...],
                   secret: bytes, taken: set[str]) -> list[str]:
    """Rename the photos whose names hold the patient's words; their original names."""
    moved: list[str] = []
    if not words:
        return moved
    for f in originals:
        if f.media_type == DICOM:
            continue
        path = root / f.arcname
        name = PurePosixPath(f.arcname).name
        if not path.is_file() or path.is_symlink() or not name_identifies(name, words):
            continue
        with open(path, "rb") as src:
            if photo_kind(src.read(8)) is None:
                continue
        suffix = PurePosixPath(name).suffix.lower() or ".jpg"
        new = _neutral(f.arcname, _token(secret, f.arcname), suffix, taken)
        path.rename(root / new)
        moved.append(f.arcname)
    return moved


def _identifying_names(originals: Sequence[ScannedFile], words: tuple[str, ...],
                       skip: Sequence[str]) -> list[str]:
    """Folders and other (not renamed) files whose names hold the patient's words."""
    if not words:
        return []
    seen: list[str] = []
    for f in originals:
        parts = PurePosixPath(f.arcname).parts
        for i, part in enumerate(parts[:-1]):
            path = "/".join(parts[: i + 1]) + "/"
            if path not in seen and name_identifies(part, words):
                seen.append(path)
        if f.arcname not in skip and f.media_type != DICOM \
                and name_identifies(parts[-1], words):
            seen.append(f.arcname)
    return seen


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _link_or_copy(f: ScannedFile, dst: Path) -> None:
    """A file sent as it is: a hard link where the filesystem allows, else a copy."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.link(f.path, dst, follow_symlinks=False)
        return
    except OSError:
        pass
    try:
        fd = os.open(f.path, OPEN_FLAGS)
        with os.fdopen(fd, "rb") as src, open(dst, "xb") as out:
            os.chmod(dst, 0o600)
            shutil.copyfileobj(src, out, 1024 * 1024)
    except OSError as exc:
        raise SealError(f"cannot prepare {f.path} for sending: {exc.strerror}") from exc



# --- the send record's side -------------------------------------------------------------

SWEEP_AFTER_S = 24 * 3600  # a folder this old without a send record is an orphan


def tops(home: Path, job_key: str) -> list[Path]:
    """What to scan: the work folder's top-level entries (names as in the transfer)."""
    root = deid_folder(home, job_key)
    return sorted(root.iterdir()) if root.is_dir() else []


def record_field(options: DeidOptions, secret: bytes,
                 originals: Sequence[ScannedFile]) -> dict[str, object]:
    """What the send record keeps to resume: the secret, the options, the originals' stamps."""
    return {"secret": base64.b64encode(secret).decode(), "options": options.to_json(),
            "sources": _sources(originals)}


def resumed_tops(home: Path, job_key: str, deid: dict[str, object] | None,
                 originals: Sequence[ScannedFile],
                 sent: Sequence[tuple[str, int]]) -> list[Path] | None:
    """The copies of an interrupted send, made again if their folder was lost.

    None if the originals changed since the send started (the caller cancels).
    ``sent``: (name in the transfer, mtime_ns) of each copy, from the record.
    """
    if deid is None or deid.get("sources") != _sources(originals):
        return None
    root = deid_folder(home, job_key)
    if not root.is_dir():
        secret = base64.b64decode(str(deid["secret"]))
        raw = deid.get("options")
        options = DeidOptions.from_json(raw if isinstance(raw, dict) else {})
        make_copies(home, job_key, originals, options, secret)
        restore_times(root, sent)
    return tops(home, job_key)


def sweep(home: Path, keep: set[str], now: float) -> None:
    """Delete work folders left by sends that never saved a record (killed early)."""
    base = deid_folder(home, "0" * 64).parent
    if not base.is_dir():
        return
    for entry in base.iterdir():
        if entry.name in keep or not entry.is_dir():
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > SWEEP_AFTER_S:
                shutil.rmtree(entry, ignore_errors=True)


def _sources(originals: Sequence[ScannedFile]) -> list[list[object]]:
    return [[f.arcname, str(f.path.absolute()), f.size, f.mtime_ns] for f in originals]
