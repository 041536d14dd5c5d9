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
