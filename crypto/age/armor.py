"""Strict ASCII armor (RFC 7468 PEM, label "AGE ENCRYPTED FILE").

Armor is malleable unless parsed strictly, so anything but canonical padded
base64 in 64-column lines, LF or CRLF line ends, and whitespace outside the
block is refused.
"""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

from .errors import ArmorError

BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
END = b"-----END AGE ENCRYPTED FILE-----"
_COLUMNS = 64
_BYTES_PER_LINE = 48
_WHITESPACE = b" \t\r\n"
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_MAX_LINE = 128


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


class ArmorWriter:
    def __init__(self, dst: Writer) -> None:
        self._dst = dst
        self._buf = bytearray()
        dst.write(BEGIN + b"\n")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        whole = len(self._buf) - len(self._buf) % _BYTES_PER_LINE
        if whole:
            text = base64.b64encode(bytes(self._buf[:whole]))
            del self._buf[:whole]
            self._dst.write(
                b"".join(text[i : i + _COLUMNS] + b"\n" for i in range(0, len(text), _COLUMNS))
            )
        return len(data)

    def close(self) -> None:
        if self._buf:
            self._dst.write(base64.b64encode(bytes(self._buf)) + b"\n")
            self._buf.clear()
        self._dst.write(END + b"\n")


class ArmorReader:
    """Decodes an armored age file as it is read."""

    def __init__(self, src: Reader) -> None:
        self._src = src
        self._raw = bytearray()
        self._eof = False
        self._out = bytearray()
        self._pending: bytes | None = None  # a data line we cannot yet call last
        self._done = False
        self._start()

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self._src.read(16384)
        if not data:
            self._eof = True
            return False
        self._raw += data
        return True

    def _line(self) -> bytes | None:
        """The next line without its LF/CRLF; None at EOF (a last line without EOL is returned)."""
        while True:
            i = self._raw.find(b"\n")
            if i >= 0:
                line = bytes(self._raw[:i])
                del self._raw[: i + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                break
            if len(self._raw) > _MAX_LINE:
                raise ArmorError("armored line too long")
            if not self._more():
                if not self._raw:
                    return None
                line = bytes(self._raw)
                self._raw.clear()
                break
        if len(line) > _MAX_LINE:
            raise ArmorError("armored line too long")
        return line

    def _start(self) -> None:
        while True:
            stripped = self._raw.lstrip(_WHITESPACE)
            if stripped:
                del self._raw[: len(self._raw) - len(stripped)]
                break
            self._raw.clear()
            if not self._more():
                raise ArmorError("armored file is empty")
        if self._line() != BEGIN:
            raise ArmorError("invalid armor: missing or malformed BEGIN AGE ENCRYPTED FILE line")

    def _step(self) -> None:
        line = self._line()
        if line is None:
            raise ArmorError("invalid armor: missing END AGE ENCRYPTED FILE line")
        if line == END:
            if self._pending is not None:
                self._out += _decode_last(self._pending)
                self._pending = None
            self._finish()
            return
        if self._pending is not None:
            prev = self._pending
            if len(prev) != _COLUMNS or not set(prev) <= _B64:
                raise ArmorError("invalid armor: a line that is not the last is not 64 columns")
            self._out += base64.b64decode(prev)
        self._pending = line

    def _finish(self) -> None:
        # Only whitespace may follow the END line.
        while True:
            if self._raw.strip(_WHITESPACE):
                raise ArmorError("invalid armor: trailing data after the END line")
            self._raw.clear()
            if not self._more():
                break
        self._done = True

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._out) < n):
            self._step()
        if n < 0 or n >= len(self._out):
            out = bytes(self._out)
            self._out.clear()
        else:
            out = bytes(self._out[:n])
            del self._out[:n]
        return out


def _decode_last(line: bytes) -> bytes:
    if not line or len(line) > _COLUMNS or len(line) % 4:
        raise ArmorError("invalid armor: malformed last line")
    try:
        data = base64.b64decode(line, validate=True)
    except binascii.Error as exc:
        raise ArmorError(f"invalid armor: {exc}") from exc
    if base64.b64encode(data) != line:
        raise ArmorError("invalid armor: non-canonical base64")
    return data
