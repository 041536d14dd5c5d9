"""The case card of a send (crypto/card.py, docs/card.md): made and stored on the relay.

Made from what the plan already fixed (note, files, DICOM summary) and the
sender's label, sealed to the same age recipients as the transfer (hybrid
keys), signed for the relay's transfer id, and stored before the first chunk,
so the card is there when the transfer becomes visible (the relay lists
only complete transfers) and cannot change after (``complete`` fixes it).
A resumed send stores it again: the relay keeps the last one until ``complete``.

An older relay without the card endpoint: the send goes on without a card,
and the recipients' inbox falls back to what the relay says.
"""

from __future__ import annotations

from collections.abc import Callable

from sealdrop.crypto.card import Card, CardError, CardStudy, make_card, seal_card
from sealdrop.crypto.protocol import MAX_CARD_BYTES

from ..dicom.display import read_studies
from ..profile.session import Session
from .plan import SealPlan, age_recipients


def build_card(plan: SealPlan, label: str) -> Card:
    studies = read_studies(plan.dicom) or []
    return make_card(
        label=label, note=plan.note, file_count=len(plan.files),
        total_size=sum(f.size for f in plan.files),
        studies=[CardStudy(patient_name=s.patient_name, modalities=s.modalities,
                           study_date=s.study_date, image_count=s.instance_count)
                 for s in studies])


def attach_card(session: Session, relay_id: str, plan: SealPlan, label: str,
                warn: Callable[[str], None]) -> bool:
    """Seal and store the card of ``relay_id``; False (said once) if the relay has no
    card endpoint or the card cannot be made. Relay failures propagate: the send
    stops there and resumes, card first, when run again."""
    try:
        blob = seal_card(build_card(plan, label), transfer_id=relay_id,
                         sender=session.identity.handle,
                         signing_key=session.identity.signing_key,
                         recipients=age_recipients(plan.recipient_bundles))
        if len(blob) > MAX_CARD_BYTES:
            # Each hybrid recipient adds about 1.6 KB of age header: past ~20
            # recipients the card outgrows the relay's bound.
            raise CardError(f"sealed for so many recipients it exceeds {MAX_CARD_BYTES} bytes")
    except CardError as exc:
        warn(f"warning: no case card for this transfer ({exc}); it is sent without one")
        return False
    if not session.relay.put_card(relay_id, blob):
        warn("note: this relay does not keep case cards (an older version); the transfer "
             "is sent without one, and the recipients see only sender, size and time")
        return False
    return True
