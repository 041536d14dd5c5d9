"""Helpers for transfer tests: deterministic identities and hand-built (hostile) archives.

``build_archive`` writes tar members byte by byte, so a test can produce any
archive a hostile sender or relay could: links, devices, traversal names,
extra or missing members, a manifest that lies, a signature by someone else.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sealdrop.crypto import age
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.container import BLOCK, padded_size
from sealdrop.crypto.identity import SecretIdentity
from sealdrop.crypto.manifest import FileEntry, Manifest, RecipientEntry, sign_manifest

MTIME = 1_718_000_000


def det_rand(seed: bytes | str = b"sealdrop") -> Callable[[int], bytes]:
    """A deterministic ``rand`` (SHA-256 in counter mode)."""
    key = seed.encode() if isinstance(seed, str) else seed
    counter = 0

    def rand(n: int) -> bytes:
        nonlocal counter
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(key + counter.to_bytes(8, "big")).digest()
            counter += 1
        return bytes(out[:n])

    return rand

TRANSFER_ID = bytes(range(16))


@functools.cache
def identity(handle: str, created: int = 1_700_000_000) -> SecretIdentity:
    """A deterministic identity per handle (cached: PQ keygen is not free)."""
    return SecretIdentity.generate(handle=handle, created=created, rand=det_rand(handle))


def raw_member(
    name: str,
    data: bytes = b"",
    *,
    type: bytes = tarfile.REGTYPE,
    linkname: str = "",
    size: int | None = None,
    pax: dict[str, str] | None = None,
    fmt: int = tarfile.PAX_FORMAT,
) -> bytes:
    """One tar member: header(s), data, block padding. ``size`` may lie about ``data``."""
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.size = len(data) if size is None else size
    info.mtime = MTIME
    info.mode = 0o644
    if pax:
        info.pax_headers = dict(pax)
    head = info.tobuf(fmt, "utf-8", "surrogateescape")
    return head + data + bytes(-len(data) % BLOCK)


def entry(path: str, data: bytes, media_type: str = "application/octet-stream") -> FileEntry:
    return FileEntry(
        path=path, size=len(data), sha256=hashlib.sha256(data).digest(), media_type=media_type
    )


def recipients_of(*idents: SecretIdentity) -> tuple[RecipientEntry, ...]:
    return tuple(RecipientEntry(handle=i.handle, signing_key=i.signing_public_key) for i in idents)


def make_manifest(
    files: Sequence[FileEntry],
    sender: SecretIdentity,
    recipients: Sequence[RecipientEntry],
    *,
    transfer_id: bytes = TRANSFER_ID,
    note: str = "",
    sender_bundle: KeyBundle | None = None,
) -> Manifest:
    return Manifest(
        transfer_id=transfer_id,
        created=MTIME,
        sender=sender_bundle or sender.bundle,
        recipients=tuple(recipients),
        files=tuple(files),
        note=note,
        dicom={},
    )


@dataclass
class Archive:
    """An archive under construction: members, then manifest, sig and padding."""

    members: list[bytes] = field(default_factory=list)
    manifest: bytes = b""
    sig: bytes = b""
    after: list[bytes] = field(default_factory=list)  # members after manifest.sig
    trailer: bytes | None = None  # None: the standard padded end marker

    def to_bytes(self) -> bytes:
        body = b"".join(self.members)
        if self.manifest or self.sig:
            body += raw_member("manifest.json", self.manifest)
            body += raw_member("manifest.sig", self.sig)
        body += b"".join(self.after)
        if self.trailer is not None:
            return body + self.trailer
        return body + bytes(padded_size(len(body)) - len(body))


def build_archive(
    files: Sequence[tuple[str, bytes]],
    *,
    sender: SecretIdentity,
    recipients: Sequence[SecretIdentity],
    signer: SecretIdentity | None = None,
    transfer_id: bytes = TRANSFER_ID,
    note: str = "",
) -> tuple[Archive, Manifest]:
    """A well-formed archive of ``files`` (path, data), signed by ``signer`` (default sender)."""
    entries = [entry(p, d) for p, d in files]
    manifest = make_manifest(
        entries, sender, recipients_of(*recipients), transfer_id=transfer_id, note=note
    )
    arch = Archive(members=[raw_member("files/" + p, d) for p, d in files])
    arch.manifest, arch.sig = sign_with(manifest, signer or sender)
    return arch, manifest


def sign_with(manifest: Manifest, signer: SecretIdentity) -> tuple[bytes, bytes]:
    """Canonical bytes and a signature by ``signer`` (even if not the manifest's sender)."""
    data = manifest.canonical_bytes()
    if signer.signing_public_key == manifest.sender.signing_key:
        return sign_manifest(manifest, signer.signing_key)
    from sealdrop.crypto.manifest import signature_message

    return data, signer.signing_key.sign(signature_message(data)).signature


def encrypt_to(plain: bytes, *idents: SecretIdentity, classical: bool = False) -> bytes:
    rcpts: list[age.Recipient] = [
        age.parse_recipient(i.bundle.x25519 if classical else i.bundle.pq) for i in idents
    ]
    out = io.BytesIO()
    age.encrypt(io.BytesIO(plain), out, rcpts, rand=det_rand("encrypt"))
    return out.getvalue()
