"""One error root for the age core, with a class per way a file can fail.

Callers branch on the class (the CLI maps each to a message; the tests map
each to the CCTV vector's ``expect`` line), so the classes are siblings, not a
chain: a MAC failure is not "a kind of" header syntax error.
"""

from __future__ import annotations

from ..errors import SealdropCryptoError


class AgeError(SealdropCryptoError):
    """Root of every error raised while reading or writing an age file."""


class HeaderError(AgeError):
    """The header is malformed, or a stanza for one of our identities is invalid."""


class MACError(AgeError):
    """The header MAC does not match: the header was changed after encryption."""


class ArmorError(AgeError):
    """The ASCII armor is not the strict PEM encoding the spec requires."""


class PayloadError(AgeError):
    """The encrypted payload failed to authenticate, or is truncated or extended."""


class NoIdentityMatchError(AgeError):
    """None of the given identities can open any stanza in the header."""


class RecipientError(AgeError):
    """A recipient or identity string could not be parsed, or recipients don't mix."""
