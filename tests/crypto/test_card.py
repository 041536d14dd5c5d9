"""The case card (crypto/card.py, docs/card.md): sealed for the recipients, signed
for one transfer id and sender, padded to a bucket; every other card refused."""

from __future__ import annotations

import base64
import io
import json
import os

import pytest
from nacl.signing import SigningKey

from sealdrop.crypto import age
from sealdrop.crypto.card import (
    BUCKET,
    MAX_PLAINTEXT,
    MAX_STUDIES,
    Card,
    CardError,
    CardStudy,
    first_line,
    make_card,
    open_card,
    pad,
    seal_card,
    unpad,
)

TID, OTHER_TID = "a" * 32, "b" * 32
SK = SigningKey(b"\x01" * 32)


def _keys() -> tuple[list[age.Recipient], list[age.Identity]]:
    ident = age.X25519Identity.generate(os.urandom)
    return [ident.recipient()], [ident]


def _card() -> Card:
    return make_card(label="Couronne 36 DUPONT", note="\n  Teinte A2  \nsecond line",
                     file_count=3, total_size=1_200_000_000,
                     studies=[CardStudy("DUPONT^Marie", ("CT",), "20261130", 412)])


def test_round_trip_and_what_the_card_says() -> None:
    rec, ids = _keys()
    blob = seal_card(_card(), transfer_id=TID, sender="cabinet-martin", signing_key=SK,
                     recipients=rec)
    card = open_card(blob, identities=ids, transfer_id=TID, sender="cabinet-martin",
                     sender_key=bytes(SK.verify_key))
    assert card == _card()
    assert card.note_line == "Teinte A2" and card.studies[0].image_count == 412


def test_a_card_moved_to_another_transfer_or_sender_does_not_verify() -> None:
    rec, ids = _keys()
    blob = seal_card(_card(), transfer_id=TID, sender="cabinet-martin", signing_key=SK,
                     recipients=rec)
    with pytest.raises(CardError, match="moved"):
        open_card(blob, identities=ids, transfer_id=OTHER_TID, sender="cabinet-martin",
                  sender_key=bytes(SK.verify_key))
    with pytest.raises(CardError, match="moved"):
        open_card(blob, identities=ids, transfer_id=TID, sender="cabinet-other",
                  sender_key=bytes(SK.verify_key))
    # signed by someone else than the pinned key
    with pytest.raises(CardError, match="signature"):
        open_card(blob, identities=ids, transfer_id=TID, sender="cabinet-martin",
                  sender_key=bytes(SigningKey(b"\x02" * 32).verify_key))


def test_a_tampered_or_foreign_card_does_not_open() -> None:
    rec, ids = _keys()
    blob = bytearray(seal_card(_card(), transfer_id=TID, sender="c", signing_key=SK,
                               recipients=rec))
    blob[-5] ^= 1
    with pytest.raises(CardError, match="cannot be decrypted"):
        open_card(bytes(blob), identities=ids, transfer_id=TID, sender="c",
                  sender_key=bytes(SK.verify_key))
    _, not_mine = _keys()
    good = seal_card(_card(), transfer_id=TID, sender="c", signing_key=SK, recipients=rec)
    with pytest.raises(CardError, match="cannot be decrypted"):
        open_card(good, identities=not_mine, transfer_id=TID, sender="c",
                  sender_key=bytes(SK.verify_key))


def test_a_validly_encrypted_card_with_a_changed_claim_fails_the_signature() -> None:
    """Whoever can encrypt to the lab (anyone: the keys are public) may re-seal a
    card with another label; the sender's signature is what catches it."""
    rec, ids = _keys()
    blob = seal_card(_card(), transfer_id=TID, sender="c", signing_key=SK, recipients=rec)
    with age.Decryptor(io.BytesIO(blob), ids) as dec:
        obj = json.loads(unpad(dec.read()))
    obj["card"]["label"] = "Bridge 11-21 MARTIN"
    out = io.BytesIO()
    with age.Encryptor(out, rec) as enc:
        enc.write(pad(json.dumps(obj).encode()))
    with pytest.raises(CardError, match="signature"):
        open_card(out.getvalue(), identities=ids, transfer_id=TID, sender="c",
                  sender_key=bytes(SK.verify_key))


def test_padding_reveals_only_the_bucket() -> None:
    rec, _ = _keys()
    small = seal_card(make_card(label="", note="", file_count=1, total_size=1, studies=[]),
                      transfer_id=TID, sender="c", signing_key=SK, recipients=rec)
    full = seal_card(make_card(label="L" * 200, note="N" * 200, file_count=99,
                               total_size=10**12, studies=[
                                   CardStudy("P" * 64, ("CT", "MR"), "20260101", 5)] * 3),
                     transfer_id=TID, sender="c", signing_key=SK, recipients=rec)
    assert len(small) == len(full)  # both in the first 4 KiB bucket
    assert len(pad(b"x" * (BUCKET - 4))) == BUCKET and len(pad(b"x" * (BUCKET - 3))) == 2 * BUCKET
    with pytest.raises(CardError):
        pad(b"x" * MAX_PLAINTEXT)


@pytest.mark.parametrize("bad", [
    b"",  # empty
    b"\x00" * 100,  # not a bucket
    (5).to_bytes(4, "big") + b"hello" + b"\x01" + bytes(BUCKET - 10),  # padding not zero
    (BUCKET).to_bytes(4, "big") + bytes(BUCKET - 4),  # length past the end
])
def test_malformed_padding_is_refused(bad: bytes) -> None:
    with pytest.raises(CardError):
        unpad(bad)


def test_bounds_cut_long_texts_and_count_extra_studies() -> None:
    many = [CardStudy("X" * 500, ("CT",) * 20, "2026", i) for i in range(MAX_STUDIES + 3)]
    card = make_card(label="  " + "L" * 500, note="", file_count=1, total_size=1, studies=many)
    assert len(card.label) == 200 and card.more_studies == 3
    assert len(card.studies) == MAX_STUDIES and len(card.studies[0].patient_name) == 64
    assert first_line("\n\n  x  \ny") == "x" and first_line("") == ""


def test_unknown_fields_and_wrong_types_are_refused() -> None:
    rec, ids = _keys()
    for change in ({"extra": 1}, {"file_count": "3"}, {"v": 2}, {"studies": "CT"},
                   {"total_size": True}):
        obj = {**_card().to_json(), **change}
        msg = b"".join([b"sealdrop case card v1\x00", TID.encode(), b"\x00c\x00",
                        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()])
        body = json.dumps({"card": obj, "sig": base64.b64encode(SK.sign(msg).signature)
                           .decode()}).encode()
        out = io.BytesIO()
        with age.Encryptor(out, rec) as enc:
            enc.write(pad(body))
        with pytest.raises(CardError):
            open_card(out.getvalue(), identities=ids, transfer_id=TID, sender="c",
                      sender_key=bytes(SK.verify_key))
