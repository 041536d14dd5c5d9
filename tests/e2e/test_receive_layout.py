"""A folder per case under --into (issue 12), through the real CLI and relay.

The same case sent twice, and two cases with the same file names, land side
by side; a user layout that can collide is refused before anything is
downloaded, then received once the layout has {id}; a transfer received
before says when and where, exit 0; a local refusal after the download keeps
the ciphertext for the retry and says so, and ``dismiss`` drops it.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from tests.e2e.kit import Relay, User, make_case, tree, wait_for

_FOLDER = re.compile(r"^\d{4}-\d\d-\d\d cabinet-martin ([0-9a-f]{8})$")


def _delivery(relay: Relay, tid: str, who: User) -> tuple[bool, bool]:
    ((downloaded, verified),) = relay.sql(
        "select downloaded_at, verified_at from transfer_recipients "
        "where transfer_id = ? and recipient = ?", tid, who.handle)
    return downloaded is not None, verified is not None


def _spooled(lab: User) -> list[str]:
    spool = lab.home / "inbox-spool"
    return sorted(p.name for p in spool.iterdir()) if spool.exists() else []


def _refused(lab: User) -> dict[str, object]:
    path = lab.home / "refused.json"
    return dict(json.loads(path.read_text())["refused"]) if path.exists() else {}


def _cases(dest: Path) -> dict[str, Path]:
    """Case folders under ``dest`` by the short id in their name."""
    out = {}
    for p in dest.iterdir():
        m = _FOLDER.match(p.name)
        assert m and p.is_dir(), p.name
        out[m.group(1)] = p
    return out


def test_the_same_case_sent_twice_lands_twice_side_by_side(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    lab.default_layout()
    case = make_case(tmp_path / "s")
    ids = [practice.json("send", str(case), "--to", lab.handle, "--again")["transfer_id"]
           for _ in range(2)]
    dest = tmp_path / "in"
    dest.mkdir()
    out = lab.json("receive", "--all", "--into", str(dest))
    assert out["failed"] == [] and len(out["received"]) == 2
    folders = _cases(dest)
    assert sorted(folders) == sorted(i[:8] for i in ids)
    for folder in folders.values():
        assert tree(folder / case.name) == tree(case)  # both whole, byte for byte
    # Named from the sender's handle (and, later, label): not in JSON without --json-phi.
    for r in out["received"]:
        assert "case_folder" not in r and r["into"] == str(dest)
        assert "cabinet-martin " not in json.dumps(r)


def test_two_cases_with_the_same_file_names_never_collide(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    lab.default_layout()
    first, second = make_case(tmp_path / "a"), make_case(tmp_path / "b")
    assert sorted(tree(first)) == sorted(tree(second)) and tree(first) != tree(second)
    dest = tmp_path / "in"
    dest.mkdir()
    for case in (first, second):
        tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
        got = lab.json("receive", tid, "--into", str(dest), "--json-phi")
        (r,) = got["received"]
        folder = Path(r["case_folder"])
        assert folder.parent == dest and folder.name.endswith(f" {tid[:8]}")
        assert tree(folder / case.name) == tree(case)
        assert all(Path(f["placed_at"]).is_relative_to(folder) for f in r["files"])
    assert len(_cases(dest)) == 2


def test_a_colliding_layout_is_refused_before_the_download_then_received(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    dest = tmp_path / "in"
    dest.mkdir()
    first = make_case(tmp_path / "a")
    tid1 = practice.json("send", str(first), "--to", lab.handle)["transfer_id"]
    lab.run("receive", tid1, "--into", str(dest), "--layout", "{sender}")
    assert tree(dest / "cabinet-martin" / first.name) == tree(first)
    second = make_case(tmp_path / "b")
    tid2 = practice.json("send", str(second), "--to", lab.handle)["transfer_id"]
    downloaded = lab.relay.metric("sealdrop_download_bytes_total")

    r = lab.run("receive", tid2, "--into", str(dest), "--layout", "{sender}", check=False)
    assert r.returncode == 1
    err = r.stderr.splitlines()
    assert err[0].startswith(f"sealdrop: error: transfer {tid2} not received: its case "
                             f"folder {dest / 'cabinet-martin'} already exists")
    assert err[0].endswith("nothing was downloaded")
    assert err[1].startswith("sealdrop: hint: put {id} in --layout")
    # Nothing downloaded, nothing told, nothing spooled, nothing refused for good.
    assert lab.relay.metric("sealdrop_download_bytes_total") == downloaded
    assert _delivery(lab.relay, tid2, lab) == (False, False)
    assert _spooled(lab) == [] and tid2 not in _refused(lab)
    assert tree(dest / "cabinet-martin" / first.name) == tree(first)  # untouched
    pending = [t["id"] for t in lab.json("inbox")["transfers"] if t["state"] == "new"]
    assert pending == [tid2]

    # The layout fixed (nested, with {id}): the same transfer now comes in.
    ok = lab.run("receive", tid2, "--into", str(dest), "--layout", "{sender}/{id}")
    assert f"into {dest / 'cabinet-martin' / tid2[:8]}" in ok.stdout
    assert tree(dest / "cabinet-martin" / tid2[:8] / second.name) == tree(second)
    assert _delivery(lab.relay, tid2, lab) == (True, True)


def test_an_empty_case_folder_made_in_advance_is_used(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    dest = tmp_path / "in"
    (dest / "cabinet-martin").mkdir(parents=True)
    case = make_case(tmp_path / "a")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    lab.run("receive", tid, "--into", str(dest), "--layout", "{sender}")
    assert tree(dest / "cabinet-martin" / case.name) == tree(case)


def test_a_bad_layout_is_a_usage_error_before_anything(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    _practice, lab = pair
    dest = tmp_path / "in"
    dest.mkdir()
    for layout, says in (("{patient}", "unknown placeholder {patient}"),
                         ("../{id}", "'..'"), ("/srv/{id}", "absolute")):
        r = lab.run("receive", "--all", "--into", str(dest), "--layout", layout, check=False)
        assert r.returncode == 2 and says in r.stderr, r.stderr
        r = lab.run("watch", "--into", str(dest), check=False,
                    env={"SEALDROP_LAYOUT": layout})
        assert r.returncode == 2 and says in r.stderr and "SEALDROP_LAYOUT" not in says
    assert not any(dest.iterdir())


def test_receiving_again_says_when_and_where_and_succeeds(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    lab.default_layout()
    case = make_case(tmp_path / "s")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", tid, "--into", str(dest))
    (folder,) = _cases(dest).values()
    downloaded = lab.relay.metric("sealdrop_download_bytes_total")

    again = lab.run("receive", tid, "--into", str(dest))  # exit 0: check=True
    line = again.stdout.strip()
    assert re.fullmatch(rf"transfer {tid} was already received on \d{{4}}-\d\d-\d\d "
                        rf"\d\d:\d\d into {re.escape(str(folder.absolute()))}", line), line
    assert again.stderr == ""
    # The same for a script: not a failure, and where only with --json-phi.
    plain = lab.json("receive", tid, "--into", str(dest))
    assert plain["received"] == [] and plain["failed"] == []
    (entry,) = plain["already_received"]
    assert entry["transfer_id"] == tid and isinstance(entry["received_at"], int)
    assert "case_folder" not in entry
    phi = lab.json("receive", tid, "--into", str(dest), "--json-phi")
    assert phi["already_received"][0]["case_folder"] == str(folder.absolute())
    # Into another folder too: the case is where it was put, not downloaded again.
    other = tmp_path / "other"
    other.mkdir()
    lab.run("receive", tid, "--into", str(other))
    assert not any(other.iterdir())
    assert lab.relay.metric("sealdrop_download_bytes_total") == downloaded
    assert tid not in _refused(lab)


def test_a_local_refusal_after_download_keeps_the_download_and_says_so(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    # Flat: the names are known only after the download, so the collision is
    # found by the last line of defence (place.check_free).
    practice, lab = pair
    lab.default_layout()
    case = make_case(tmp_path / "s")
    dest = tmp_path / "in"
    dest.mkdir()
    tid1 = practice.json("send", str(case), "--to", lab.handle, "--again")["transfer_id"]
    lab.run("receive", tid1, "--into", str(dest), "--layout", "{flat}")
    tid2 = practice.json("send", str(case), "--to", lab.handle, "--again")["transfer_id"]
    r = lab.run("receive", tid2, "--into", str(dest), "--layout", "{flat}", check=False)
    assert r.returncode == 1
    assert f"transfer {tid2} not placed: " in r.stderr and "already exists" in r.stderr
    assert "its download is kept" in r.stderr and f"sealdrop dismiss {tid2}" in r.stderr
    assert _spooled(lab) == [f"{tid2}.age.partial"] and tid2 not in _refused(lab)
    assert tree(dest / case.name) == tree(case)  # the first one untouched
    # Kept for the retry: with a layout that fits, no second download.
    downloaded = lab.relay.metric("sealdrop_download_bytes_total")
    lab.run("receive", tid2, "--into", str(dest))  # the default: a folder per case
    assert lab.relay.metric("sealdrop_download_bytes_total") == downloaded
    assert _spooled(lab) == []
    # Dismissed instead: the kept download goes with it.
    tid3 = practice.json("send", str(case), "--to", lab.handle, "--again")["transfer_id"]
    lab.run("receive", tid3, "--into", str(dest), "--layout", "{flat}", check=False)
    assert _spooled(lab) == [f"{tid3}.age.partial"]
    lab.run("dismiss", tid3)
    assert _spooled(lab) == []


def test_watch_puts_each_case_in_its_folder(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    lab.default_layout()
    case = make_case(tmp_path / "s")
    ids = [practice.json("send", str(case), "--to", lab.handle, "--again")["transfer_id"]
           for _ in range(2)]
    dest = tmp_path / "in"
    dest.mkdir()
    watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.3", "--json")
    try:
        wait_for(lambda: len(json.loads((lab.home / "received.json").read_text())
                             ["received"]) == 2 if (lab.home / "received.json").exists()
                 else False, 60, "both cases received")
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    folders = _cases(dest)
    assert sorted(folders) == sorted(i[:8] for i in ids)
    for folder in folders.values():
        assert tree(folder / case.name) == tree(case)
    events = [json.loads(line) for line in out.splitlines()]
    assert sorted(e["transfer_id"] for e in events if e["event"] == "received") == sorted(ids)
    assert all("case_folder" not in e for e in events)


def test_the_cards_label_names_the_folder_only_when_the_card_verifies(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    """{label} comes from the sealed case card, verified against the pinned key and
    this transfer id: a hostile label stays one safe folder inside --into, and a
    card the relay moved from another transfer names nothing."""
    practice, lab = pair
    case = make_case(tmp_path / "s")
    hostile = "../../Couronne 36: DUPONT\x1b[31m/..\\x"
    a = practice.json("send", str(case), "--to", lab.handle, "--label",
                      "Couronne 36 DUPONT")["transfer_id"]
    b = practice.json("send", str(case), "--to", lab.handle, "--label", hostile,
                      "--again")["transfer_id"]
    c = practice.json("send", str(case), "--to", lab.handle, "--label", "Bridge 14-16",
                      "--again")["transfer_id"]
    # The relay moves c's card onto a fresh transfer d of the same sender.
    d = practice.json("send", str(case), "--to", lab.handle, "--again")["transfer_id"]
    (card_c,), = lab.relay.sql("SELECT card FROM transfer_cards WHERE transfer_id=?", c)
    with lab.relay.db() as db:
        db.execute("INSERT OR REPLACE INTO transfer_cards (transfer_id, card, updated_at) "
                   "VALUES (?, ?, 1)", (d, card_c))
    dest = tmp_path / "in"
    dest.mkdir()
    for tid in (a, b, d):
        out = lab.json("receive", tid, "--into", str(dest), "--layout", "{label} {id}",
                       "--json-phi")
        assert out["failed"] == [], out
    names = {p.name for p in dest.iterdir()}
    assert f"Couronne 36 DUPONT {a[:8]}" in names
    assert f"unlabelled {d[:8]}" in names  # the moved card does not verify here
    (odd,) = names - {f"Couronne 36 DUPONT {a[:8]}", f"unlabelled {d[:8]}"}
    assert odd.endswith(b[:8]) and "/" not in odd and "\\" not in odd
    assert "\x1b" not in odd and ":" not in odd
    assert all(p.parent == dest for p in dest.iterdir())  # nothing escaped --into
