"""The transfer archive: a POSIX (pax) tar stream of files, manifest and signature.

Layout (docs/container.md)::

    files/<path>      one regular-file member per file, in manifest order
    manifest.json     the canonical manifest (crypto.manifest)
    manifest.sig      its 64-byte Ed25519 signature
    zero blocks       the tar end marker, padded to a PADMÉ size bucket

The manifest comes last so that the sender reads each file exactly once, hashing
it as it streams. So the reader cannot trust anything until the end: it hands
each member out as a bounded stream (for the caller to stage, never to place),
hashes it on the way, and only when the signed manifest arrives checks that the
archive holds exactly the manifest's files, in order, with their sizes and
SHA-256. The reader parses every header itself: only regular files, only under
``files/``, with names that cannot escape or collide; anything a sealdrop sender
never writes is refused rather than interpreted.
"""

from __future__ import annotations

import hashlib
import tarfile
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from nacl.signing import SigningKey

from .age.stream import Reader, Writer, read_full
from .bundle import KeyBundle
from .errors import (
    ContainerError,
    HostileArchiveError,
    IntegrityError,
    ManifestError,
    UnsafePathError,
)
from .manifest import (
    MAX_FILES,
    MAX_MANIFEST_SIZE,
    SIGNATURE_SIZE,
    TRANSFER_ID_SIZE,
    FileEntry,
    Manifest,
    RecipientEntry,
    sign_manifest,
    verify_manifest,
)

BLOCK = 512
FILES_PREFIX = "files/"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
_MAX_PAX = 64 * 1024
_MAX_SIZE_DIGITS = 20
# Keys a pax header may carry. Anything else (linkpath, GNU.sparse.*, hdrcharset,
# ...) is something we never write and will not interpret.
_PAX_KEYS = {"path", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"}
_IO_BLOCK = 1 << 20
_HASH_BLOCK = 256 << 10
_ZERO_BLOCK = bytes(BLOCK)
_END_MARKER = 2 * BLOCK
# tar writers may round the archive up to a 10 KiB record; allow that on top of
# our own padding so a reader never has to trust an unbounded run of zeros.
_RECORD = 20 * BLOCK
_TYPE_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
    tarfile.DIRTYPE: "a directory",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_LONGNAME: "a GNU long-name record",
    tarfile.GNUTYPE_LONGLINK: "a GNU long-link record",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.XGLTYPE: "a global pax header",
}


# --- names ----------------------------------------------------------------------


def check_path(path: str) -> str:
    """Validate a file's relative path (without ``files/``); returns it unchanged.

    Refused: empty, absolute, ``.``/``..``/empty components, backslashes, colons
    (drive letters and streams on Windows), control characters, names not in
    Unicode NFC, over-long names.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError("a file name is empty")
    shown = repr(path)[:200]
    if "\x00" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise UnsafePathError(f"file name {shown} contains control characters")
    if path.startswith("/"):
        raise UnsafePathError(f"file name {shown} is an absolute path")
    if "\\" in path or ":" in path:
        raise UnsafePathError(f"file name {shown} contains '\\' or ':' (unsafe on Windows)")
    if unicodedata.normalize("NFC", path) != path:
        raise UnsafePathError(f"file name {shown} is not in Unicode NFC form")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafePathError(f"file name {shown} is not valid Unicode") from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise UnsafePathError(f"file name {shown} is longer than {MAX_PATH_BYTES} bytes")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(
                f"file name {shown} has an empty, '.' or '..' component (path traversal)"
            )
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(f"file name {shown} has a component over 255 bytes")
    return path


def collision_key(path: str) -> str:
    """Names equal under this key would land on the same file on some filesystem."""
    return unicodedata.normalize("NFC", path).casefold()


class NameSet:
    """Refuses duplicates, case/NFC collisions, and a file where a folder must be."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._dirs: set[str] = set()

    def add(self, path: str) -> None:
        key = collision_key(path)
        if key in self._files:
            raise UnsafePathError(f"file name {path!r} appears twice (or differs only in case)")
        if key in self._dirs:
            raise UnsafePathError(f"file name {path!r} is also used as a folder name")
        parts = key.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in self._files:
                raise UnsafePathError(f"file name {path!r} uses a file name as a folder")
            self._dirs.add(parent)
        self._files.add(key)


