"""Errors of the sealdrop layer above age (bundles, identities, transfers).

The age core's errors live in ``crypto.age.errors``; both roots derive from
``SealdropCryptoError`` so the CLI can catch one thing.
"""

from __future__ import annotations


class SealdropCryptoError(Exception):
    """Root of sealdrop's crypto-layer errors. ``hint`` is an optional next step."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class BundleError(SealdropCryptoError):
    """A key bundle is malformed or its signature does not verify."""


class ManifestError(SealdropCryptoError):
    """A transfer manifest is malformed, not canonical, or inconsistent."""


class SignatureError(SealdropCryptoError):
    """A transfer's manifest signature does not verify with the sender's key."""


class ContainerError(SealdropCryptoError):
    """A transfer archive is malformed, or its contents do not match the manifest."""


class UnsafePathError(ContainerError):
    """A member name could escape the destination or collide with another name."""


class HostileArchiveError(ContainerError):
    """The archive holds something a sender never writes: links, devices, extra data."""


class IntegrityError(ContainerError):
    """A file's size or SHA-256 differs from what the signed manifest says."""


class IdentityFileError(SealdropCryptoError):
    """The decrypted identity file is malformed or its keys do not match its bundle."""


class SafetyNumberError(SealdropCryptoError):
    """A safety number typed by the user is malformed."""


class LogError(SealdropCryptoError):
    """The relay's transparency log, or something read from it, does not check out."""


class LogProofError(LogError):
    """An inclusion or consistency proof does not verify against a signed root."""


class NoteError(LogError):
    """A signed note is malformed, or carries no valid signature by a known key."""


class LogFormatError(LogError):
    """A checkpoint, tile, entry bundle, log entry or proof bundle is malformed."""


class ReceiptError(LogError):
    """A recipient's signed receipt does not verify with that recipient's key."""
