"""A sealdrop identity's secret keys and their one-file, age-compatible format.

An identity is an Ed25519 signing key plus two age keys (X25519, and the
ML-KEM-768 + X25519 hybrid), bound together by the signed KeyBundle.

At rest it is ONE file, age-encrypted to an scrypt passphrase recipient, whose
plaintext is itself a valid age identity file (docs/container.md, "Identity
file")::

    # sealdrop identity v1
    # handle: alice.dental
    # created: 1718000000
    # bundle: {"created":1718000000,"handle":"alice.dental",...}
    # signing-key: SEALDROP-SIGNING-KEY-1…
    # public key: age1pq1…
    AGE-SECRET-KEY-PQ-1…
    # public key: age1…
    AGE-SECRET-KEY-1…

age ignores ``#`` lines, so ``age -d identity.age > key.txt`` gives a file that
``age -d -i key.txt`` accepts (age >= 1.3 for the PQ line; for older age use
``sealdrop identity export --age --no-pq``). The signing key is in a comment
because age has no use for it; it is bech32 with a checksum like the age keys.

Pure: bytes in, bytes out; time and randomness are parameters.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from nacl.signing import SigningKey

from . import safety
from .age import Decryptor, Encryptor, ScryptIdentity, ScryptRecipient, bech32, hybrid
from .age.core import Identity as AgeIdentity
from .age.errors import RecipientError
from .age.scrypt import DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR
from .age.x25519 import X25519Identity
from .bundle import KeyBundle, check_handle
from .errors import BundleError, IdentityFileError

Random = Callable[[int], bytes]

HEADER = "# sealdrop identity v1"
SIGNING_HRP = "sealdrop-signing-key-"
MAX_IDENTITY_FILE = 64 * 1024


class SecretAgeKey(Protocol):
    def encode(self) -> str: ...

    def recipient(self) -> Any: ...

    def unwrap(self, stanzas: Sequence[Any]) -> bytes | None: ...


def encode_signing_key(key: SigningKey) -> str:
    return bech32.encode(SIGNING_HRP, bytes(key)).upper()


def decode_signing_key(text: str) -> SigningKey:
    try:
        hrp, data = bech32.decode(text)
    except ValueError as exc:
        raise IdentityFileError(
            f"the signing key in the identity file is malformed: {exc}"
        ) from exc
    if hrp != SIGNING_HRP or len(data) != 32 or text != text.upper():
        raise IdentityFileError("the signing key in the identity file is malformed")
    return SigningKey(data)


class SecretIdentity:
    """Secret key material. ``repr`` shows the handle and safety number, never a key."""

    def __init__(
        self,
        *,
        signing_key: SigningKey,
        x25519: X25519Identity,
        pq: SecretAgeKey,
        bundle: KeyBundle,
    ) -> None:
        self.signing_key = signing_key
        self.x25519 = x25519
        self.pq = pq
        self.bundle = bundle
        self._check()

    def _check(self) -> None:
        b = self.bundle
        try:
            b.verify()
        except BundleError as exc:
            raise IdentityFileError(f"the identity's key bundle is invalid: {exc}") from exc
        if b.signing_key != bytes(self.signing_key.verify_key):
            raise IdentityFileError("the identity's bundle was signed by a different signing key")
        if b.x25519 != str(self.x25519.recipient()) or b.pq != str(self.pq.recipient()):
            raise IdentityFileError("the identity's age keys do not match its key bundle")

    @classmethod
    def generate(cls, *, handle: str, created: int, rand: Random = os.urandom) -> SecretIdentity:
        """New keys. Raises RecipientError if post-quantum keys are unavailable."""
        check_handle(handle)
        signing_key = SigningKey(rand(32))
        x = X25519Identity.generate(rand)
        pq: SecretAgeKey = hybrid.HybridIdentity.generate(rand)
        bundle = KeyBundle.create(
            handle=handle,
            signing_key=signing_key,
            x25519=str(x.recipient()),
            pq=str(pq.recipient()),
            created=created,
        )
        return cls(signing_key=signing_key, x25519=x, pq=pq, bundle=bundle)

    @property
    def handle(self) -> str:
        return self.bundle.handle

    @property
    def signing_public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def safety_number(self) -> str:
        return safety.safety_number(self.signing_public_key)

    def age_identities(self) -> list[AgeIdentity]:
        """Both decryption keys, PQ first: whichever a transfer was sealed to opens it."""
        return [self.pq, self.x25519]

    def __repr__(self) -> str:
        return f"SecretIdentity(handle={self.handle!r}, safety_number={self.safety_number!r})"

    # --- the plaintext file ------------------------------------------------------

    def export_age(self, *, pq: bool = True) -> str:
        """The age identity lines (with ``#`` comments): what ``export --age`` prints."""
        lines = [f"# sealdrop identity for {self.handle}, created {self.bundle.created}"]
        if pq:
            lines += [f"# public key: {self.pq.recipient()}", self.pq.encode()]
        lines += [f"# public key: {self.x25519.recipient()}", self.x25519.encode()]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """The whole identity as the plaintext of the identity file. SECRET."""
        lines = [
            HEADER,
            f"# handle: {self.handle}",
            f"# created: {self.bundle.created}",
            f"# bundle: {self.bundle.dumps()}",
            f"# signing-key: {encode_signing_key(self.signing_key)}",
            f"# public key: {self.pq.recipient()}",
            self.pq.encode(),
            f"# public key: {self.x25519.recipient()}",
            self.x25519.encode(),
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> SecretIdentity:
        """Parse the plaintext identity file strictly; never echoes a key line."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines or lines[0] != HEADER:
            raise IdentityFileError("this is not a sealdrop identity file (version 1)")
        fields: dict[str, str] = {}
        x_lines: list[str] = []
        pq_lines: list[str] = []
        for line in lines[1:]:
            if line.startswith("#"):
                key, sep, value = line[1:].strip().partition(": ")
                if sep and key in ("handle", "created", "bundle", "signing-key"):
                    if key in fields:
                        raise IdentityFileError(f"the identity file has two {key} lines")
                    fields[key] = value.strip()
                continue
            upper = line.upper()
            if upper.startswith("AGE-SECRET-KEY-PQ-1"):
                pq_lines.append(line)
            elif upper.startswith("AGE-SECRET-KEY-1"):
                x_lines.append(line)
            else:
                raise IdentityFileError("the identity file has a line of unknown type")
        missing = {"bundle", "signing-key"} - set(fields)
        if missing:
            raise IdentityFileError(f"the identity file lacks {', '.join(sorted(missing))}")
        if len(x_lines) != 1 or len(pq_lines) != 1:
            raise IdentityFileError("the identity file must hold one X25519 and one PQ key")
        try:
            bundle = KeyBundle.loads(fields["bundle"])
        except BundleError as exc:
            raise IdentityFileError(f"the identity file's key bundle is malformed: {exc}") from exc
        if fields.get("handle", bundle.handle) != bundle.handle:
            raise IdentityFileError("the identity file's handle differs from its key bundle")
        try:
            x = X25519Identity.parse(x_lines[0])
            pq: SecretAgeKey = hybrid.HybridIdentity.parse(pq_lines[0])
        except RecipientError as exc:
            raise IdentityFileError(f"an age key in the identity file is malformed: {exc}") from exc
        return cls(
            signing_key=decode_signing_key(fields["signing-key"]),
            x25519=x,
            pq=pq,
            bundle=bundle,
        )


def seal_identity(
    identity: SecretIdentity,
    passphrase: bytes,
    *,
    work_factor: int = DEFAULT_WORK_FACTOR,
    rand: Random = os.urandom,
) -> bytes:
    """The identity file: ``to_text()`` age-encrypted to an scrypt passphrase recipient."""
    out = io.BytesIO()
    enc = Encryptor(out, [ScryptRecipient(passphrase, work_factor=work_factor)], rand=rand)
    enc.write(identity.to_text().encode("ascii"))
    enc.close()
    return out.getvalue()


def open_identity(
    data: bytes, passphrase: bytes, *, max_work_factor: int = MAX_WORK_FACTOR
) -> SecretIdentity:
    """Decrypt and parse an identity file.

    A wrong passphrase raises crypto.age.NoIdentityMatchError; a damaged or
    truncated file another AgeError; bad contents IdentityFileError.
    """
    if len(data) > MAX_IDENTITY_FILE:
        raise IdentityFileError("the identity file is too large to be one")
    dec = Decryptor(io.BytesIO(data), [ScryptIdentity(passphrase, max_work_factor=max_work_factor)])
    with dec:
        plain = dec.read(MAX_IDENTITY_FILE + 1)
    if len(plain) > MAX_IDENTITY_FILE:
        raise IdentityFileError("the identity file is too large to be one")
    try:
        text = plain.decode("ascii")
    except UnicodeDecodeError as exc:
        raise IdentityFileError("the decrypted identity file is not text") from exc
    return SecretIdentity.from_text(text)
