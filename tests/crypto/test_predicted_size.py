"""ContainerWriter's size is known before writing: predicted_size is exact."""

from __future__ import annotations

import io

import pytest

from sealdrop.crypto.container import BLOCK, ContainerWriter, predicted_size
from sealdrop.crypto.manifest import FileEntry, Manifest, recipient_entries
from tests.crypto.transferkit import MTIME, TRANSFER_ID, identity

ALICE = identity("alice.clinic")
BOB = identity("bob.lab")

SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 65536, 100_000]
NAMES = [
    "a.dcm",
    "CBCT/IM0001",
    "Cas Müller/prescription ©.pdf",
    "x" * 99 + ".stl",  # just past ustar's 100-byte name field with the prefix
    "/".join(["niveau"] * 60) + "/deep.obj",  # needs a pax path record
]


def _placeholder_len(files: list[tuple[str, int]], note: str) -> int:
    m = Manifest(
        transfer_id=TRANSFER_ID, created=MTIME, sender=ALICE.bundle,
        recipients=recipient_entries([BOB.bundle]),
        files=tuple(FileEntry(path=p, size=s, sha256=bytes(32), media_type="application/x")
                    for p, s in files),
        note=note,
    )
    return len(m.canonical_bytes())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_prediction_is_exact(name: str, size: int) -> None:
    files = [(name, size), ("second/file.bin", size // 3 + 7)]
    note = "Bitte Zahn 36 — ✓"
    out = io.BytesIO()
    w = ContainerWriter(out, mtime=MTIME)
    for path, n in files:
        w.add_file(path, io.BytesIO(bytes([7]) * n), n, "application/x")
    w.finish(signing_key=ALICE.signing_key, sender=ALICE.bundle,
             recipients=recipient_entries([BOB.bundle]), transfer_id=TRANSFER_ID,
             created=MTIME, note=note)
    assert predicted_size(files, _placeholder_len(files, note), mtime=MTIME) == len(out.getvalue())


def test_prediction_grows_with_the_manifest() -> None:
    files = [("a", 10)]
    small = predicted_size(files, 100, mtime=MTIME)
    assert predicted_size(files, 100_000, mtime=MTIME) > small
    assert small % BLOCK == 0
