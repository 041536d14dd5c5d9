"""age v1 (C2SP age spec): the payload format of every sealdrop transfer.

Public API: ``Encryptor``/``encrypt`` to recipients, ``Decryptor``/``decrypt``
with identities, recipient and identity types, and the error classes.
"""

from .core import Decryptor, Encryptor, Identity, Recipient, ResumeState, decrypt, encrypt
from .errors import (
    AgeError,
    ArmorError,
    HeaderError,
    MACError,
    NoIdentityMatchError,
    PayloadError,
    RecipientError,
)
from .hybrid import HybridIdentity, HybridRecipient
from .keys import parse_identities, parse_identity, parse_recipient, parse_recipients_file
from .scrypt import ScryptIdentity, ScryptRecipient
from .x25519 import X25519Identity, X25519Recipient

__all__ = [
    "AgeError",
    "ArmorError",
    "Decryptor",
    "Encryptor",
    "HeaderError",
    "HybridIdentity",
    "HybridRecipient",
    "Identity",
    "MACError",
    "NoIdentityMatchError",
    "PayloadError",
    "Recipient",
    "RecipientError",
    "ResumeState",
    "ScryptIdentity",
    "ScryptRecipient",
    "X25519Identity",
    "X25519Recipient",
    "decrypt",
    "encrypt",
    "parse_identities",
    "parse_identity",
    "parse_recipient",
    "parse_recipients_file",
]