# --- padding --------------------------------------------------------------------


def padme(length: int) -> int:
    """PADMÉ (Nikitin et al., 2019): round up, leaking O(log log L) bits, at most +12%."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def padded_size(content_length: int) -> int:
    """Total archive size for ``content_length`` bytes of members: end marker, PADMÉ, 512."""
    target = padme(content_length + _END_MARKER)
    return -(-target // BLOCK) * BLOCK


def _block_pad(n: int) -> int:
    return -n % BLOCK


def predicted_size(
    members: Sequence[tuple[str, int]], manifest_size: int, *, mtime: int
) -> int:
    """The exact size of the archive ContainerWriter will write, before writing it.

    ``members`` are the (path, size) of the files in order; ``manifest_size`` the
    length of the canonical manifest (its SHA-256 fields are fixed-length hex, so
    a manifest built with placeholder digests has the final length). Why exact:
    the relay is told the ciphertext size before the first byte is uploaded, and
    streaming leaves no second chance to learn it.
    """
    total = 0
    for path, size in members:
        total += len(_header(FILES_PREFIX + path, size, mtime)) + size + _block_pad(size)
    for name, size in ((MANIFEST_NAME, manifest_size), (SIGNATURE_NAME, SIGNATURE_SIZE)):
        total += len(_header(name, size, mtime)) + size + _block_pad(size)
    return padded_size(total)


# --- writer ---------------------------------------------------------------------


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


class _HashingReader:
    """At most ``left`` bytes of ``src``, hashed into ``digest`` as they are read in
    place. Reads are capped at 256 KiB: the block is hashed while it is still in
    the CPU's cache (1 GiB copied out of the page cache in 4 MiB reads also cost
    3x the system time of 64 KiB reads, measured: crypto.age.stream)."""

    def __init__(self, src: Reader, left: int, digest: Any) -> None:
        self._readinto = src.readinto  # type: ignore[attr-defined]
        self.left = left
        self._digest = digest

    def readinto(self, buf: memoryview) -> int:
        view = buf[: min(len(buf), self.left, _HASH_BLOCK)]
        if not view:
            return 0
        n = int(self._readinto(view) or 0)
        if n:
            self._digest.update(view[:n])
            self.left -= n
        return n


class ContainerWriter:
    """Streams a transfer archive into ``dst`` (e.g. an age Encryptor).

    ``add_file`` reads each file once, in blocks, hashing as it writes;
    ``finish`` appends the signed manifest and the padding. Memory stays flat.
    """

    def __init__(self, dst: Writer, *, mtime: int) -> None:
        self._dst = dst
        self._mtime = mtime
        self._written = 0
        self._files: list[FileEntry] = []
        self._names = NameSet()
        self._finished = False

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return tuple(self._files)

    def _write(self, data: bytes) -> None:
        self._dst.write(data)
        self._written += len(data)

    def add_file(self, path: str, reader: Reader, size: int, media_type: str) -> FileEntry:
        """Stream exactly ``size`` bytes of ``reader`` as ``files/<path>``.

        The size goes in the header before the data, so a file that shrinks or
        grows while being read is an error, not a silently different transfer.
        """
        if self._finished:
            raise ContainerError("the archive is already finished")
        if len(self._files) >= MAX_FILES:
            raise ContainerError(f"a transfer holds at most {MAX_FILES} files")
        check_path(path)
        if not isinstance(size, int) or size < 0:
            raise ContainerError(f"invalid size for {path!r}")
        self._names.add(path)
        self._write(_header(FILES_PREFIX + path, size, self._mtime))
        digest = hashlib.sha256()
        write_from = getattr(self._dst, "write_from", None)
        if write_from is not None and hasattr(reader, "readinto"):
            # Read straight into the encryptor's buffers and hash there: no
            # bytes object per block and no copy (docs/architecture.md).
            counted = _HashingReader(reader, size, digest)
            self._written += write_from(counted)
            left = counted.left
        else:
            left = size
            while left:
                data = reader.read(min(left, _IO_BLOCK))
                if not data:
                    break
                digest.update(data)
                self._write(data)
                left -= len(data)
        if left:
            raise ContainerError(f"{path!r} became shorter while it was being sent; send it again")
        if reader.read(1):
            raise ContainerError(f"{path!r} grew while it was being sent; send it again")
        self._write(bytes(_block_pad(size)))
        entry = FileEntry(path=path, size=size, sha256=digest.digest(), media_type=media_type)
        self._files.append(entry)
        return entry

    def finish(
        self,
        *,
        signing_key: SigningKey,
        sender: KeyBundle,
        recipients: Sequence[RecipientEntry],
        transfer_id: bytes,
        created: int,
        note: str = "",
        dicom: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Write manifest.json, manifest.sig and the padded end marker."""
        if self._finished:
            raise ContainerError("the archive is already finished")
        if len(transfer_id) != TRANSFER_ID_SIZE:
            raise ManifestError("a transfer id is 16 random bytes")
        manifest = Manifest(
            transfer_id=transfer_id,
            created=created,
            sender=sender,
            recipients=tuple(recipients),
            files=tuple(self._files),
            note=note,
            dicom=dict(dicom or {}),
        )
        data, sig = sign_manifest(manifest, signing_key)
        for name, body in ((MANIFEST_NAME, data), (SIGNATURE_NAME, sig)):
            self._write(_header(name, len(body), self._mtime))
            self._write(body)
            self._write(bytes(_block_pad(len(body))))
        total = padded_size(self._written)
        pad = total - self._written
        while pad:
            n = min(pad, _IO_BLOCK)
            self._write(bytes(n))
            pad -= n
        self._finished = True
        return manifest


