"""Issue 10 classes 1 and 3 through the real relay and CLI: one hostile transfer never
stops ``receive`` or ``watch``, is refused once and not retried; nothing unverified
is left in DEST or the spool; signals and SIGKILL leave no staging behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.kit import User, make_case, tree, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _tamper(user: User, tid: str) -> None:
    blob = user.relay.blob_path(tid)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))


def test_watch_refuses_a_hostile_transfer_once_and_receives_the_next(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    dest = tmp_path / "incoming"
    dest.mkdir()
    bad = practice.json("send", str(make_case(tmp_path / "bad", big=200_000)), "--to",
                        lab.handle)["transfer_id"]
    _tamper(practice, bad)
    watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.2", "--json")
    try:
        good_case = make_case(tmp_path / "good", marker="g")
        practice.run("send", str(good_case), "--to", lab.handle)
        wait_for(lambda: (dest / "caseg").is_dir() and tree(dest / "caseg") == tree(good_case),
                 60, "the good transfer after the hostile one")
        # Several more inbox rounds: the refused transfer is not taken again.
        rounds = lab.relay.metric("sealdrop_http_requests_total")
        wait_for(lambda: lab.relay.metric("sealdrop_http_requests_total") > rounds + 10, 60,
                 "more inbox rounds")
        assert watcher.poll() is None  # still running
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(e["event"], e["transfer_id"]) for e in events if e["event"] == "refused"] == [
        ("refused", bad)]
    assert [e["event"] for e in events].count("received") == 1
    (refusal,) = [e for e in events if e["event"] == "refused"]
    assert "REFUSED" in refusal["error"] and "\n" not in refusal["error"]
    assert "Traceback" not in err
    assert sorted(p.name for p in dest.iterdir()) == ["caseg"]
    assert list((lab.home / "inbox-spool").iterdir()) == []  # refused ciphertext deleted
    # Neither a restarted watch nor receive --all takes it again; inbox says why.
    r = lab.run("receive", "--all", "--into", str(dest))
    assert "nothing new to receive" in r.stdout
    states = {t["id"]: t["state"] for t in lab.json("inbox")["transfers"]}
    assert states[bad] == "refused"
    # Asked for by id, it is tried again (and refused again), and the spool can be kept.
    again = lab.run("receive", bad, "--into", str(dest), "--keep-refused", check=False)
    assert again.returncode == 1 and "REFUSED" in again.stderr
    assert [p.name for p in (lab.home / "inbox-spool").iterdir()] == [f"{bad}.age.partial"]


def test_a_stranger_cannot_make_the_lab_download_beyond_the_limit(
    tmp_path: Path, practice: User, lab: User
) -> None:
    practice.trust(lab)  # the lab never added the practice
    tid = practice.json("send", str(make_case(tmp_path / "s", big=300_000)), "--to",
                        lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    downloads = lab.relay.metric("sealdrop_download_bytes_total")
    r = lab.run("receive", tid, "--into", str(dest), check=False)
    assert r.returncode == 1 and "before download" in r.stderr
    r = lab.run("receive", "--into", str(dest), "--allow-unverified",
                "--max-unverified-size", "100KiB", "--", tid, check=False)
    assert r.returncode == 1 and "over the 0.1 MiB allowed" in r.stderr
    assert lab.relay.metric("sealdrop_download_bytes_total") == downloads
    assert list(dest.iterdir()) == []
    contacts = lab.home / "contacts.json"
    assert not contacts.exists() or practice.handle not in contacts.read_text()
    ok = lab.run("receive", tid, "--into", str(dest), "--allow-unverified")
    assert "NOT VERIFIED" in ok.stdout


def test_sigterm_mid_receive_and_sigkill_leave_no_staging(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case = make_case(tmp_path / "s", big=3_000_000)
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    staging = lab.home / "staging"
    with practice.relay.throttled(down=400_000):
        proc = lab.popen("receive", "--into", str(dest), "--", tid)
        spool = lab.home / "inbox-spool" / f"{tid}.age.partial"
        wait_for(lambda: spool.exists() and spool.stat().st_size > 100_000, 60,
                 "the download to start")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert ("interrupted" in err or "aborted" in err) and "Traceback" not in err
    assert list(dest.iterdir()) == []
    assert not staging.exists() or list(staging.iterdir()) == []
    # A receive killed with SIGKILL while staging leaves a locked folder behind; the
    # next start removes it before anything else.
    staging.mkdir(mode=0o700, exist_ok=True)
    code = ("import sys, time; from pathlib import Path\n"
            "from sealdrop.client.receive.stagearea import staging_folder\n"
            "with staging_folder(Path(sys.argv[1])) as f:\n"
            "    (f / 'IM1').write_bytes(b'unverified'); print(f, flush=True); time.sleep(600)\n")
    killed = subprocess.Popen([sys.executable, "-c", code, str(staging)],
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None
    left = Path(killed.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert (left / "IM1").exists()
    lab.run("receive", tid, "--into", str(dest))  # resumes the download, sweeps, places
    assert not left.exists() and list(staging.iterdir()) == []
    assert tree(dest / "case") == tree(case)


def test_watch_unit_does_not_crash_loop() -> None:
    """watch itself survives bad transfers (above); the unit backs off if it still fails,
    stops it with SIGTERM (which removes staging), and stages outside the destination."""
    lines = [line.strip() for line in
             (ROOT / "deploy" / "sealdrop-watch.service").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    keys: dict[str, list[str]] = {}
    section = ""
    for line in lines:
        if line.startswith("["):
            section = line
            continue
        k, _, v = line.partition("=")
        keys.setdefault(f"{section}{k}", []).append(v)
    assert keys["[Service]Restart"] == ["on-failure"]
    assert int(keys["[Service]RestartSec"][0].rstrip("s")) >= 30
    assert int(keys["[Unit]StartLimitBurst"][0]) <= 5
    assert keys["[Unit]StartLimitIntervalSec"]
    assert keys["[Service]KillSignal"] == ["SIGTERM"]
    staging = [v for v in keys["[Service]Environment"] if v.startswith("SEALDROP_STAGING=")]
    into = [v for v in keys["[Service]Environment"] if v.startswith("SEALDROP_INTO=")]
    assert staging and into
    staging_dir = staging[0].partition("=")[2]
    into_dir = into[0].partition("=")[2]
    assert not Path(staging_dir).is_relative_to(into_dir)
    assert any(staging_dir in v for v in keys["[Service]ReadWritePaths"])
