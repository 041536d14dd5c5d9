"""The native scrypt (passphrase) recipient type."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .errors import HeaderError, RecipientError
from .format import Stanza
from .primitives import FILE_KEY_SIZE, b64decode, b64encode, unwrap_key, wrap_key

STANZA_TYPE = "scrypt"
_SALT_LABEL = b"age-encryption.org/v1/scrypt"
_SALT_SIZE = 16
_BODY_SIZE = FILE_KEY_SIZE + 16
_R = 8
DEFAULT_WORK_FACTOR = 18  # log2(N): ~256 MiB and about a second, as age does
# Beyond 2**22 (4 GiB of memory) a hostile file could stall or exhaust the
# machine before we even know the passphrase is wrong.
MAX_WORK_FACTOR = 22
_LOG_N = re.compile(r"[1-9][0-9]{0,2}")


def _derive(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    n = 1 << log_n
    import hashlib  # only for passphrases: it loads OpenSSL's _hashlib (primitives)

    return hashlib.scrypt(
        passphrase,
        salt=_SALT_LABEL + salt,
        n=n,
        r=_R,
        p=1,
        maxmem=128 * _R * n + (1 << 20),
        dklen=32,
    )


class ScryptRecipient:
    pq = False
    # An scrypt stanza must be the only one: encrypting the same file to a
    # passphrase and to a key would void the passphrase's implicit authenticity.
    sole = True

    def __init__(self, passphrase: bytes, *, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        if not passphrase:
            raise RecipientError("the passphrase is empty")
        if not 1 <= work_factor <= MAX_WORK_FACTOR:
            raise RecipientError(f"scrypt work factor must be between 1 and {MAX_WORK_FACTOR}")
        self._passphrase = passphrase
        self.work_factor = work_factor

    def __repr__(self) -> str:
        return f"ScryptRecipient(work_factor={self.work_factor})"

    def wrap(self, file_key: bytes, rand: Callable[[int], bytes]) -> list[Stanza]:
        salt = rand(_SALT_SIZE)
        key = _derive(self._passphrase, salt, self.work_factor)
        return [
            Stanza(STANZA_TYPE, (b64encode(salt), str(self.work_factor)), wrap_key(key, file_key))
        ]


class ScryptIdentity:
    def __init__(self, passphrase: bytes, *, max_work_factor: int = MAX_WORK_FACTOR) -> None:
        self._passphrase = passphrase
        self.max_work_factor = min(max_work_factor, MAX_WORK_FACTOR)

    def __repr__(self) -> str:
        return "ScryptIdentity(<passphrase>)"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for s in stanzas:
            if s.type != STANZA_TYPE:
                continue
            if len(stanzas) != 1:
                raise HeaderError("an scrypt stanza must be the only stanza in the header")
            if len(s.args) != 2:
                raise HeaderError("invalid scrypt stanza: expected exactly two arguments")
            try:
                salt = b64decode(s.args[0])
            except ValueError as exc:
                raise HeaderError(f"invalid scrypt stanza salt: {exc}") from exc
            if len(salt) != _SALT_SIZE:
                raise HeaderError("invalid scrypt stanza: the salt is not 16 bytes")
            if not _LOG_N.fullmatch(s.args[1]):
                raise HeaderError("invalid scrypt stanza: malformed work factor")
            log_n = int(s.args[1])
            if log_n > self.max_work_factor:
                raise HeaderError(
                    f"scrypt work factor {log_n} is above the limit of {self.max_work_factor}"
                )
            if len(s.body) != _BODY_SIZE:
                raise HeaderError("invalid scrypt stanza: the body is not 32 bytes")
            return unwrap_key(_derive(self._passphrase, salt, log_n), s.body)
        return None
