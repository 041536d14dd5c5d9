"""Planning a transfer: everything that fixes its bytes, decided before the first byte.

The relay is told the exact ciphertext size when the transfer is created, and
an interrupted upload must regenerate the very same ciphertext. So before
sealing, the plan fixes the files (from the scan), their media types, the
recipients, the manifest id, the created time, the note and the DICOM summary,
and computes the archive's exact size; ``new_resume_state`` draws the age
file key, nonce and header once. Plan and resume state together determine
the ciphertext byte for byte (``seal.seal``). ``plan_new_transfer`` does all
of it for a new send; a resumed one re-plans from its send record.

The age recipients are the hybrid ML-KEM-768 + X25519 keys of the recipient
bundles; if post-quantum encryption is unavailable we fail rather than
quietly fall back to classical keys. ``classical=True`` (X25519 only) exists
for recovery with an age that predates PQ keys, and for interop tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sealdrop.crypto import age
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.container import predicted_size
from sealdrop.crypto.errors import BundleError, ManifestError
from sealdrop.crypto.manifest import FileEntry, Manifest, recipient_entries

from ..dicom.summary import summarise
from ..errors import SealError
from .scan import ScannedFile

Random = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class SealPlan:
    """Everything that fixes a transfer's bytes, decided before the first byte."""

    files: tuple[ScannedFile, ...]
    media_types: tuple[str, ...]
    recipient_bundles: tuple[KeyBundle, ...]
    manifest_id: bytes  # the id signed into the manifest (the replay check's key)
    created: int
    note: str
    dicom: Mapping[str, Any]
    archive_size: int

    def ciphertext_size(self, resume: age.ResumeState) -> int:
        return age.Encryptor.ciphertext_size(len(resume.header), self.archive_size)


def plan_transfer(
    files: Sequence[ScannedFile],
    sender: KeyBundle,
    recipient_bundles: Sequence[KeyBundle],
    *,
    note: str,
    manifest_id: bytes,
    created: int,
    dicom: Mapping[str, Any],
    media_types: Sequence[str],
) -> SealPlan:
    """Fix the transfer's contents and compute the exact archive size.

    ``media_types`` and ``dicom`` are passed, not taken from the scan: a
    resumed send must use the values pinned when it started. The manifest is
    built with placeholder digests: SHA-256 fields are fixed length hex, so its
    canonical length is already the final one.
    """
    placeholder = Manifest(
        transfer_id=manifest_id,
        created=created,
        sender=sender,
        recipients=recipient_entries(recipient_bundles),
        files=tuple(
            FileEntry(path=s.arcname, size=s.size, sha256=bytes(32), media_type=t)
            for s, t in zip(files, media_types, strict=True)
        ),
        note=note,
        dicom=dict(dicom),
    )
    try:
        manifest_size = len(placeholder.canonical_bytes())
    except ManifestError as exc:
        raise SealError(f"cannot build the manifest: {exc}") from exc
    size = predicted_size([(s.arcname, s.size) for s in files], manifest_size, mtime=created)
    return SealPlan(
        files=tuple(files),
        media_types=tuple(media_types),
        recipient_bundles=tuple(recipient_bundles),
        manifest_id=manifest_id,
        created=created,
        note=note,
        dicom=dict(dicom),
        archive_size=size,
    )


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


def age_recipients(bundles: Sequence[KeyBundle], *, classical: bool = False
                   ) -> list[age.Recipient]:
    """The age recipients of ``bundles``: post-quantum hybrid keys unless ``classical``."""
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


def plan_new_transfer(
    files: Sequence[ScannedFile],
    sender: KeyBundle,
    recipient_bundles: Sequence[KeyBundle],
    *,
    note: str,
    created: int,
    classical: bool = False,
    rand: Random = os.urandom,
) -> tuple[SealPlan, age.ResumeState]:
    """A new transfer's plan and resume state: a fresh manifest id, file key and
    header; media types and the DICOM summary from the scan."""
    recipients = age_recipients(recipient_bundles, classical=classical)
    plan = plan_transfer(
        files, sender, recipient_bundles, note=note, manifest_id=rand(16), created=created,
        dicom=summarise((f.arcname, f.dicom) for f in files),
        media_types=[f.media_type for f in files],
    )
    return plan, new_resume_state(recipients, rand)
