"""What a malicious relay can try, through the real client: every attempt is refused
with one line, a non-zero exit, and the destination untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.e2e.kit import PASSPHRASE, SEALDROP, User, make_case, tree


def _dest(tmp_path: Path) -> Path:
    dest = tmp_path / "in"
    dest.mkdir()
    (dest / "earlier case.pdf").write_bytes(b"%PDF keep me")
    return dest


def _refused(r: subprocess.CompletedProcess[str], dest: Path, *words: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines and lines[0].startswith("sealdrop: error:") and len(lines) <= 2, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert tree(dest) == {"earlier case.pdf": b"%PDF keep me"}
    assert [p.name for p in dest.iterdir()] == ["earlier case.pdf"]  # no staging left


def test_tampered_blob_is_refused(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid = practice.json("send", str(make_case(tmp_path / "s", big=300_000)), "--to",
                        lab.handle)["transfer_id"]
    blob = practice.relay.blob_path(tid)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    dest = _dest(tmp_path)
    r = lab.run("receive", tid, "--into", str(dest), check=False)
    _refused(r, dest, "REFUSED", "tampered")
    (st,) = practice.json("status", tid)["transfers"]
    assert st["recipients"][0]["verified"] is False  # never acknowledged as verified
    assert not any((lab.home / "inbox-spool").iterdir())


def test_truncated_blob_is_refused(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid = practice.json("send", str(make_case(tmp_path / "s", big=300_000)), "--to",
                        lab.handle)["transfer_id"]
    blob = practice.relay.blob_path(tid)
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) - 70_000])
    practice.relay.sql("update transfers set size = ? where id = ?", len(data) - 70_000, tid)
    dest = _dest(tmp_path)
    _refused(lab.run("receive", tid, "--into", str(dest), check=False), dest, "REFUSED")


def test_replayed_transfer_is_refused(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to", lab.handle)[
        "transfer_id"]
    first = _dest(tmp_path)
    lab.run("receive", tid, "--into", str(first))
    # The relay re-offers the old transfer under a new id: copied rows and blob.
    new_id = "Replayed" + tid[8:]
    with relay.db() as db:
        cols = [r[1] for r in db.execute("pragma table_info(transfers)")]
        row = dict(zip(cols, db.execute("select * from transfers where id = ?", (tid,)).fetchone()))
        row["id"] = new_id
        db.execute(f"insert into transfers ({','.join(cols)}) values "
                   f"({','.join('?' * len(cols))})", [row[c] for c in cols])
        db.execute("insert into transfer_recipients (transfer_id, recipient) values (?, ?)",
                   (new_id, lab.handle))
    target = relay.blob_path(new_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(relay.blob_path(tid), target)
    (item,) = [t for t in lab.json("inbox")["transfers"] if t["id"] == new_id]
    assert item["state"] == "new"
    dest = tmp_path / "again"
    dest.mkdir()
    (dest / "earlier case.pdf").write_bytes(b"%PDF keep me")
    r = lab.run("receive", "--all", "--into", str(dest), check=False)
    _refused(r, dest, "REFUSED", "already received", new_id)


def test_unverified_sender_refused_then_accepted_with_the_flag(
    tmp_path: Path, practice: User, lab: User
) -> None:
    practice.trust(lab)
    lab.run("contacts", "add", practice.handle)  # pinned, never compared
    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to", lab.handle)[
        "transfer_id"]
    dest = _dest(tmp_path)
    r = lab.run("receive", tid, "--into", str(dest), check=False)
    _refused(r, dest, "not verified", "--allow-unverified")
    ok = lab.run("receive", tid, "--into", str(dest), "--allow-unverified")
    assert "NOT VERIFIED" in ok.stdout
    got = tree(dest)
    assert len(got) > 1
    # with --json it says so too
    tid2 = practice.json("send", str(make_case(tmp_path / "s2")), "--to", lab.handle)[
        "transfer_id"]
    dest2 = tmp_path / "in2"
    dest2.mkdir()
    j = lab.json("receive", tid2, "--into", str(dest2), "--allow-unverified")
    assert j["received"][0]["sender_verified"] is False


def test_unknown_sender_is_refused(tmp_path: Path, practice: User, lab: User) -> None:
    practice.trust(lab)
    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to", lab.handle)[
        "transfer_id"]
    dest = _dest(tmp_path)
    _refused(lab.run("receive", tid, "--into", str(dest), check=False), dest,
             "not among your contacts")


def test_changed_contact_key_is_refused_loudly(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    # The relay swaps labo-dupont's bundle for one signed by a key it controls.
    impostor = tmp_path / "impostor"
    subprocess.run([SEALDROP, "identity", "create", "--handle", lab.handle, "--home",
                    str(impostor), "--work-factor", "10"], check=True, capture_output=True,
                   env={**practice.env, "SEALDROP_PASSPHRASE": PASSPHRASE})
    fake = json.loads((impostor / "bundle.json").read_text())
    relay.sql("update accounts set bundle = ? where handle = ?", json.dumps(fake), lab.handle)
    case = make_case(tmp_path / "s")
    r = practice.run("send", str(case), "--to", lab.handle, check=False)
    assert r.returncode == 1
    assert "CHANGED" in r.stderr and lab.handle in r.stderr
    assert relay.sql("select count(*) from transfers") == [(0,)]  # nothing was uploaded
    # adding the contact again does not silently accept the new key either
    r2 = practice.run("contacts", "add", lab.handle, check=False)
    assert r2.returncode == 1 and "CHANGED" in r2.stderr
