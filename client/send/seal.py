"""Sealing a planned transfer: stream its files as a signed tar into age.

    plan + resume state --> ContainerWriter (hash while streaming) --> age Encryptor --> dst

The one way a transfer is sealed, whether it goes to the relay (``flow``,
through the chunk uploader) or to a file. Each file is opened once more,
never following a link, checked to be the regular file of the size the scan
saw, and streamed in blocks: memory is flat in the size of the transfer.
Deterministic: the same plan, files and resume state give the same
ciphertext, byte for byte, which is what makes an interrupted upload
resumable. Trust in the recipient bundles is the caller's decision
(``recipients``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from sealdrop.crypto import age
from sealdrop.crypto.age.stream import Writer
from sealdrop.crypto.container import ContainerWriter
from sealdrop.crypto.errors import ContainerError
from sealdrop.crypto.identity import SecretIdentity
from sealdrop.crypto.manifest import Manifest, recipient_entries

from ..errors import SealError
from .plan import SealPlan
from .scan import OPEN_FLAGS

# 2 MiB batches (age.stream's default is 4 MiB): the encryptor keeps four, and
# the upload pool three 12 MiB chunks besides; halving the batches saves 16 MiB
# of a send's RSS budget (150 MB) at no measurable CPU cost (docs/architecture.md).
SEAL_BATCH_CHUNKS = 32


def seal(
    plan: SealPlan,
    sender_identity: SecretIdentity,
    dst_writer: Writer,
    resume: age.ResumeState,
) -> Manifest:
    """Seal exactly what ``plan`` fixed, with the header and key of ``resume``.

    ``dst_writer`` receives ciphertext as it is made; on error it holds a
    partial transfer. Returns the signed manifest.
    """
    with age.Encryptor(dst_writer, [], resume=resume, batch_chunks=SEAL_BATCH_CHUNKS) as enc:
        container = ContainerWriter(enc, mtime=plan.created)
        for src, mtype in zip(plan.files, plan.media_types, strict=True):
            with _open_source(src.path, src.size) as f:
                try:
                    container.add_file(src.arcname, f, src.size, mtype)
                except ContainerError as exc:
                    raise SealError(f"cannot send {src.path}: {exc}") from exc
        manifest = container.finish(
            signing_key=sender_identity.signing_key,
            sender=sender_identity.bundle,
            recipients=recipient_entries(plan.recipient_bundles),
            transfer_id=plan.manifest_id,
            created=plan.created,
            note=plan.note,
            dicom=plan.dicom,
        )
    return manifest


def _open_source(path: Path, size: int) -> BinaryIO:
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        raise SealError(f"cannot open {path}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        os.close(fd)
        raise SealError(f"{path} changed while the transfer was being prepared; send again")
    return os.fdopen(fd, "rb")

