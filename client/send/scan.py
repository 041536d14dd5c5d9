"""Scanning what is to be sent: walk the given paths, then look at each file once.

    paths --walk--> (name in the transfer, path) --scan--> ScannedFile
                                   open, fstat, first 132 bytes, DICOM header

The walk refuses symbolic links and special files anywhere, never following
them, and checks every name (NFC, safe, no two alike) before a byte is read.
A folder ``scans`` contributes ``scans/…`` names; empty folders carry no files
and are not transferred.

Then each file is opened once, never following a link: one fstat gives its
size and modification time, its first bytes its media type, and for DICOM
files the header (``sealdrop.client.dicom.header``) gives its study, series and
instance. A file that looks like DICOM (the ``DICM`` magic or a .dcm/.dicom
name) but cannot be read whole is *malformed*: it is sent as an opaque file
(application/octet-stream, left out of the summary) with a warning, or the
send is refused with ``--strict`` (``check_malformed``), before anything is
uploaded. Planning, the manifest's
DICOM summary, the resume stamps and sealing all use this one scan; sealing
reads the contents later and refuses a file whose size changed meanwhile.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto.container import NameSet, check_path
from sealdrop.crypto.errors import ContainerError

from ..dicom.header import DicomHeader, read_header
from ..dicom.integrity import Malformed
from ..errors import SealError

DICOM = "application/dicom"
OPAQUE = "application/octet-stream"
_MEDIA_TYPES = {
    ".dcm": DICOM,
    ".dicom": DICOM,
    ".stl": "model/stl",
    ".ply": "model/ply",  # not IANA-registered; the de-facto name
    ".obj": "model/obj",
    ".3mf": "model/3mf",
    ".pdf": "application/pdf",
    ".nii": "application/octet-stream",
    ".zip": "application/zip",
}
_DICOM_MAGIC_OFFSET = 128  # "DICM" after a 128-byte preamble (DICOM PS3.10)
_HEAD = _DICOM_MAGIC_OFFSET + 4
# Never follow a link; O_NONBLOCK so that a file swapped for a fifo after the
# walk cannot hang the open (it is refused by the fstat that follows).
OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
              | getattr(os, "O_NONBLOCK", 0))


@dataclass(frozen=True, slots=True)
class ScannedFile:
    arcname: str  # relative POSIX path in the transfer, NFC
    path: Path
    size: int
    mtime_ns: int
    media_type: str
    dicom: DicomHeader | None  # None: not DICOM, or malformed
    malformed: str | None = None  # why a file that looks like DICOM cannot be read


def media_type(name: str, head: bytes) -> str:
    """A media type from the name, or DICOM's ``DICM`` magic for extension-less files."""
    if head[_DICOM_MAGIC_OFFSET:_HEAD] == b"DICM":
        return DICOM
    ext = os.path.splitext(name)[1].lower()
    if ext in _MEDIA_TYPES:
        return _MEDIA_TYPES[ext]
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed and not encoding:
        return guessed
    return OPAQUE


def scan(paths: Iterable[Path | str]) -> list[ScannedFile]:
    """Walk ``paths`` (files and folders) and scan each file: sorted by name in the transfer."""
    found = sorted(_walk(paths), key=lambda item: item[0])
    if not found:
        raise SealError("nothing to send: no files were given (empty folders carry no files)")
    return [_scan_one(arcname, path) for arcname, path in found]


def _scan_one(arcname: str, path: Path) -> ScannedFile:
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        raise SealError(f"cannot open {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SealError(f"{path} changed while the transfer was being prepared; send again")
        try:
            head = f.read(_HEAD)
        except OSError as exc:
            raise SealError(f"cannot read {path}: {exc.strerror}") from exc
        mtype = media_type(arcname, head)
        header, malformed = None, None
        if mtype == DICOM:
            try:
                header = read_header(f, st.st_size)
            except Malformed as exc:
                mtype, malformed = OPAQUE, str(exc)
    return ScannedFile(arcname=arcname, path=path, size=st.st_size, mtime_ns=st.st_mtime_ns,
                       media_type=mtype, dicom=header, malformed=malformed)


def check_malformed(files: Iterable[ScannedFile], *, strict: bool,
                    warn: Callable[[str, str], None]) -> None:
    """Report each malformed file (``warn(name in the transfer, reason)``), or with
    ``strict`` refuse the send naming them, before anything reaches the relay."""
    bad = [f for f in files if f.malformed is not None]
    if strict and bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SealError(
            f"{first.arcname} looks like DICOM but cannot be read ({first.malformed}){more}; "
            "nothing was sent (--strict)",
            hint="send without --strict to send such files as opaque files, or remove them")
    for f in bad:
        warn(f.arcname, f.malformed or "")


def _walk(paths: Iterable[Path | str]) -> Iterator[tuple[str, Path]]:
    names = NameSet()
    for given in paths:
        top = Path(given)
        try:
            st = os.lstat(top)
        except OSError as exc:
            raise SealError(f"cannot read {top}: {exc.strerror}") from exc
        if stat.S_ISREG(st.st_mode):
            yield _checked(_arcname_of(top), top, names), top
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse_special(top, is_link=stat.S_ISLNK(st.st_mode))
        stack: list[tuple[Path, str]] = [(top, _arcname_of(top))]
        while stack:
            folder, prefix = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
            except OSError as exc:
                raise SealError(f"cannot read folder {folder}: {exc.strerror}") from exc
            for entry in entries:  # reverse-sorted onto a stack: visited in order
                p = Path(entry.path)
                arc = f"{prefix}/{entry.name}"
                # The entry's type, not a stat: the one stat is the scan's fstat.
                if entry.is_dir(follow_symlinks=False):
                    stack.append((p, arc))
                elif entry.is_file(follow_symlinks=False):
                    yield _checked(arc, p, names), p
                else:
                    raise _refuse_special(p, is_link=entry.is_symlink())


def _arcname_of(path: Path) -> str:
    name = path.name or path.resolve().name
    if not name:
        raise SealError(f"cannot send {path}: give a file or a named folder, not the root")
    return name


def _checked(arcname: str, path: Path, names: NameSet) -> str:
    arcname = unicodedata.normalize("NFC", arcname)
    try:
        check_path(arcname)
        names.add(arcname)
    except ContainerError as exc:
        raise SealError(f"cannot send {path}: {exc}") from exc
    return arcname


def _refuse_special(path: Path, *, is_link: bool) -> SealError:
    if is_link:
        return SealError(
            f"{path} is a symbolic link; sealdrop sends only regular files and folders",
            hint="send the file it points to instead",
        )
    return SealError(f"{path} is not a regular file or folder (device, fifo or socket)")
