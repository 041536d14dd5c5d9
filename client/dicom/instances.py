"""The DICOM instances of a received transfer, checked before any is forwarded.

A PACS must never see half a study because one file of it could not be
sent. So before the first C-STORE or STOW-RS request, every file the signed
manifest calls ``application/dicom`` is read back from where ``receive``
placed it and must:

- still hash to the SHA-256 the sender signed (the destination folder is the
  lab's; a file changed there since it was verified is not what the sender
  sent, and is not forwarded in the sender's name);
- be a DICOM Part 10 file whose meta information names its SOP class, SOP
  instance and transfer syntax (what association negotiation needs), and
  whose data set has a SOP class and instance UID;
- be whole, by the same checks the sender's scan makes (``header.read_header``,
  ``integrity``: every element ends inside the file, compressed pixel data
  reaches its delimiter, an image has its pixels), values seeked past, not
  read: memory stays flat in the file size; a deflated data set must also
  inflate to its end.

One unreadable file and nothing is forwarded (``InstancesError`` names it by
its path in the transfer). Pure reading: nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClientError
from .header import read_header
from .integrity import Malformed

DICOM_MEDIA_TYPE = "application/dicom"


class InstancesError(ClientError):
    """A DICOM file of the transfer cannot be forwarded; none of them is."""


@dataclass(frozen=True, slots=True)
class PlacedFile:
    """A file as ``receive`` placed it: its path in the transfer, on disk, and its hash."""

    path: str
    placed: Path
    sha256: str


@dataclass(frozen=True, slots=True)
class Instance:
    """One forwardable DICOM instance. UIDs identify a patient's study (PS3.15):
    they go to the PACS, never to logs or JSON output."""

    index: int  # position among the transfer's DICOM files
    path: str  # in the transfer (the sender's name)
    placed: Path
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    study: str
    size: int
    # The file meta names the same SOP class and instance as the data set. Not
    # always so in the wild (pydicom's own rtplan.dcm); the data set is what
    # the PACS keeps, so such a file is sent from its data set, not its meta.
    meta_matches: bool = True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _check_deflated(path: Path, offset: int) -> None:
    # pydicom inflates a cut stream without complaint: the stream must reach
    # its end marker. Inflated a megabyte at a time and dropped (no zip bomb).
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    with open(path, "rb") as fp:
        fp.seek(offset)
        while (block := fp.read(1 << 20)) and not d.eof:
            while block and not d.eof:
                d.decompress(block, 1 << 20)
                block = d.unconsumed_tail
    if not d.eof:
        raise ValueError("the deflated data set is cut short")


def read_instance(index: int, f: PlacedFile) -> Instance:
    """Check ``f`` (see the module text) and describe it; InstancesError if it fails."""
    import pydicom
    from pydicom.uid import UID
    from pynetdicom.dsutils import split_dataset

    def bad(why: str) -> InstancesError:
        return InstancesError(
            f"{f.path} cannot be forwarded: {why}; none of the transfer's files was sent",
            hint=f"the received files stay in {f.placed.parent}; fix or remove the cause, "
            "then run the forward again (`sealdrop forward`)")

    try:
        if _sha256(f.placed) != f.sha256:
            raise bad("it changed since it was received and verified")
        size = os.stat(f.placed).st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's tolerance warnings: we judge ourselves
            meta, offset = split_dataset(f.placed)
            missing = [k for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID",
                                   "TransferSyntaxUID") if not meta.get(k)]
            if missing:
                raise bad(f"its DICOM file meta lacks {', '.join(missing)}")
            ts = UID(str(meta.TransferSyntaxUID))
            if not ts.is_transfer_syntax:
                raise bad(f"unknown transfer syntax {str(ts)[:64]}")
            if ts.is_deflated:
                _check_deflated(f.placed, offset)
            # Framed whole, an image with its pixels: the sender's scan's own
            # checks (``header.read_header``), values seeked past, not loaded.
            with open(f.placed, "rb") as fp:
                read_header(fp, size)
            # The data set itself, values deferred (not loaded): a deflated one
            # is inflated by pydicom, which fails on a cut stream.
            ds = pydicom.dcmread(f.placed, defer_size=1024)
            sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    except InstancesError:
        raise
    except Malformed as exc:
        raise bad(str(exc)) from exc
    except FileNotFoundError:
        raise bad("it is no longer where it was received") from None
    except OSError as exc:
        raise bad(f"it cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on bad input
        raise bad(f"it is not readable DICOM ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not sop_class or not sop_instance:
        raise bad("its data set has no SOP class or SOP instance UID")
    return Instance(index=index, path=f.path, placed=f.placed, sop_class=str(sop_class),
                    sop_instance=str(sop_instance), transfer_syntax=str(ts),
                    study=str(ds.get("StudyInstanceUID", "")), size=size,
                    meta_matches=(str(sop_class) == str(meta.MediaStorageSOPClassUID) and
                                  str(sop_instance) == str(meta.MediaStorageSOPInstanceUID)))


def read_instances(files: Sequence[PlacedFile]) -> list[Instance]:
    """Every file checked, or InstancesError for the first that fails (none forwarded)."""
    return [read_instance(i, f) for i, f in enumerate(files)]
