"""Sealing a transfer: walk the files, stream them as a signed tar into age.

    files/folders --> ContainerWriter (hash while streaming) --> age Encryptor --> dst

Each file is opened once (never following a link), checked to be the regular
file of the size the walk saw, and streamed in 1 MiB blocks: memory is flat in
the size of the transfer. Recipients are the hybrid ML-KEM-768 + X25519 keys of
their bundles; if post-quantum encryption is unavailable we fail rather than
quietly fall back to classical keys. ``classical=True`` (X25519 only) exists for
recovery with an age that predates PQ keys, and for interop tests.

Trust in the recipient bundles is the caller's decision (ContactStore.check_recipient).
"""

from __future__ import annotations

import mimetypes
import os
import stat
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealdrop.crypto import age
from sealdrop.crypto.age.stream import Writer
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.container import ContainerWriter, NameSet, check_path, predicted_size
from sealdrop.crypto.errors import BundleError, ContainerError, ManifestError
from sealdrop.crypto.identity import SecretIdentity
from sealdrop.crypto.manifest import FileEntry, Manifest, recipient_entries

from .errors import SealError

Random = Callable[[int], bytes]

_MEDIA_TYPES = {
    ".dcm": "application/dicom",
    ".dicom": "application/dicom",
    ".stl": "model/stl",
    ".ply": "model/ply",  # not IANA-registered; the de-facto name
    ".obj": "model/obj",
    ".3mf": "model/3mf",
    ".pdf": "application/pdf",
    ".nii": "application/octet-stream",
    ".zip": "application/zip",
}
_DICOM_MAGIC_OFFSET = 128


@dataclass(frozen=True, slots=True)
class SourceFile:
    arcname: str  # relative POSIX path in the transfer, NFC
    path: Path
    size: int


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


def _refuse_special(path: Path, mode: int) -> SealError:
    if stat.S_ISLNK(mode):
        return SealError(
            f"{path} is a symbolic link; sealdrop sends only regular files and folders",
            hint="send the file it points to instead",
        )
    return SealError(f"{path} is not a regular file or folder (device, fifo or socket)")


def collect_files(paths: Iterable[Path | str]) -> list[SourceFile]:
    """Walk ``paths`` (files and folders) into a sorted, checked list of files.

    A folder ``scans`` contributes ``scans/…`` paths; symbolic links and special
    files anywhere are refused, never followed. Empty folders carry no files and
    are not transferred.
    """
    out: list[SourceFile] = []
    names = NameSet()
    for given in paths:
        top = Path(given)
        try:
            st = os.lstat(top)
        except OSError as exc:
            raise SealError(f"cannot read {top}: {exc.strerror}") from exc
        if stat.S_ISREG(st.st_mode):
            out.append(SourceFile(_checked(_arcname_of(top), top, names), top, st.st_size))
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse_special(top, st.st_mode)
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
                est = entry.stat(follow_symlinks=False)
                arc = f"{prefix}/{entry.name}"
                if stat.S_ISDIR(est.st_mode):
                    stack.append((p, arc))
                elif stat.S_ISREG(est.st_mode):
                    out.append(SourceFile(_checked(arc, p, names), p, est.st_size))
                else:
                    raise _refuse_special(p, est.st_mode)
    if not out:
        raise SealError("nothing to send: no files were given (empty folders carry no files)")
    out.sort(key=lambda f: f.arcname)
    return out


def media_type(name: str, head: bytes) -> str:
    """A media type from the name, or DICOM's ``DICM`` magic for extension-less files."""
    if head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "application/dicom"
    ext = os.path.splitext(name)[1].lower()
    if ext in _MEDIA_TYPES:
        return _MEDIA_TYPES[ext]
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed and not encoding:
        return guessed
    return "application/octet-stream"


def age_recipients(bundles: Sequence[KeyBundle], *, classical: bool) -> list[age.Recipient]:
    if not bundles:
        raise SealError("no recipients given")
    if len({b.signing_key for b in bundles}) != len(bundles):
        raise SealError("the same recipient is listed twice")
    out: list[age.Recipient] = []
    for b in bundles:
        try:
            b.verify()
        except BundleError as exc:
            raise SealError(str(exc)) from exc
        key = b.x25519 if classical else b.pq
        try:
            r = age.parse_recipient(key)
        except age.RecipientError as exc:
            raise SealError(
                f"cannot encrypt to {b.handle!r}: {exc}; refusing to fall back to "
                "classical-only encryption"
            ) from exc
        if r.pq == classical:
            raise SealError(f"the key bundle of {b.handle!r} has the wrong key type")
        out.append(r)
    return out


