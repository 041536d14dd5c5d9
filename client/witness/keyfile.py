"""The witness's cosignature key file: ``PRIVATE+KEY+<name>+<keyid>+<base64(0x04||seed)>``.

The Go ``note`` private-key form, with the cosignature key type 0x04 (C2SP
tlog-cosignature) in place of 0x01, so that the key id in the file is the one
verifiers compute from the vkey. One line, mode 0600, never overwritten: a
witness that lost its key is a new witness, and every relay and client that
trusted the old vkey must be told.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from nacl.signing import SigningKey

from sealdrop.crypto.tlog.cosignature import CosignatureSigner
from sealdrop.crypto.tlog.note import key_id

from ..errors import WitnessError

COSIGNATURE_KEY_TYPE = 0x04
_PREFIX = "PRIVATE+KEY+"


def _check_name(name: str) -> str:
    # signed-note: a key name is non-empty, with no Unicode spaces and no "+".
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise WitnessError(f"the witness name {name!r} must be non-empty, without spaces "
                           "or '+' (e.g. witness.clinic-it.example/w1)")
    return name


def _key_id_hex(name: str, seed: bytes) -> str:
    public = bytes(SigningKey(seed).verify_key)
    return key_id(name, COSIGNATURE_KEY_TYPE, public).hex()


def key_text(name: str, seed: bytes) -> str:
    kid = _key_id_hex(name, seed)
    body = base64.b64encode(bytes([COSIGNATURE_KEY_TYPE]) + seed).decode()
    return f"{_PREFIX}{name}+{kid}+{body}\n"


def create_key_file(path: Path, name: str, *, seed: bytes | None = None) -> CosignatureSigner:
    """A new key at ``path`` (refused if the file exists); randomness from the OS."""
    name = _check_name(name)
    seed = os.urandom(32) if seed is None else seed
    text = key_text(name, seed)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise WitnessError(f"{path} already exists; a witness key is never overwritten",
                           hint="choose another --key-file, or keep serving with this one"
                           ) from None
    except OSError as exc:
        raise WitnessError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return CosignatureSigner(name, seed)


def load_key_file(path: Path) -> CosignatureSigner:
    try:
        text = Path(path).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessError(f"cannot read the witness key file {path}",
                           hint="create one with: sealdrop witness init") from exc
    damaged = WitnessError(f"{path} is not a witness key file (PRIVATE+KEY+NAME+ID+KEY)")
    fields = text[len(_PREFIX):].split("+", 2)  # base64 may hold "+", a name never does
    if not text.startswith(_PREFIX) or len(fields) != 3:
        raise damaged
    name, kid, body = fields
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise damaged from None
    if len(raw) != 33 or raw[0] != COSIGNATURE_KEY_TYPE:
        raise damaged
    if kid != _key_id_hex(_check_name(name), raw[1:]):
        # The id is a hash of name and public key: a mismatch means an edited file.
        raise WitnessError(f"{path}: the key id does not match the key; the file was edited")
    return CosignatureSigner(name, raw[1:])
