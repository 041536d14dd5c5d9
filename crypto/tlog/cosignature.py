"""C2SP tlog-cosignature (``cosignature/v1``, Ed25519, key type 0x04).

A witness cosigns a checkpoint to state that, at the time it names, this is
the largest tree it has seen for the log and that it checked it consistent
with every one before. Clients that require N cosignatures from independent
witnesses cannot be shown a split view unless those witnesses collude.

The signature line is a note signature whose bytes are ``key id || 8-byte
big-endian timestamp || Ed25519 signature`` over::

    cosignature/v1\\ntime <timestamp>\\n<checkpoint text>

The message does not commit to the cosigner's name (the spec's Ed25519 form),
so one key must serve one cosigner only.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ..errors import LogFormatError, NoteError
from .checkpoint import Checkpoint
from .note import (
    Ed25519Signer,
    Ed25519Verifier,
    signature_line,
)

COSIGNATURE_V1 = 0x04
_MAX_TIME = 2**63 - 1


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not (
        0 <= timestamp <= _MAX_TIME
    ):
        raise NoteError("a cosignature's time must be a unix time below 2**63")
    Checkpoint.parse(checkpoint_text)  # only checkpoints are cosigned
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


class CosignatureSigner(Ed25519Signer):
    """A witness's cosigning key: ``CosignatureSigner(name, seed)``."""

    key_type = COSIGNATURE_V1

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """The signature line to append to the checkpoint note."""
        sig = self._key.sign(cosigned_message(checkpoint_text, timestamp)).signature
        return signature_line(self.name, self.key_id, timestamp.to_bytes(8, "big") + sig)


class CosignatureVerifier(Ed25519Verifier):
    """A witness's public key, usable in ``open_note`` and ``open_checkpoint``
    (``OpenedNote.timestamps`` holds the verified time, by cosigner name)."""

    key_type = COSIGNATURE_V1

    def verify(self, text: bytes, signature: bytes) -> int | None:
        """The cosigned time if ``signature`` (key id removed) verifies over the
        checkpoint ``text``; None otherwise."""
        if len(signature) != 8 + 64:
            return None
        timestamp = int.from_bytes(signature[:8], "big")
        try:
            message = cosigned_message(text.decode("utf-8"), timestamp)
            VerifyKey(self.public_key).verify(message, signature[8:])
        except (BadSignatureError, ValueError, NoteError, LogFormatError):
            return None  # LogFormatError: the text is not a checkpoint
        return timestamp
