"""Nothing a clinician sends reaches the relay in a readable form: contents, file
names, the note and DICOM tags carry a marker, and the relay's whole data folder,
a dump of its database and its logs are searched for it, plain, base64 and hex."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.e2e.kit import User, make_case, tree

MARKER = "ZQXLEAKMARK7"


def _encodings(marker: str) -> list[bytes]:
    raw = marker.encode()
    out = [raw, raw.lower(), raw.hex().encode(), raw.hex().upper().encode(),
           marker.encode("utf-16-le")]
    for shift in range(3):  # base64 of the marker at each alignment, minus the edges
        padded = b"\x00" * shift + raw
        b64 = base64.b64encode(padded)
        start = (shift * 4 + 2) // 3 + 1
        out.append(b64[start : start + 8])
        out.append(base64.urlsafe_b64encode(padded)[start : start + 8])
    return [e for e in out if len(e) >= 6]


def _hits(data: bytes, needles: list[bytes]) -> list[bytes]:
    return [n for n in needles if n in data]


def test_no_marker_on_the_relay(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", marker=MARKER)
    note = tmp_path / "note.txt"
    note.write_text(f"Patient {MARKER}: couronne 36")
    tid = practice.json("send", str(case), "--to", lab.handle, "--note-file", str(note))[
        "transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", tid, "--into", str(dest), "--json-phi")
    assert MARKER in got["received"][0]["note"]
    assert MARKER in str(got["received"][0]["dicom"])  # PatientName did travel, encrypted
    assert tree(dest / case.name) == tree(case)
    practice.json("status", tid)
    relay.stop()

    needles = _encodings(MARKER)
    sources: dict[str, bytes] = {}
    for p in relay.data.rglob("*"):
        if p.is_file():
            sources[str(p)] = p.read_bytes()
    sources["relay.log"] = relay.log.read_bytes()
    with relay.db() as db:
        sources["db dump"] = "\n".join(db.iterdump()).encode()
    assert any(len(v) > 1000 for v in sources.values())
    leaks = {k: _hits(v, needles) for k, v in sources.items() if _hits(v, needles)}
    assert leaks == {}
    # sanity: the search does find the marker where it is in clear
    assert _hits((dest / case.name / f"scan{MARKER}.stl").read_bytes(), needles)
    assert _hits(base64.b64encode(b"abc" + MARKER.encode()), needles)
