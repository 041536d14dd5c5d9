"""The profile's identity: create it, load it, read its public bundle.

Two files in the profile folder (names in ``layout``): the secret keys,
age-encrypted to the passphrase (scrypt, mode 0600), and the public signed
KeyBundle beside them, so that ``whoami`` and ``identity show`` need no
passphrase. The file format is in crypto.identity and docs/container.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from sealdrop.crypto import age
from sealdrop.crypto.age.scrypt import DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import BundleError, IdentityFileError
from sealdrop.crypto.identity import MAX_IDENTITY_FILE, SecretIdentity, open_identity, seal_identity

from ..errors import IdentityError, WrongPassphraseError
from ..outfile import atomic_output
from .layout import BUNDLE_FILE, IDENTITY_FILE


def ensure_home(home: Path) -> Path:
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise IdentityError(f"cannot create the profile folder {home}: {exc.strerror}") from exc
    return home


def create_identity(
    home: Path,
    handle: str,
    passphrase: bytes,
    *,
    work_factor: int = DEFAULT_WORK_FACTOR,
    now: int | None = None,
    rand: Callable[[int], bytes] = os.urandom,
) -> SecretIdentity:
    """Generate a new identity and write it (encrypted) and its public bundle to ``home``.

    Refuses to replace an existing identity: losing the old keys would make every
    transfer sent to them unreadable.
    """
    home = ensure_home(Path(home))
    path = home / IDENTITY_FILE
    if path.exists():
        raise IdentityError(
            f"an identity already exists in {home}",
            hint="use another --home, or move the old identity away first",
        )
    try:
        identity = SecretIdentity.generate(
            handle=handle, created=int(time.time()) if now is None else now, rand=rand
        )
    except BundleError as exc:
        raise IdentityError(str(exc)) from exc
    except age.RecipientError as exc:
        raise IdentityError(f"cannot generate post-quantum keys: {exc}") from exc
    sealed = seal_identity(identity, passphrase, work_factor=work_factor, rand=rand)
    try:
        with atomic_output(path, mode=0o600, overwrite=False) as f:
            f.write(sealed)
        with atomic_output(home / BUNDLE_FILE, mode=0o644) as f:
            f.write(identity.bundle.dumps().encode("ascii") + b"\n")
    except FileExistsError as exc:
        raise IdentityError(f"an identity already exists in {home}") from exc
    except OSError as exc:
        raise IdentityError(f"cannot write the identity to {home}: {exc.strerror}") from exc
    return identity


def load_identity(
    home: Path, passphrase: bytes, *, max_work_factor: int = MAX_WORK_FACTOR
) -> SecretIdentity:
    """Decrypt the identity in ``home``. Errors never include the passphrase."""
    path = Path(home) / IDENTITY_FILE
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_IDENTITY_FILE + 1)
    except FileNotFoundError as exc:
        raise IdentityError(
            f"no sealdrop identity in {home}",
            hint="create one with: sealdrop identity create --handle YOUR-HANDLE",
        ) from exc
    except OSError as exc:
        raise IdentityError(f"cannot read the identity file {path}: {exc.strerror}") from exc
    try:
        return open_identity(data, passphrase, max_work_factor=max_work_factor)
    except age.NoIdentityMatchError as exc:
        raise WrongPassphraseError(
            "wrong passphrase for the identity file",
            hint="check the passphrase (and SEALDROP_PASSPHRASE / --passphrase-file)",
        ) from exc
    except age.AgeError as exc:
        raise IdentityError(
            f"the identity file {path} is damaged or truncated ({exc})",
            hint="restore it from your backup",
        ) from exc
    except IdentityFileError as exc:
        raise IdentityError(f"the identity file {path} is invalid: {exc}") from exc


def load_public_bundle(home: Path) -> KeyBundle:
    """The identity's own public bundle (no passphrase needed); signature checked."""
    path = Path(home) / BUNDLE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise IdentityError(
            f"no sealdrop identity in {home}",
            hint="create one with: sealdrop identity create --handle YOUR-HANDLE",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityError(f"cannot read {path}") from exc
    try:
        return KeyBundle.loads(text.strip()).verify()
    except BundleError as exc:
        raise IdentityError(f"{path} is invalid: {exc}") from exc
