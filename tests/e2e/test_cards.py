"""Issue 12, the case card and the sender's controls, through the real CLI and relay.

Thirty cases from three senders told apart by their cards; a card tampered with
or swapped by the relay, marked and not trusted while the receive itself is
still judged by the manifest; an older relay without cards; retract; and the
"you sent these already" question."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pydicom
import pytest
from aiohttp import web
from pydicom.data import get_testdata_file

from tests.e2e.kit import Relay, User, free_port, make_case, tree


def _tiny_case(root: Path, patient: str) -> Path:
    """One small DICOM file naming ``patient``: a case the lab must tell apart."""
    case = root / f"case-{patient.replace('^', '-')}"
    case.mkdir(parents=True)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = patient
    ds.save_as(case / "IM0001.dcm")
    return case


def _by_id(inbox: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {t["id"]: t for t in inbox["transfers"]}


def test_thirty_cases_from_three_senders_are_told_apart_by_their_cards(
        tmp_path: Path, relay: Relay, lab: User) -> None:
    senders = []
    for name in ("cabinet-a", "cabinet-b", "cabinet-c"):
        u = User(tmp_path, name, relay)
        u.init()
        u.trust(lab)
        lab.trust(u)
        senders.append(u)
    expected = {}
    for i in range(30):
        u = senders[i % 3]
        patient = f"PATIENT{i:02d}^Marie"
        label = f"Couronne {i:02d} {u.handle}"
        sent = u.json("send", str(_tiny_case(tmp_path / u.handle, patient)), "--to",
                      lab.handle, "--label", label)
        expected[sent["transfer_id"]] = (u.handle, label, patient)
    listed = lab.json("inbox", "--json-phi")
    got = {tid: (t["sender"], t["card"]["label"], t["card"]["studies"][0]["patient_name"])
           for tid, t in _by_id(listed).items()}
    assert got == expected  # every case, each with its own label and patient
    assert all(t["card"]["state"] == "verified" and t["card"]["file_count"] == 1
               and t["card"]["studies"][0]["modalities"] == ["CT"]
               for t in listed["transfers"])
    # without --json-phi: counts and modalities, no label, note or patient
    plain = lab.json("inbox")
    for t in plain["transfers"]:
        card = t["card"]
        assert "label" not in card and "note_line" not in card
        assert card["studies"] == [{"modalities": ["CT"], "image_count": 1}]
    assert "PATIENT" not in str(plain) and "Couronne" not in str(plain)
    # the human line: sender ✓, modality and images, patient, label, size, age
    text = lab.run("inbox").stdout
    assert "cabinet-b ✓ · CT 1 img · PATIENT01^Marie · Couronne 01 cabinet-b · 1 file" in text


def test_a_tampered_or_swapped_card_is_marked_and_the_receive_judged_by_the_manifest(
        tmp_path: Path, relay: Relay, pair: tuple[User, User]) -> None:
    practice, lab = pair
    a = practice.json("send", str(make_case(tmp_path, marker="A")), "--to", lab.handle,
                      "--label", "Couronne 36 DUPONT")["transfer_id"]
    b = practice.json("send", str(make_case(tmp_path, marker="B")), "--to", lab.handle,
                      "--label", "Bridge 11-21 MARTIN")["transfer_id"]
    c = practice.json("send", str(make_case(tmp_path, marker="C")), "--to", lab.handle,
                      "--label", "Inlay 46 ROUX")["transfer_id"]
    # the relay swaps the cards of A and B, and flips a bit in C's
    (card_a,), (card_b,) = (relay.sql("SELECT card FROM transfer_cards WHERE transfer_id=?", t)[0]
                            for t in (a, b))
    with relay.db() as db:
        db.execute("UPDATE transfer_cards SET card=? WHERE transfer_id=?", (card_b, a))
        db.execute("UPDATE transfer_cards SET card=? WHERE transfer_id=?", (card_a, b))
        (card_c,), = db.execute("SELECT card FROM transfer_cards WHERE transfer_id=?", (c,))
        flipped = bytearray(card_c)
        flipped[len(flipped) // 2] ^= 1
        db.execute("UPDATE transfer_cards SET card=? WHERE transfer_id=?", (bytes(flipped), c))
    listed = _by_id(lab.json("inbox", "--json-phi"))
    for tid in (a, b, c):
        card = listed[tid]["card"]
        assert card["state"] == "invalid" and "label" not in card and "studies" not in card
    assert "moved" in listed[a]["card"]["problem"]
    assert "cannot be decrypted" in listed[c]["card"]["problem"]
    text = lab.run("inbox").stdout
    assert text.count("✗ card does not verify") == 3
    assert "MARTIN" not in text and "DUPONT" not in text  # nothing of a swapped card shown
    # the transfers themselves are untouched: received and verified by the manifest
    into = tmp_path / "into"
    into.mkdir()
    lab.run("receive", a, "--into", str(into))
    assert any(p.endswith("scanA.stl") for p in tree(into))  # A's own files, verified


@pytest.fixture
def old_relay(relay: Relay) -> Iterator[str]:
    """A STUB in front of the real relay that answers 404 to the card route, as a
    relay from before case cards does (its router has no such route), and passes
    everything else through unchanged. A stub because the previous relay's code is
    not installed here; only the route's absence matters to the client."""
    loop = asyncio.new_event_loop()
    port = free_port()
    ready = threading.Event()
    runner: list[web.AppRunner] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/card"):
            raise web.HTTPNotFound()
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("host", "content-length", "transfer-encoding")}
            async with s.request(request.method, relay.url + request.path_qs,
                                 headers=headers, data=await request.read()) as r:
                body = await r.read()
                keep = {k: v for k, v in r.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding",
                                             "content-encoding", "connection")}
                return web.Response(status=r.status, body=body, headers=keep)

    async def start() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        run = web.AppRunner(app)
        await run.setup()
        await web.TCPSite(run, "127.0.0.1", port).start()
        runner.append(run)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()),
                                              loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def test_an_old_relay_without_cards_still_carries_the_case(
        tmp_path: Path, relay: Relay, old_relay: str) -> None:
    practice, lab = User(tmp_path, "cabinet-old", relay), User(tmp_path, "labo-old", relay)
    for u in (practice, lab):
        u.run("init", "--relay", old_relay, "--handle", u.handle, "--invite", relay.invite(),
              "--work-factor", "10")
    practice.trust(lab)
    lab.trust(practice)
    sent = practice.run("send", str(make_case(tmp_path)), "--to", lab.handle,
                        "--label", "Couronne 36")
    assert sent.stderr.count("does not keep case cards") == 1  # said once, not an error
    (item,) = lab.json("inbox")["transfers"]
    assert item["card"] == {"state": "none"}
    line = lab.run("inbox").stdout
    assert "cabinet-old ✓ ·" in line and "card does not verify" not in line
    (tmp_path / "into").mkdir()
    lab.run("receive", item["id"], "--into", str(tmp_path / "into"))
    assert tree(tmp_path / "into")


