"""Reading the case cards the relay serves in the inbox (crypto/card.py, docs/card.md).

Each card is decrypted with this profile's keys and its signature checked
against the signing key **pinned** for the sender the relay names, for the
transfer id the relay names. So a card the relay changed, moved to another
transfer or to another sender's, or that was not sealed for us, does not
verify, and is shown as such.

What is shown of a card depends on who the sender is here (``CardView.state``):

* ``verified`` — a verified contact's card: its claims are shown as theirs.
* ``unverified`` — a pinned contact whose safety number was never compared: the
  claims are shown, marked unverified (the key is the one first seen, which is
  what `receive --allow-unverified` trusts too).
* ``unknown`` — no pinned key: the card is not opened and its claims are not
  shown. Why: anyone with an account can write "DUPONT^Marie, Couronne 36" on a
  card; shown in a lab's list, a stranger's card would pass for a real case.
* ``invalid`` — it does not decrypt, parse or verify: shown loudly, and the
  line falls back to what the relay says. The download itself is still judged
  by the signed manifest, as always.
* ``none`` — no card (an older sender or relay): the relay's word only.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from sealdrop.crypto.card import Card, CardError, open_card
from sealdrop.crypto.protocol import MAX_CARD_BYTES

from ..profile.session import Session

# A DICOM Modality (CS) as JSON without --json-phi shows it; anything else
# could carry a name into a log collector (client/dicom/display.py does the same).
_CS = re.compile(r"[A-Z0-9 _]{1,16}")
VERIFIED, UNVERIFIED, UNKNOWN, INVALID, NONE = (
    "verified", "unverified", "unknown", "invalid", "none")


@dataclass(frozen=True, slots=True)
class CardView:
    state: str
    card: Card | None = None  # only for verified and unverified
    problem: str = ""  # why an invalid card is invalid


def read_card(session: Session, item: dict[str, Any]) -> CardView:
    """The card of one inbox item, judged (module text). Never raises."""
    raw = item.get("card")
    if raw is None:
        return CardView(NONE)
    sender = item.get("sender")
    contact = session.contacts.get(sender) if isinstance(sender, str) else None
    if contact is None:
        return CardView(UNKNOWN)
    try:
        if not isinstance(raw, str) or len(raw) > 2 * MAX_CARD_BYTES:
            raise CardError("the relay served a malformed card")
        blob = base64.b64decode(raw, validate=True)
        card = open_card(blob, identities=session.identity.age_identities(),
                         transfer_id=str(item["id"]), sender=contact.handle,
                         sender_key=contact.bundle.signing_key)
    except (CardError, binascii.Error, ValueError) as exc:
        return CardView(INVALID, problem=str(exc))
    return CardView(VERIFIED if contact.verified else UNVERIFIED, card)


def card_json(view: CardView, *, phi: bool) -> dict[str, Any]:
    """The card for ``inbox --json``: label, note line, patient names and study
    dates only with ``phi`` (docs/dicom.md, "Patient data in JSON")."""
    out: dict[str, Any] = {"state": view.state}
    if view.problem:
        out["problem"] = view.problem
    c = view.card
    if c is None:
        return out
    out.update(file_count=c.file_count, total_size=c.total_size,
               more_studies=c.more_studies)
    studies = []
    for s in c.studies:
        study: dict[str, Any] = {
            "modalities": [m if phi or _CS.fullmatch(m) else "?" for m in s.modalities],
            "image_count": s.image_count}
        if phi:
            study.update(patient_name=s.patient_name, study_date=s.study_date)
        studies.append(study)
    out["studies"] = studies
    if phi:
        out.update(label=c.label, note_line=c.note_line)
    return out
