"""STOW-RS framing and answers (client/dicom/stow.py): the multipart body a server
parses, and what counts as stored. Doubt never counts: a garbled, hostile or
contradictory answer leaves every instance unforwarded."""

from __future__ import annotations

import email.parser
import email.policy
import json
from pathlib import Path

import pytest

from sealdrop.client.dicom import stow

UIDS = ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
SENT = list(enumerate(UIDS))


def _seq(uids: list[str], reason: int | None = None) -> dict[str, object]:
    items = []
    for u in uids:
        item: dict[str, object] = {"00081155": {"vr": "UI", "Value": [u]}}
        if reason is not None:
            item["00081197"] = {"vr": "US", "Value": [reason]}
        items.append(item)
    return {"vr": "SQ", "Value": items}


def _answer(stored: list[str], failed: list[str] | None = None, **extra: object) -> bytes:
    obj: dict[str, object] = {"00081199": _seq(stored), **extra}
    if failed:
        obj["00081198"] = _seq(failed, 0xA700)
    return json.dumps(obj).encode()


def test_body_is_multipart_related_with_each_file_byte_for_byte(tmp_path: Path) -> None:
    blobs = [b"DICM" + bytes(range(256)) * 3, b"", b"\r\n--not-a-boundary\r\n" * 10]
    paths = []
    for n, b in enumerate(blobs):
        p = tmp_path / f"f{n}"
        p.write_bytes(b)
        paths.append(p)
    boundary = stow.new_boundary()
    sizes = [len(b) for b in blobs]
    body = b"".join(stow.body([lambda p=p: open(p, "rb") for p in paths], sizes, boundary))
    assert len(body) == stow.body_length(sizes, boundary)
    # Parsed back by the standard library's MIME parser, as a server would.
    head = f"Content-Type: {stow.content_type(boundary)}\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert msg.get_content_type() == "multipart/related"
    assert msg.get_param("type") == "application/dicom"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/dicom"] * 3
    assert [p.get_payload(decode=True) for p in parts] == blobs


def test_boundaries_are_random() -> None:
    assert len({stow.new_boundary() for _ in range(50)}) == 50


@pytest.mark.parametrize("grow", [-1, 1])
def test_a_file_changing_size_while_sent_is_refused(tmp_path: Path, grow: int) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    pieces = stow.body([lambda: open(p, "rb")], [100 + grow], "b")
    with pytest.raises(ValueError, match="changed size"):
        b"".join(pieces)


def test_200_marks_only_what_the_answer_lists() -> None:
    out = stow.parse_response(200, "application/dicom+json", _answer(UIDS[:2]), SENT)
    assert [o.stored for o in out] == [True, True, False]
    assert "does not list it" in out[2].reason


def test_202_partial_with_failed_sop_sequence() -> None:
    out = stow.parse_response(202, "application/dicom+json",
                              _answer([UIDS[0]], [UIDS[1], UIDS[2]]), SENT)
    assert [o.stored for o in out] == [True, False, False]
    assert out[1].status == "0xA700"


def test_an_instance_both_listed_and_failed_is_not_stored() -> None:
    out = stow.parse_response(200, "application/dicom+json", _answer(UIDS, [UIDS[1]]), SENT)
    assert [o.stored for o in out] == [True, False, True]


def test_409_is_none_stored_even_if_the_answer_lists_some() -> None:
    out = stow.parse_response(409, "application/dicom+json", _answer(UIDS), SENT)
    assert not any(o.stored for o in out)


def test_warning_reason_is_stored_and_said() -> None:
    raw = _answer(UIDS, **{"00081196": {"vr": "US", "Value": [0xB000]}})
    out = stow.parse_response(200, "application/dicom+json", raw, SENT)
    assert all(o.stored for o in out) and out[0].status == "HTTP 200 (warning)"


def test_an_answer_wrapped_in_an_array_is_read() -> None:
    raw = b"[" + _answer(UIDS) + b"]"
    assert all(o.stored for o in stow.parse_response(200, "application/dicom+json", raw,
                                                     SENT))


@pytest.mark.parametrize("status,ctype,raw", [
    (200, "application/dicom+json", b""),
    (200, "application/dicom+json", b"{not json"),
    (200, "application/dicom+json", b"\xff\xfe\x00garbage"),
    (200, "application/dicom+json", b"[]"),
    (200, "application/dicom+json", b"[1, 2]"),
    (200, "application/dicom+json", b'"stored"'),
    (200, "application/dicom+json", b'{"00081199": "all of them"}'),
    (200, "application/dicom+json", b'{"00081199": {"Value": "1.2.3.1"}}'),
    (200, "application/dicom+json", b'{"00081199": {"Value": [{"00081155": "1.2.3.1"}]}}'),
    (200, "application/dicom+json",
     b'{"00081199": {"Value": [{"00081155": {"Value": [12]}}]}}'),
    (200, "application/dicom+json", b'{"00081199": {"Value": [null, 3, "x"]}}'),
    (200, "text/html", _answer(UIDS)),  # a proxy's page, not the server's answer
    (200, "application/dicom+xml", b"<NativeDicomModel/>"),
    (204, "application/dicom+json", _answer(UIDS)),
    (302, "application/dicom+json", _answer(UIDS)),
    (400, "application/dicom+json", _answer(UIDS)),
    (500, "application/dicom+json", _answer(UIDS)),
])
def test_doubt_is_never_stored(status: int, ctype: str, raw: bytes) -> None:
    out = stow.parse_response(status, ctype, raw, SENT)
    assert [o.index for o in out] == [0, 1, 2]
    assert not any(o.stored for o in out)
    assert all(o.reason for o in out)


def test_a_uid_from_another_request_does_not_count() -> None:
    out = stow.parse_response(200, "application/dicom+json", _answer(["9.9.9"]), SENT)
    assert not any(o.stored for o in out)


@pytest.mark.parametrize("status,raw,stored", [
    (200, b'{"ID": "x", "Status": "Success"}', True),
    (200, b'{"ID": "x", "Status": "AlreadyStored"}', True),
    (200, b'{"ID": "x", "Status": "Failure"}', False),
    (200, b'{"Status": 1}', False),
    (200, b"[]", False),
    (200, b"nonsense", False),
    (400, b'{"Status": "Success"}', False),
    (500, b"", False),
])
def test_orthanc_rest_answers(status: int, raw: bytes, stored: bool) -> None:
    o = stow.parse_orthanc(status, raw, 7)
    assert (o.index, o.stored) == (7, stored)


def test_body_streams_block_by_block(tmp_path: Path) -> None:
    """The body is produced in pieces no larger than a block: never a whole file."""
    p = tmp_path / "big"
    p.write_bytes(b"\0" * (3 * 1024 * 1024 + 5))
    sizes = [p.stat().st_size]
    biggest = max(len(piece) for piece in stow.body([lambda: open(p, "rb")], sizes, "b"))
    assert biggest <= 1024 * 1024
