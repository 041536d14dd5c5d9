"""The case card: what a transfer is, readable before it is downloaded (docs/card.md).

A few hundred bytes of JSON (the sender's label, the note's first line, the
file count and size, one short line per DICOM study), signed with the
sender's Ed25519 identity key and age-encrypted to the transfer's recipients.
The relay stores it as opaque bytes beside the transfer and serves it in the
recipient's inbox.

Why the signed message names the relay's transfer id and the sender handle:
the card travels outside the transfer's ciphertext, so without them a relay
could move a genuine card onto another transfer (a lab would then see "Couronne
36 DUPONT" on someone else's case) or onto another sender's. The manifest
cannot bind the card: the relay's id is only known after the transfer exists,
and the manifest is fixed before that (resumable sends re-create the same
ciphertext).

Why padding to a bucket: the card's length would otherwise tell the relay how
long a patient's name or a label is. Padded, the relay learns only the bucket
(``BUCKET`` multiples, at most ``MAX_PLAINTEXT``) and, through the age header,
the number of recipients it already knows.

Only Ed25519 and age: no new primitive. Pure: bytes in, bytes out; randomness
is a parameter.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from . import age
from .errors import SealdropCryptoError

Random = Callable[[int], bytes]

SIGNATURE_CONTEXT = b"sealdrop case card v1\x00"
VERSION = 1
BUCKET = 4096
MAX_PLAINTEXT = 4 * BUCKET
# Bounds on what a card may say. Generous for a case, small enough that the
# common card fits the first bucket.
MAX_LABEL_CHARS = 200
MAX_LINE_CHARS = 200
MAX_STUDIES = 8
MAX_FIELD_CHARS = 64
MAX_MODALITIES = 8
_LEN = struct.Struct(">I")
_SIG = 64


class CardError(SealdropCryptoError):
    """A card that cannot be opened, does not parse, or does not verify."""


@dataclass(frozen=True, slots=True)
class CardStudy:
    """One DICOM study as a line needs it."""

    patient_name: str
    modalities: tuple[str, ...]
    study_date: str  # as DICOM writes it (YYYYMMDD), or ""
    image_count: int

    def to_json(self) -> dict[str, Any]:
        return {"patient_name": self.patient_name, "modalities": list(self.modalities),
                "study_date": self.study_date, "image_count": self.image_count}


@dataclass(frozen=True, slots=True)
class Card:
    """What the sender claims about a case. ``more_studies``: studies left out."""

    label: str = ""
    note_line: str = ""
    file_count: int = 0
    total_size: int = 0
    studies: tuple[CardStudy, ...] = field(default_factory=tuple)
    more_studies: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"v": VERSION, "label": self.label, "note_line": self.note_line,
                "file_count": self.file_count, "total_size": self.total_size,
                "studies": [s.to_json() for s in self.studies],
                "more_studies": self.more_studies}


def first_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """The first non-empty line of ``text``, stripped and cut to ``limit`` characters."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def make_card(*, label: str, note: str, file_count: int, total_size: int,
              studies: Sequence[CardStudy]) -> Card:
    """A card within the bounds: long texts cut, studies past ``MAX_STUDIES`` counted."""
    kept = tuple(
        CardStudy(patient_name=s.patient_name[:MAX_FIELD_CHARS],
                  modalities=tuple(m[:16] for m in s.modalities[:MAX_MODALITIES]),
                  study_date=s.study_date[:MAX_FIELD_CHARS], image_count=s.image_count)
        for s in studies[:MAX_STUDIES])
    return Card(label=label.strip()[:MAX_LABEL_CHARS], note_line=first_line(note),
                file_count=file_count, total_size=total_size, studies=kept,
                more_studies=max(0, len(studies) - MAX_STUDIES))


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def signature_message(card: Card, *, transfer_id: str, sender: str) -> bytes:
    """What the sender signs: context, the relay's transfer id, the handle, the card."""
    return b"".join([SIGNATURE_CONTEXT, transfer_id.encode("ascii"), b"\x00",
                     sender.encode("ascii"), b"\x00", _canonical(card.to_json())])


