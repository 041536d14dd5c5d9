"""A regular file read by position, for the age encryptor's parallel workers."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .errors import ClientError


class FileRegion:
    """The bytes of an open regular file from its current position to its end.

    The size is taken once, when the region is made: the file is encrypted as
    it was then. A file that shrinks meanwhile is an error, never a short
    ciphertext.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._fd = f.fileno()
        self._name = getattr(f, "name", "input")
        self.start = f.tell()
        self.size = max(0, os.fstat(self._fd).st_size - self.start)

    @classmethod
    def of(cls, f: BinaryIO) -> FileRegion | None:
        """A region for ``f`` if it is a regular file, else None (pipes, terminals)."""
        try:
            st = os.fstat(f.fileno())
        except (AttributeError, OSError, ValueError):
            return None
        return cls(f) if stat.S_ISREG(st.st_mode) else None

    def pread_into(self, buf: memoryview, offset: int) -> int:
        try:
            n = os.preadv(self._fd, [buf], self.start + offset)
        except OSError as exc:
            raise ClientError(f"cannot read {self._name}: {exc.strerror}") from exc
        if n == 0 and len(buf):
            raise ClientError(f"{self._name} became shorter while it was being encrypted")
        return n
