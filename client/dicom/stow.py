"""STOW-RS (PS3.18 10.5) framing and answers: pure, bytes in and out.

The request is ``multipart/related; type="application/dicom"``, one part per
instance, its bytes exactly as in the file. The body is produced piece by
piece (``body``) and its length known beforehand (``body_length``), so a
study is streamed from disk with a Content-Length, never held in memory.

The answer decides what counts as stored, and doubt counts as not stored:
an instance is forwarded only if its SOP instance UID is listed in the
response's ReferencedSOPSequence (0008,1199) and not in its FailedSOPSequence
(0008,1198), whatever the HTTP status (200 all stored, 202 some failed, 409
none stored). A status outside those, a body that is not DICOM JSON, or an
instance the answer does not mention: not stored, sent again later.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

from .outcome import Outcome

MAX_RESPONSE = 16 * 1024 * 1024
_REFERENCED = "00081199"
_FAILED = "00081198"
_SOP_INSTANCE = "00081155"
_FAILURE_REASON = "00081197"
_WARNING_REASON = "00081196"
_BLOCK = 1 << 20


def new_boundary() -> str:
    # Random, so no instance's bytes can contain it by accident or design.
    return f"sealdrop-{secrets.token_hex(16)}"


def content_type(boundary: str) -> str:
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


def _head(boundary: str) -> bytes:
    return f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")


def _tail(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


def body_length(sizes: Sequence[int], boundary: str) -> int:
    return sum(len(_head(boundary)) + n + 2 for n in sizes) + len(_tail(boundary))


def body(parts: Sequence[Callable[[], BinaryIO]], sizes: Sequence[int], boundary: str
         ) -> Iterator[bytes]:
    """The request body: each ``parts[i]()`` opens a binary file of ``sizes[i]`` bytes.

    A file whose size changed under us would make the body disagree with its
    Content-Length: refused (ValueError) rather than sent wrong.
    """
    for opener, size in zip(parts, sizes, strict=True):
        yield _head(boundary)
        sent = 0
        with opener() as f:
            while block := f.read(_BLOCK):
                sent += len(block)
                if sent > size:
                    break
                yield block
        if sent != size:
            raise ValueError("a file changed size while it was being sent")
        yield b"\r\n"
    yield _tail(boundary)


def _uids(obj: Any, seq: str) -> dict[str, str]:
    """UID -> reason code text for the items of ``seq`` in a DICOM JSON object."""
    out: dict[str, str] = {}
    items = obj.get(seq, {}).get("Value", []) if isinstance(obj.get(seq), dict) else []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        uid = item.get(_SOP_INSTANCE, {})
        values = uid.get("Value") if isinstance(uid, dict) else None
        if not (isinstance(values, list) and values and isinstance(values[0], str)):
            continue
        reason = item.get(_FAILURE_REASON, {})
        code = reason.get("Value") if isinstance(reason, dict) else None
        out[values[0]] = (f"0x{code[0]:04X}" if isinstance(code, list) and code
                          and isinstance(code[0], int) else "")
    return out


def parse_response(status: int, ctype: str, raw: bytes, sent: Sequence[tuple[int, str]]
                   ) -> list[Outcome]:
    """Per instance sent (index, SOP instance UID), what the STOW-RS answer says."""
    def none(reason: str, code: str = f"HTTP {status}") -> list[Outcome]:
        return [Outcome(i, False, code, reason) for i, _ in sent]

    if status not in (200, 202, 409):
        return none("the DICOMweb server refused the request")
    if "json" not in ctype.lower():
        return none("the DICOMweb server's answer is not DICOM JSON; nothing counted stored")
    try:
        obj = json.loads(raw)
        if isinstance(obj, list) and len(obj) == 1:
            obj = obj[0]  # some servers wrap the one data set in an array
        if not isinstance(obj, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError):
        return none("the DICOMweb server's answer cannot be read; nothing counted stored")
    stored, failed = _uids(obj, _REFERENCED), _uids(obj, _FAILED)
    if status == 409:
        stored = {}  # "none stored": a listed one contradicts it, and doubt means not stored
    warned = _WARNING_REASON in obj
    out = []
    for index, uid in sent:
        if uid in failed:
            out.append(Outcome(index, False, failed[uid] or f"HTTP {status}",
                               "the DICOMweb server failed to store it"))
        elif uid in stored:
            out.append(Outcome(index, True, f"HTTP {status}" + (" (warning)" if warned else ""),
                               ""))
        else:
            out.append(Outcome(index, False, f"HTTP {status}",
                               "the DICOMweb server's answer does not list it as stored"))
    return out


def parse_orthanc(status: int, raw: bytes, index: int) -> Outcome:
    """Orthanc's REST ``POST /instances`` answer for one instance."""
    try:
        obj = json.loads(raw) if status == 200 else None
    except (ValueError, UnicodeDecodeError):
        obj = None
    word = obj.get("Status") if isinstance(obj, dict) else None
    if word in ("Success", "AlreadyStored"):
        return Outcome(index, True, f"HTTP 200 ({word})", "")
    return Outcome(index, False, f"HTTP {status}",
                   "Orthanc did not confirm it stored it" if status == 200
                   else "Orthanc refused it")