def pad(body: bytes) -> bytes:
    """``len || body || zeros`` up to the next ``BUCKET`` multiple; refused past the bound."""
    total = -(-(_LEN.size + len(body)) // BUCKET) * BUCKET
    if total > MAX_PLAINTEXT:
        raise CardError(f"the case card is larger than {MAX_PLAINTEXT} bytes")
    return _LEN.pack(len(body)) + body + bytes(total - _LEN.size - len(body))


def unpad(data: bytes) -> bytes:
    if len(data) % BUCKET or not BUCKET <= len(data) <= MAX_PLAINTEXT:
        raise CardError("the case card has a wrong padded size")
    (n,) = _LEN.unpack_from(data)
    if n > len(data) - _LEN.size or any(data[_LEN.size + n:]):
        raise CardError("the case card's padding is malformed")
    return data[_LEN.size:_LEN.size + n]


def seal_card(card: Card, *, transfer_id: str, sender: str, signing_key: SigningKey,
              recipients: Sequence[age.Recipient], rand: Random = os.urandom) -> bytes:
    """The card signed for ``transfer_id`` by ``sender``, padded, encrypted to ``recipients``."""
    sig = signing_key.sign(signature_message(card, transfer_id=transfer_id,
                                             sender=sender)).signature
    body = _canonical({"card": card.to_json(),
                       "sig": base64.b64encode(sig).decode("ascii")})
    out = io.BytesIO()
    with age.Encryptor(out, recipients, rand=rand) as enc:
        enc.write(pad(body))
    return out.getvalue()


def open_card(blob: bytes, *, identities: Sequence[age.Identity], transfer_id: str,
              sender: str, sender_key: bytes) -> Card:
    """Decrypt, unpad, parse and verify a card; ``CardError`` for every way it fails.

    ``sender_key``: the Ed25519 key pinned for ``sender`` (never one the relay
    serves alongside the card). ``transfer_id`` and ``sender``: what the relay
    says the card belongs to; a card signed for another transfer or sender fails.
    """
    try:
        with age.Decryptor(io.BytesIO(blob), identities) as dec:
            padded = dec.read(MAX_PLAINTEXT + 1)
    except age.AgeError as exc:
        raise CardError("the case card cannot be decrypted; it may be corrupted or "
                        "tampered with") from exc
    try:
        obj = json.loads(unpad(padded))
    except (ValueError, RecursionError) as exc:
        raise CardError("the case card is not valid JSON") from exc
    if not isinstance(obj, dict) or set(obj) != {"card", "sig"}:
        raise CardError("the case card has the wrong shape")
    card = parse_card(obj["card"])
    try:
        sig = base64.b64decode(str(obj["sig"]), validate=True)
        if len(sig) != _SIG:
            raise ValueError("length")
        VerifyKey(sender_key).verify(
            signature_message(card, transfer_id=transfer_id, sender=sender), sig)
    except (ValueError, BadSignatureError) as exc:
        raise CardError("the case card's signature does not verify for this transfer and "
                        "sender; it may have been tampered with or moved") from exc
    return card


def _str(obj: Mapping[str, Any], key: str, limit: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise CardError(f"case card field {key} is malformed")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 53:
        raise CardError(f"case card field {key} is malformed")
    return value


def parse_card(obj: object) -> Card:
    """Strict: every field present with its type and bound, nothing else."""
    keys = {"v", "label", "note_line", "file_count", "total_size", "studies", "more_studies"}
    if not isinstance(obj, dict) or set(obj) != keys or obj.get("v") != VERSION:
        raise CardError("the case card has the wrong shape or version")
    raw = obj["studies"]
    if not isinstance(raw, list) or len(raw) > MAX_STUDIES:
        raise CardError("case card field studies is malformed")
    studies = []
    for s in raw:
        if not isinstance(s, dict) or set(s) != {"patient_name", "modalities", "study_date",
                                                 "image_count"}:
            raise CardError("a study on the case card is malformed")
        mods = s["modalities"]
        if (not isinstance(mods, list) or len(mods) > MAX_MODALITIES
                or not all(isinstance(m, str) and len(m) <= 16 for m in mods)):
            raise CardError("a study's modalities on the case card are malformed")
        studies.append(CardStudy(patient_name=_str(s, "patient_name", MAX_FIELD_CHARS),
                                 modalities=tuple(mods),
                                 study_date=_str(s, "study_date", MAX_FIELD_CHARS),
                                 image_count=_int(s, "image_count")))
    return Card(label=_str(obj, "label", MAX_LABEL_CHARS),
                note_line=_str(obj, "note_line", MAX_LINE_CHARS),
                file_count=_int(obj, "file_count"), total_size=_int(obj, "total_size"),
                studies=tuple(studies), more_studies=_int(obj, "more_studies"))