def _open_source(src: SourceFile) -> Any:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(src.path, flags)
    except OSError as exc:
        raise SealError(f"cannot open {src.path}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != src.size:
        os.close(fd)
        raise SealError(f"{src.path} changed while the transfer was being prepared; send again")
    return os.fdopen(fd, "rb")


def seal_transfer(
    paths: Iterable[Path | str],
    sender_identity: SecretIdentity,
    recipient_bundles: Sequence[KeyBundle],
    note: str,
    dst_writer: Writer,
    now: int,
    rand: Random = os.urandom,
    *,
    classical: bool = False,
    dicom: Mapping[str, Any] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Write an age-encrypted, signed transfer of ``paths`` to ``dst_writer``.

    ``dst_writer`` receives ciphertext as it is made; on error it holds a
    partial file, so callers write to a temporary file (client.outfile).
    Returns the signed manifest.
    """
    files = collect_files(paths)
    recipients = age_recipients(recipient_bundles, classical=classical)
    transfer_id = rand(16)
    with age.Encryptor(dst_writer, recipients, rand=rand) as enc:
        container = ContainerWriter(enc, mtime=now)
        for src in files:
            with _open_source(src) as f:
                head = f.read(_DICOM_MAGIC_OFFSET + 4)
                f.seek(0)
                try:
                    container.add_file(src.arcname, f, src.size, media_type(src.arcname, head))
                except ContainerError as exc:
                    raise SealError(f"cannot send {src.path}: {exc}") from exc
            if on_progress is not None:
                on_progress(src.size)
        manifest = container.finish(
            signing_key=sender_identity.signing_key,
            sender=sender_identity.bundle,
            recipients=recipient_entries(recipient_bundles),
            transfer_id=transfer_id,
            created=now,
            note=note,
            dicom=dicom,
        )
    return manifest


# --- planned sealing (exact size first; resumable) ---------------------------------


class _Discard:
    def write(self, data: Any, /) -> int:
        return len(data)


def new_resume_state(recipients: Sequence[age.Recipient], rand: Random = os.urandom
                     ) -> age.ResumeState:
    """Draw the file key, nonce and header once, without encrypting anything yet.

    The header's size is needed to announce the exact ciphertext size; keeping
    the state lets an interrupted upload re-create the same ciphertext.
    """
    probe = age.Encryptor(_Discard(), recipients, rand=rand)
    state = probe.resume_state
    probe.close()  # encrypts nothing: an empty final chunk into the void
    return state


@dataclass(frozen=True, slots=True)
class SealPlan:
    """Everything that fixes a transfer's bytes, decided before the first byte."""

    files: tuple[SourceFile, ...]
    media_types: tuple[str, ...]
    recipient_bundles: tuple[KeyBundle, ...]
    transfer_id: bytes
    created: int
    note: str
    dicom: Mapping[str, Any]
    archive_size: int

    def ciphertext_size(self, resume: age.ResumeState) -> int:
        return age.Encryptor.ciphertext_size(len(resume.header), self.archive_size)


def plan_transfer(
    files: Sequence[SourceFile],
    sender: KeyBundle,
    recipient_bundles: Sequence[KeyBundle],
    *,
    note: str,
    transfer_id: bytes,
    created: int,
    dicom: Mapping[str, Any] | None = None,
    media_types: Sequence[str] | None = None,
) -> SealPlan:
    """Fix the transfer's contents and compute the exact archive size.

    The manifest is built with placeholder digests: SHA-256 fields are fixed
    length hex, so its canonical length is already the final one.
    """
    if media_types is None:
        types: list[str] = []
        for src in files:
            with _open_source(src) as f:
                types.append(media_type(src.arcname, f.read(_DICOM_MAGIC_OFFSET + 4)))
        media_types = types
    placeholder = Manifest(
        transfer_id=transfer_id,
        created=created,
        sender=sender,
        recipients=recipient_entries(recipient_bundles),
        files=tuple(
            FileEntry(path=s.arcname, size=s.size, sha256=bytes(32), media_type=t)
            for s, t in zip(files, media_types, strict=True)
        ),
        note=note,
        dicom=dict(dicom or {}),
    )
    try:
        manifest_size = len(placeholder.canonical_bytes())
    except ManifestError as exc:
        raise SealError(f"cannot build the manifest: {exc}") from exc
    size = predicted_size(
        [(s.arcname, s.size) for s in files], manifest_size, mtime=created
    )
    return SealPlan(
        files=tuple(files),
        media_types=tuple(media_types),
        recipient_bundles=tuple(recipient_bundles),
        transfer_id=transfer_id,
        created=created,
        note=note,
        dicom=dict(dicom or {}),
        archive_size=size,
    )


def seal_planned(
    plan: SealPlan,
    sender_identity: SecretIdentity,
    dst_writer: Writer,
    resume: age.ResumeState,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Seal exactly what ``plan`` fixed, with the header and key of ``resume``.

    Deterministic: the same plan, files and state give the same ciphertext,
    byte for byte, which is what makes an interrupted upload resumable.
    """
    with age.Encryptor(dst_writer, [], resume=resume) as enc:
        container = ContainerWriter(enc, mtime=plan.created)
        for src, mtype in zip(plan.files, plan.media_types, strict=True):
            with _open_source(src) as f:
                try:
                    container.add_file(src.arcname, _Counting(f, on_progress), src.size, mtype)
                except ContainerError as exc:
                    raise SealError(f"cannot send {src.path}: {exc}") from exc
        manifest = container.finish(
            signing_key=sender_identity.signing_key,
            sender=sender_identity.bundle,
            recipients=recipient_entries(plan.recipient_bundles),
            transfer_id=plan.transfer_id,
            created=plan.created,
            note=plan.note,
            dicom=plan.dicom,
        )
    return manifest


class _Counting:
    """A reader reporting how many plaintext bytes went by (for progress bars)."""

    def __init__(self, src: Any, report: Callable[[int], None] | None) -> None:
        self._src = src
        self._report = report

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._src.read(n)
        if self._report is not None and data:
            self._report(len(data))
        return data
