"""The client's cosignature policy: N of the witnesses this profile trusts.

A checkpoint signed by the relay alone proves only what the relay says. One
that also carries valid cosignatures from N independent witnesses proves that
those N saw this tree as the latest, consistent with everything they cosigned
before: a relay that shows this practice a history it hides from others would
need N witnesses to go along with it.

Only cosignatures from the configured vkeys count; a line for a known witness
that does not verify (tampered, or over another checkpoint) counts for nothing
and is named in the refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealdrop.crypto.errors import LogFormatError, NoteError, SealdropCryptoError
from sealdrop.crypto.tlog.cosignature import CosignatureVerifier
from sealdrop.crypto.tlog.note import NoteVerifier, open_note

from ..errors import ClientError, CosignatureError

_HINT = ("the relay may be showing this practice a history its witnesses never saw. "
         "Do not send or receive until it is resolved: call the relay's operator (the "
         "relay must be configured with these witnesses, [[witness]] in relay.toml, and "
         "they must be running), call the witnesses' operators, and tell your IT provider")


def _verifier(vkey: str) -> CosignatureVerifier:
    try:
        return CosignatureVerifier.from_vkey(vkey)
    except (SealdropCryptoError, ValueError) as exc:
        raise ClientError(f"the witness key {vkey!r} in this profile is not a cosignature "
                          f"vkey: {exc}", hint="sealdrop config witness remove VKEY") from exc


def check_cosignatures(note: str, log_verifier: NoteVerifier, witnesses: Sequence[str],
                       need: int) -> list[str]:
    """The names of the trusted witnesses with a valid cosignature on ``note``.

    The note must carry the relay's own valid signature (NoteError otherwise).
    Raises CosignatureError when fewer than ``need`` distinct witnesses cosigned.
    """
    open_note(note, [log_verifier])
    _, _, signature_block = note.partition("\n\n")
    valid: list[str] = []
    invalid: list[str] = []
    missing: list[str] = []
    for vkey in dict.fromkeys(witnesses):  # one vote per key, in the configured order
        verifier = _verifier(vkey)
        missing.append(verifier.name)
        try:
            opened = open_note(note, [verifier])
        except (NoteError, LogFormatError):
            if any(line.startswith(f"\u2014 {verifier.name} ")
                   for line in signature_block.split("\n")):
                invalid.append(verifier.name)
            continue
        if verifier.name in opened.signatures:
            valid.append(verifier.name)
            missing.pop()
    if len(valid) < need:
        found = ", ".join(valid) if valid else "none"
        bad = f"; a cosignature line that does not verify from {', '.join(invalid)}" \
            if invalid else ""
        raise CosignatureError(
            f"the relay's checkpoint carries {len(valid)} valid witness cosignature"
            f"{'' if len(valid) == 1 else 's'} (from: {found}){bad}; this profile "
            f"requires {need} (none from: {', '.join(missing)})", hint=_HINT)
    return valid
