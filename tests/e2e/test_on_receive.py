"""``watch --on-receive CMD`` through the real CLI and relay, with real scripts.

One script writes its environment to a file per case and fails the first
time; another hangs. watch must run the command for each verified case, log
each failure in one line without patient data, and keep receiving.
"""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path

from tests.e2e.kit import User, make_case, tree, wait_for


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _env(path: Path) -> dict[str, str]:
    pairs = (e.split("=", 1) for e in path.read_text().split("\0") if "=" in e)
    return {k: v for k, v in pairs}


def test_on_receive_runs_per_case_and_a_failure_never_stops_watch(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    dest = tmp_path / "incoming"
    dest.mkdir()
    seen = tmp_path / "seen"
    seen.mkdir()
    # Writes its environment, then fails on the first case only (it says why on stderr).
    hook = _script(tmp_path / "lims-hook.sh", f"""
env -0 > "{seen}/$SEALDROP_TRANSFER_ID.env"
if [ ! -e "{seen}/first-done" ]; then
  touch "{seen}/first-done"
  echo "LIMS unreachable" >&2
  exit 7
fi
""")
    watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.3",
                        "--on-receive", f"{hook} --from-sealdrop")
    try:
        one = make_case(tmp_path / "one", marker="Alpha")
        ids = {practice.json("send", str(one), "--to", lab.handle,
                             "--note", "Couronne 36 Alpha")["transfer_id"]}
        wait_for(lambda: len(list(seen.glob("*.env"))) == 1, 60, "the first hook run")
        two = make_case(tmp_path / "two", marker="Beta")
        ids.add(practice.json("send", str(two), "--to", lab.handle)["transfer_id"])
        wait_for(lambda: len(list(seen.glob("*.env"))) == 2, 60, "the second hook run")
    finally:
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert tree(dest / "caseAlpha") == tree(one)
    envs = {p.stem: _env(p) for p in seen.glob("*.env")}
    assert set(envs) == ids
    for rid, env in envs.items():
        assert env["SEALDROP_TRANSFER_ID"] == rid
        assert env["SEALDROP_SENDER"] == "cabinet-martin"
        assert env["SEALDROP_SENDER_VERIFIED"] == "true"
        assert env["SEALDROP_INTO"] == str(dest)
        assert env["SEALDROP_FILE_COUNT"] == "4"
        assert sorted(env["SEALDROP_MODALITIES"].split(",")) == ["CT", "MR"]
        assert env["SEALDROP_IMAGE_COUNT"] == "2"
        assert "SEALDROP_PATIENT_NAME" not in env and "SEALDROP_CASE_FOLDER" not in env
        assert "SEALDROP_PASSPHRASE" not in env  # watch's secret is not the hook's
    # One line for the failure, naming the id and the status, with the hook's stderr;
    # one for the success; no patient, note or file name anywhere in watch's log.
    failed = [line for line in err.splitlines() if "failed with exit status 7" in line]
    assert len(failed) == 1 and failed[0].endswith("stderr: LIMS unreachable")
    assert "sealdrop: warning: on-receive command for " in failed[0]
    assert len([line for line in err.splitlines() if "on-receive command for" in line
                and " done in " in line]) == 1
    hook_lines = "\n".join(line for line in err.splitlines() if "on-receive" in line)
    for needle in ("Doe^", "Alpha", "Beta", "Couronne", "IM0000"):
        assert needle not in hook_lines


def test_on_receive_phi_and_a_hanging_command_in_json(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    dest = tmp_path / "incoming"
    dest.mkdir()
    out = tmp_path / "env.bin"
    hook = _script(tmp_path / "slow-hook.sh", f'env -0 > "{out}"\nexec sleep 600\n')
    watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.3", "--json",
                        "--on-receive", str(hook), "--on-receive-timeout", "1s",
                        "--on-receive-phi")
    try:
        case = make_case(tmp_path / "one", marker="Gamma")
        practice.run("send", str(case), "--to", lab.handle,
                     "--note", "Couronne 36 Gamma\nteinte A2")
        wait_for(lambda: out.exists() and out.stat().st_size > 0, 60, "the hook to start")
        # watch carries on after the kill: a second case is received and hooked too.
        second = make_case(tmp_path / "two", marker="Delta")
        practice.run("send", str(second), "--to", lab.handle)
        wait_for(lambda: (dest / "caseDelta").is_dir(), 60, "the second case")
        wait_for(lambda: "SEALDROP_TRANSFER_ID" in out.read_text(errors="replace")
                 and "Doe^Delta" in out.read_text(errors="replace"), 60, "the second run")
    finally:
        watcher.send_signal(signal.SIGTERM)
        stdout, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["received", "on_receive", "received"]
    hooked = events[1]
    assert hooked["timed_out"] is True and hooked["ok"] is False
    assert hooked["exit_status"] is None and hooked["transfer_id"] == events[0]["transfer_id"]
    env = _env(out)
    assert env["SEALDROP_PATIENT_NAME"] == "Doe^Delta"
    # The kit receives with the flat layout: the case folder is --into itself.
    assert env["SEALDROP_CASE_FOLDER"] == str(dest)
    assert env["SEALDROP_NOTE"] == ""
