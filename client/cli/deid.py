"""``--deidentify`` and its options, shared by ``send`` and ``dicom-listen``.

The decorated command receives one parameter, ``deidentify``: the chosen
``DeidOptions``, or None without ``--deidentify`` (an option of it given alone
is a usage error, never silently ignored).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ..dicom.deidentify import DeidOptions
from ..errors import ClientError

# What the profile leaves, said after every de-identified send (docs/dicom.md).
DEID_LIMITS = ("Not removed: pixel data is sent untouched, so burned-in annotations and a "
               "CBCT's facial surface can still identify the patient; check the images.")

_OPTIONS = (
    click.option("--deidentify", is_flag=True, envvar="SEALDROP_DEIDENTIFY",
                 help="Send de-identified copies: DICOM through the PS3.15 Basic Application "
                 "Level Confidentiality Profile (consistent pseudonyms within the transfer), "
                 "photos (JPEG, PNG) without EXIF, GPS and other metadata. Other files are "
                 "sent as they are. Pixel data is untouched. Env SEALDROP_DEIDENTIFY."),
    click.option("--retain-uids", is_flag=True,
                 help="With --deidentify: keep the original UIDs (Retain UIDs Option)."),
    click.option("--retain-dates", is_flag=True,
                 help="With --deidentify: keep dates and times (Retain Longitudinal Temporal "
                 "Information, Full Dates Option)."),
    click.option("--retain-patient-characteristics", is_flag=True,
                 help="With --deidentify: keep sex, age, size, weight and the like (Retain "
                 "Patient Characteristics Option)."),
    click.option("--clean-descriptors", is_flag=True,
                 help="With --deidentify: keep descriptions and comments, cleaned of the "
                 "patient's identifiers, instead of removing them (Clean Descriptors Option)."),
)


def chosen(deidentify: bool, retain_uids: bool, retain_dates: bool,
           retain_patient_characteristics: bool, clean_descriptors: bool) -> DeidOptions | None:
    """The options chosen on the command line; None without ``--deidentify``."""
    options = DeidOptions(retain_uids=retain_uids, retain_dates=retain_dates,
                          retain_patient_characteristics=retain_patient_characteristics,
                          clean_descriptors=clean_descriptors)
    if not deidentify:
        if options.selected():
            flag = "--" + options.selected()[0].replace("_", "-")
            raise ClientError(f"{flag} is an option of --deidentify",
                              hint="add --deidentify to send de-identified copies")
        return None
    return options


def deid_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the five options to a click command; it gets ``deidentify``."""

    @functools.wraps(f)
    def command(*args: Any, deidentify: bool, retain_uids: bool, retain_dates: bool,
                retain_patient_characteristics: bool, clean_descriptors: bool,
                **kwargs: Any) -> Any:
        return f(*args, deidentify=chosen(deidentify, retain_uids, retain_dates,
                                          retain_patient_characteristics, clean_descriptors),
                 **kwargs)

    wrapped: Callable[..., Any] = command
    for option in reversed(_OPTIONS):
        wrapped = option(wrapped)
    return wrapped