def test_a_retracted_transfer_never_reaches_its_recipient(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid = practice.json("send", str(make_case(tmp_path)), "--to", lab.handle,
                        "--label", "Couronne 36 DUPONT")["transfer_id"]
    out = practice.json("retract", tid)
    assert out["transfer_id"] == tid and out["already_received_by"] == []
    assert lab.json("inbox")["transfers"] == []
    (tmp_path / "into").mkdir()
    gone = lab.run("receive", tid, "--into", str(tmp_path / "into"), check=False)
    assert gone.returncode == 1 and "the sender took it back" in gone.stderr
    assert tree(tmp_path / "into") == {}
    (row,) = practice.json("status")["transfers"]
    assert row["id"] == tid and row["state"] == "retracted" and row["retracted_at"]
    assert row["label"] is None  # a label names a patient: only with --json-phi
    (row,) = practice.json("status", "--json-phi")["transfers"]
    assert row["label"] == "Couronne 36 DUPONT"
    text = practice.run("status").stdout
    assert "retracted" in text and "Couronne 36 DUPONT" in text
    again = practice.run("retract", tid, check=False)
    assert again.returncode == 1 and "no transfer" in again.stderr


def test_sending_the_same_files_again_within_a_day_needs_again(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    case = make_case(tmp_path)
    first = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    refused = practice.run("send", str(case), "--to", lab.handle, "--json", check=False)
    assert refused.returncode == 1
    assert f"you sent these 4 file(s) to {lab.handle} at" in refused.stderr
    assert first in refused.stderr and "--again" in refused.stderr
    assert len(lab.json("inbox")["transfers"]) == 1  # nothing was uploaded
    # without a terminal (stdin is not one here) it is refused the same way
    assert practice.run("send", str(case), "--to", lab.handle, check=False).returncode == 1
    second = practice.json("send", str(case), "--to", lab.handle, "--again")["transfer_id"]
    assert second != first and len(lab.json("inbox")["transfers"]) == 2
    # other files, or another recipient, are not a repeat
    (case / "extra.txt").write_text("more")
    practice.json("send", str(case), "--to", lab.handle)


def _on_a_terminal(user: User, *args: str, answer: str) -> tuple[int, str]:
    """Run sealdrop with a pty as stdin and stderr (a person at a terminal), typing
    ``answer``; returns the exit code and what the terminal showed."""
    import os
    import pty
    import select
    import subprocess

    from tests.e2e.kit import SEALDROP

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([SEALDROP, *args], stdin=slave, stdout=subprocess.PIPE,
                                stderr=slave, env=user.env)
        os.write(master, answer.encode() + b"\n")  # held by the tty until read
        shown = b""
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    shown += os.read(master, 4096)
                except OSError:
                    break
            elif proc.poll() is not None:
                break
        proc.wait(60)
        assert proc.stdout is not None
        proc.stdout.close()
        return proc.returncode, shown.decode(errors="replace")
    finally:
        os.close(slave)
        os.close(master)


def test_on_a_terminal_the_repeat_is_asked(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    case = make_case(tmp_path)
    first = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    code, shown = _on_a_terminal(practice, "send", str(case), "--to", lab.handle, answer="n")
    assert code == 1 and "Send again? [y/N]" in shown and first in shown
    assert len(lab.json("inbox")["transfers"]) == 1
    code, shown = _on_a_terminal(practice, "send", str(case), "--to", lab.handle, answer="y")
    assert code == 0, shown
    assert len(lab.json("inbox")["transfers"]) == 2


def test_status_stays_readable_after_the_relay_forgot_a_transfer(
        tmp_path: Path, relay: Relay, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid = practice.json("send", str(make_case(tmp_path)), "--to", lab.handle,
                        "--label", "Couronne 36 DUPONT")["transfer_id"]
    with relay.db() as db:  # what expiry and gc leave: no row at all
        for table, col in (("transfer_cards", "transfer_id"), ("transfer_chunks", "transfer_id"),
                           ("transfer_recipients", "transfer_id"), ("transfers", "id")):
            db.execute(f"DELETE FROM {table} WHERE {col}=?", (tid,))
    (row,) = practice.json("status", "--json-phi")["transfers"]
    assert (row["id"], row["state"], row["label"]) == (tid, "gone", "Couronne 36 DUPONT")
    assert [r["handle"] for r in row["recipients"]] == [lab.handle]
    assert row["dicom"]["studies"]  # the summary is the sender's own record
    text = practice.run("status").stdout
    assert "expired on the relay" in text and "Couronne 36 DUPONT" in text
    assert lab.handle in text and "DICOM: CT" in text
    (one,) = practice.json("status", tid)["transfers"]  # asked by id: the same answer
    assert one["state"] == "gone" and one["label"] is None  # no PHI without --json-phi


def test_a_resumed_send_stores_its_card_again(tmp_path: Path, pair: tuple[User, User]) -> None:
    from tests.e2e.test_resume import SMALL_CHUNKS, _start_and_kill_send

    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=3 * 1024 * 1024)
    _start_and_kill_send(practice, case, lab.handle)
    ((tid,),) = relay.sql("select id from transfers where state='uploading'")
    with relay.db() as db:  # the card is lost (say, the relay was restored from a backup)
        db.execute("DELETE FROM transfer_cards WHERE transfer_id=?", (tid,))
    done = practice.json("send", str(case), "--to", lab.handle, *SMALL_CHUNKS,
                         "--label", "Couronne 36")
    assert done["transfer_id"] == tid and done["resumed"] is True
    (item,) = lab.json("inbox", "--json-phi")["transfers"]
    assert item["card"]["state"] == "verified" and item["card"]["label"] == "Couronne 36"
