"""The witness's cosignature key file: ``PRIVATE+KEY+<name>+<keyid>+<base64(0x04||seed)>``.

The Go ``note`` private-key form (``crypto.tlog.cosignature``), with the cosignature
key type 0x04 (C2SP tlog-cosignature) in place of 0x01, so that the key id in
the file is the one verifiers compute from the vkey. One line, mode 0600,
never overwritten: a witness that lost its key is a new witness, and every
relay and client that trusted the old vkey must be told.
"""

from __future__ import annotations

import os
from pathlib import Path

from sealdrop.crypto.errors import NoteError
from sealdrop.crypto.tlog.cosignature import CosignatureSigner
from sealdrop.crypto.tlog.note import check_name

from ..errors import WitnessError


def create_key_file(path: Path, name: str, *, seed: bytes | None = None) -> CosignatureSigner:
    """A new key at ``path`` (refused if the file exists); randomness from the OS."""
    try:
        check_name(name)
    except NoteError:
        raise WitnessError(f"the witness name {name!r} must be non-empty, without spaces "
                           "or '+' (e.g. witness.clinic-it.example/w1)") from None
    seed = os.urandom(32) if seed is None else seed
    signer = CosignatureSigner(name, seed)
    text = signer.private_key_text() + "\n"
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
    return signer


def load_key_file(path: Path) -> CosignatureSigner:
    try:
        text = Path(path).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessError(f"cannot read the witness key file {path}",
                           hint="create one with: sealdrop witness init") from exc
    try:
        return CosignatureSigner.from_private_key_text(text)
    except NoteError as exc:  # its messages never quote the key
        raise WitnessError(f"{path} is not a witness key file: {exc}") from None
