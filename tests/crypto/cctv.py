"""Loader for the C2SP CCTV age test vectors (format in their header lines)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

# Vendored from C2SP/CCTV (age/testdata), 0BSD: see tests/vectors/LICENSE.
VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "age"


@dataclass(frozen=True)
class Vector:
    name: str
    expect: str
    payload_sha256: str | None
    file_key: bytes | None
    identities: tuple[str, ...]
    passphrases: tuple[str, ...]
    armored: bool
    body: bytes


def load(path: Path) -> Vector:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode("utf-8").splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    if fields.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    elif "compressed" in fields:
        raise ValueError(f"{path.name}: unknown compression {fields['compressed']}")
    return Vector(
        name=path.name,
        expect=fields["expect"][0],
        payload_sha256=fields.get("payload", [None])[0],
        file_key=bytes.fromhex(fields["file key"][0]) if "file key" in fields else None,
        identities=tuple(fields.get("identity", [])),
        passphrases=tuple(fields.get("passphrase", [])),
        armored=fields.get("armored") == ["yes"],
        body=body,
    )


def all_vectors() -> list[Vector]:
    return [load(p) for p in sorted(VECTOR_DIR.iterdir()) if p.is_file()]