# --- reader ---------------------------------------------------------------------


def _parse_pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos, pos + 20)
        if sp < 0 or not data[pos:sp].isdigit():
            raise HostileArchiveError("malformed pax header record")
        length = int(data[pos:sp])
        record = data[pos : pos + length]
        if length <= sp - pos + 1 or len(record) != length or not record.endswith(b"\n"):
            raise HostileArchiveError("malformed pax header record")
        key_b, eq, value_b = record[sp - pos + 1 : -1].partition(b"=")
        if not eq:
            raise HostileArchiveError("malformed pax header record")
        try:
            key, value = key_b.decode("utf-8"), value_b.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HostileArchiveError("pax header is not valid UTF-8") from exc
        if key not in _PAX_KEYS:
            raise HostileArchiveError(f"unsupported pax header field {key!r}")
        if key in out:
            raise HostileArchiveError(f"pax header field {key!r} appears twice")
        out[key] = value
        pos += length
    return out


class Member:
    """One file of the archive: read it to the end before asking for the next."""

    def __init__(self, reader: ContainerReader, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self._reader = reader
        self._left = size
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at most 1 MiB a call, whatever ``n``); b"" only at the end.

        The cap keeps memory flat even if a hostile header announces a huge member.
        """
        if self._left == 0:
            return b""
        want = min(self._left, _IO_BLOCK) if n < 0 else min(n, self._left, _IO_BLOCK)
        data = read_full(self._reader.src, want)
        if len(data) != want:
            raise ContainerError(f"the archive is truncated inside {self.path!r}")
        self._left -= len(data)
        self._hash.update(data)
        self._reader.offset += len(data)
        return data

    def read_view(self, n: int = _IO_BLOCK) -> memoryview:
        """Up to ``n`` bytes as a view valid until the next read; empty only at the end.

        Without a copy when the source can lend its buffer (an age Decryptor's
        ``read_view``): receiving hashes and writes each run straight from the
        decrypted batch.
        """
        if self._left == 0:
            return memoryview(b"")
        lend = getattr(self._reader.src, "read_view", None)
        if lend is None:
            return memoryview(self.read(n))
        data: memoryview = lend(min(n, self._left))
        if not data:
            raise ContainerError(f"the archive is truncated inside {self.path!r}")
        self._left -= len(data)
        self._hash.update(data)
        self._reader.offset += len(data)
        return data

    def _drain(self) -> None:
        while self._left:
            self.read(_IO_BLOCK)

    def sha256(self) -> bytes:
        return self._hash.digest()


class ContainerReader:
    """Reads a transfer archive from ``src`` (e.g. an age Decryptor), one member at a time.

    Iterate ``members()``; each yielded Member must be consumed (it is drained
    if not) before the next. When iteration ends normally, ``manifest`` is the
    signature-checked manifest and every member has matched it. Until then the
    members are unverified and must only be staged.
    """

    def __init__(self, src: Reader) -> None:
        self.src = src
        self.offset = 0
        self._manifest: Manifest | None = None
        self._seen: list[tuple[str, int, bytes]] = []
        self._names = NameSet()
        self._started = False

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            raise ContainerError("the archive has not been read to its end")
        return self._manifest

    def _read_exact(self, n: int, what: str) -> bytes:
        data = read_full(self.src, n)
        if len(data) != n:
            raise ContainerError(f"the archive is truncated in {what}")
        self.offset += n
        return data

    def _skip_block_pad(self, size: int, what: str) -> None:
        pad = self._read_exact(_block_pad(size), what)
        if pad.count(0) != len(pad):
            raise HostileArchiveError(f"hidden data in the block padding after {what}")

    def _next_header(self) -> tuple[str, int] | None:
        """Return (name, size) of the next regular file, or None at the end marker."""
        block = self._read_exact(BLOCK, "a member header")
        if block == _ZERO_BLOCK:
            return None
        pax: dict[str, str] = {}
        info = self._parse_header(block)
        if info.type == tarfile.XHDTYPE:
            if not 0 < info.size <= _MAX_PAX:
                raise HostileArchiveError("pax header is empty or too large")
            pax = _parse_pax(self._read_exact(info.size, "a pax header"))
            self._skip_block_pad(info.size, "a pax header")
            block = self._read_exact(BLOCK, "a member header")
            if block == _ZERO_BLOCK:
                raise HostileArchiveError("a pax header is not followed by a member")
            info = self._parse_header(block)
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            what = _TYPE_NAMES.get(info.type, f"a member of type {info.type!r}")
            raise HostileArchiveError(
                f"archive member {info.name[:200]!r} is {what}; only regular files are allowed"
            )
        if info.linkname:
            raise HostileArchiveError(f"archive member {info.name[:200]!r} carries a link target")
        name = pax.get("path", info.name)
        size = info.size
        if "size" in pax:
            # 20 digits hold any size a file system has; more would also trip
            # Python's int() digit limit with a ValueError instead of a refusal.
            text = pax["size"]
            if not text.isascii() or not text.isdigit() or len(text) > _MAX_SIZE_DIGITS:
                raise HostileArchiveError("malformed size in a pax header")
            size = int(pax["size"])
        if size < 0:
            raise HostileArchiveError(f"archive member {name[:200]!r} has a negative size")
        return name, size

    @staticmethod
    def _parse_header(block: bytes) -> tarfile.TarInfo:
        try:
            return tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except (tarfile.HeaderError, UnicodeDecodeError, ValueError) as exc:
            raise HostileArchiveError(
                f"malformed tar header ({exc}); the transfer is damaged or hostile"
            ) from exc

    def members(self) -> Iterator[Member]:
        if self._started:
            raise ContainerError("the archive can only be read once")
        self._started = True
        while True:
            head = self._next_header()
            if head is None:
                raise ContainerError(
                    "the archive ends without a manifest; the transfer is incomplete or damaged"
                )
            name, size = head
            if name == MANIFEST_NAME:
                self._read_manifest(size)
                return
            if name == SIGNATURE_NAME:
                raise HostileArchiveError("manifest.sig comes before manifest.json")
            if not name.startswith(FILES_PREFIX):
                check_path(name)  # a traversal attempt gets the more precise message
                raise UnsafePathError(
                    f"archive member {name[:200]!r} is outside the files/ folder"
                )
            path = check_path(name[len(FILES_PREFIX) :])
            if len(self._seen) >= MAX_FILES:
                raise HostileArchiveError(f"the archive holds more than {MAX_FILES} files")
            self._names.add(path)
            member = Member(self, path, size)
            yield member
            member._drain()
            self._skip_block_pad(size, repr(path))
            self._seen.append((path, size, member.sha256()))

    def _read_manifest(self, size: int) -> None:
        if size > MAX_MANIFEST_SIZE:
            raise HostileArchiveError("manifest.json is larger than any real manifest")
        data = self._read_exact(size, "manifest.json")
        self._skip_block_pad(size, "manifest.json")
        head = self._next_header()
        if head is None or head[0] != SIGNATURE_NAME:
            raise HostileArchiveError("manifest.json is not followed by manifest.sig")
        if head[1] != SIGNATURE_SIZE:
            raise HostileArchiveError("manifest.sig is not a 64-byte signature")
        sig = self._read_exact(SIGNATURE_SIZE, "manifest.sig")
        self._skip_block_pad(SIGNATURE_SIZE, "manifest.sig")
        content_end = self.offset
        manifest = verify_manifest(data, sig)
        self._check_files(manifest)
        self._check_trailer(content_end)
        self._manifest = manifest

    def _check_files(self, manifest: Manifest) -> None:
        listed = {f.path: f for f in manifest.files}
        if len(listed) != len(manifest.files):
            raise ManifestError("the manifest lists a file twice")
        seen_paths = {p for p, _, _ in self._seen}
        for path, size, digest in self._seen:
            entry = listed.get(path)
            if entry is None:
                raise IntegrityError(
                    f"{path!r} is in the transfer but not in the signed manifest; "
                    "the transfer may have been tampered with"
                )
            if size != entry.size:
                raise IntegrityError(
                    f"{path!r} is {size} bytes but the signed manifest says {entry.size}; "
                    "the transfer may have been tampered with"
                )
            if digest != entry.sha256:
                raise IntegrityError(
                    f"{path!r} does not match its SHA-256 in the signed manifest; "
                    "the transfer may have been tampered with"
                )
        for entry in manifest.files:
            if entry.path not in seen_paths:
                raise IntegrityError(
                    f"{entry.path!r} is listed in the signed manifest but missing "
                    "from the transfer"
                )
        if [p for p, _, _ in self._seen] != [f.path for f in manifest.files]:
            raise HostileArchiveError(
                "the files are not in the order the signed manifest lists them; "
                "the transfer may have been tampered with"
            )

    def _check_trailer(self, content_end: int) -> None:
        """After the signature only zeros may follow, and no more than the padding rule adds."""
        limit = padded_size(content_end) - content_end + _RECORD
        total = 0
        while True:
            data = self.src.read(_IO_BLOCK)
            if not data:
                break
            total += len(data)
            if data.count(0) != len(data):
                raise HostileArchiveError(
                    "data follows the signed manifest; the transfer may have been tampered with"
                )
            if total > limit:
                raise HostileArchiveError("the archive's zero padding is longer than allowed")
        if total < _END_MARKER:
            raise ContainerError("the archive's end marker is missing; the transfer is truncated")
        self.offset += total
