"""age v1 header parsing and marshalling, and nothing else.

The header MAC covers the exact bytes on the wire, so the parser keeps them
(``Header.mac_input``) instead of re-marshalling: a non-canonical header must
fail, never be silently normalised into one that verifies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import HeaderError
from .primitives import b64decode, b64encode

VERSION_LINE = b"age-encryption.org/v1\n"
_VERSION_PREFIX = b"age-encryption.org/"
_STANZA_PREFIX = b"-> "
_MAC_PREFIX = b"---"
_COLUMNS = 64

# Hard limits, so a hostile header cannot make us buffer without bound. The
# largest native stanza (mlkem768x25519) has a ~1.5 KiB argument line.
MAX_HEADER_SIZE = 1 << 20
MAX_LINE_SIZE = 8 << 10
MAX_STANZAS = 1024
MAX_ARGS = 16


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes

    def __post_init__(self) -> None:
        for arg in (self.type, *self.args):
            if not _is_vchar(arg.encode("utf-8")):
                raise HeaderError(f"invalid stanza argument {arg!r}")


@dataclass(frozen=True, slots=True)
class Header:
    stanzas: tuple[Stanza, ...]
    mac: bytes
    # The exact header bytes up to and including "---", as the MAC covers them.
    mac_input: bytes


def _is_vchar(arg: bytes) -> bool:
    return len(arg) > 0 and all(0x21 <= c <= 0x7E for c in arg)


def marshal_without_mac(stanzas: Sequence[Stanza]) -> bytes:
    """The header bytes the MAC is computed over (ending in ``---``)."""
    if not stanzas:
        raise HeaderError("a header needs at least one recipient stanza")
    out = bytearray(VERSION_LINE)
    for s in stanzas:
        out += _STANZA_PREFIX + " ".join((s.type, *s.args)).encode("ascii") + b"\n"
        text = b64encode(s.body).encode("ascii")
        for i in range(0, len(text), _COLUMNS):
            out += text[i : i + _COLUMNS] + b"\n"
        # A stanza body always ends with a short line, empty if need be.
        if len(text) % _COLUMNS == 0:
            out += b"\n"
    out += _MAC_PREFIX
    return bytes(out)


def marshal(mac_input: bytes, mac: bytes) -> bytes:
    return mac_input + b" " + b64encode(mac).encode("ascii") + b"\n"


class _LineReader:
    """Reads LF-terminated lines from a stream, keeping what it over-read."""

    def __init__(self, src: Reader) -> None:
        self._src = src
        self._buf = bytearray()
        self.consumed = 0

    def line(self) -> bytes:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                break
            if len(self._buf) > MAX_LINE_SIZE:
                raise HeaderError("header line too long")
            data = self._src.read(4096)
            if not data:
                raise HeaderError("header is truncated: unexpected end of file")
            self._buf += data
        if len(line) > MAX_LINE_SIZE:
            raise HeaderError("header line too long")
        self.consumed += len(line)
        if self.consumed > MAX_HEADER_SIZE:
            raise HeaderError("header too large")
        return line

    def leftover(self) -> bytes:
        return bytes(self._buf)


def parse(src: Reader) -> tuple[Header, bytes]:
    """Parse a header from ``src``; returns it and the bytes read past its end."""
    lines = _LineReader(src)
    raw = bytearray()

    version = lines.line()
    raw += version
    if version != VERSION_LINE:
        if version.startswith(_VERSION_PREFIX):
            raise HeaderError(
                f"unsupported age format version {version[len(_VERSION_PREFIX):-1]!r}",
                hint="the file was made by a newer age tool; update sealdrop",
            )
        raise HeaderError("not an age file: missing the age-encryption.org/v1 version line")

    stanzas: list[Stanza] = []
    while True:
        line = lines.line()
        if line.startswith(_MAC_PREFIX):
            mac = _parse_mac_line(line)
            raw += _MAC_PREFIX
            break
        if not line.startswith(_STANZA_PREFIX):
            raise HeaderError("malformed header line: expected a '-> ' stanza or the '---' MAC")
        if len(stanzas) >= MAX_STANZAS:
            raise HeaderError("too many recipient stanzas in header")
        raw += line
        args = line[len(_STANZA_PREFIX) : -1].split(b" ")
        if len(args) > MAX_ARGS + 1:
            raise HeaderError("too many arguments in a recipient stanza")
        if not all(_is_vchar(a) for a in args):
            raise HeaderError("malformed recipient stanza arguments")
        body = bytearray()
        while True:
            bline = lines.line()
            raw += bline
            text = bline[:-1]
            if len(text) > _COLUMNS:
                raise HeaderError("stanza body line longer than 64 columns")
            body += text
            if len(text) < _COLUMNS:
                break
        try:
            decoded = b64decode(bytes(body))
        except ValueError as exc:
            raise HeaderError(f"malformed stanza body: {exc}") from exc
        strs = [a.decode("ascii") for a in args]
        stanzas.append(Stanza(strs[0], tuple(strs[1:]), decoded))

    if not stanzas:
        raise HeaderError("header has no recipient stanzas")
    return Header(tuple(stanzas), mac, bytes(raw)), lines.leftover()


def _parse_mac_line(line: bytes) -> bytes:
    if not line.startswith(b"--- ") or len(line) != 4 + 43 + 1:
        raise HeaderError("malformed header MAC line")
    try:
        return b64decode(line[4:-1])
    except ValueError as exc:
        raise HeaderError(f"malformed header MAC: {exc}") from exc
