"""``watch --on-receive``: the runner with real scripts (receive/hook.py).

Each test runs a real program in a real process group: a shell script that
writes its environment to a file, one that fails, one that hangs (with a
child), one that floods stderr. Nothing is mocked; the clock is not asserted
on (a hang is proven by the outcome and by the child being gone).
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from sealdrop.client.dicom.summary import summarise
from sealdrop.client.errors import ClientError
from sealdrop.client.receive.hook import (
    PHI_FIELDS,
    Hook,
    case_fields,
    case_folder,
    case_label,
    hook_env,
    parse_command,
    run_hook,
)
from sealdrop.client.receive.transfer import ReceiveResult
from sealdrop.client.send.scan import scan
from sealdrop.crypto.manifest import FileEntry, Manifest, recipient_entries
from tests.client.dicomkit import write_instance
from tests.client.receivekit import ALICE, BOB, NOW

NAME = "DUPONT^Marie"


def _result(tmp_path: Path, *, note: str = "Couronne 36 pour Mme DUPONT\nteinte A2",
            relay_id: str = "ab" * 16) -> ReceiveResult:
    src = tmp_path / "src" / "DUPONT_Marie"
    write_instance(src / "IM0001.dcm", study="1.2.3", series="1.2.3.4", patient=NAME)
    files = scan([src])
    manifest = Manifest(
        transfer_id=bytes(16), created=NOW, sender=ALICE.bundle,
        recipients=recipient_entries([BOB.bundle]),
        files=tuple(FileEntry(path=f.arcname, size=f.size, sha256=bytes(32),
                              media_type=f.media_type) for f in files),
        note=note, dicom=summarise((f.arcname, f.dicom) for f in files))
    into = tmp_path / "in"
    placed = tuple(into / f.arcname for f in files)
    for p in placed:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return ReceiveResult(relay_id=relay_id, manifest=manifest, sender="alice.clinic",
                         sender_verified=True, safety_number="12345", files=placed,
                         into=into, folder=into / "DUPONT_Marie", label="Couronne 36")


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _env_file(out: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in out.read_text().split("\0") if "=" in line)
    return {k: v for k, v in pairs}


def _env_dumper(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "env.txt"
    # env -0: one NUL-separated entry per variable, so values with newlines survive.
    return _script(tmp_path / "dump.sh", f'env -0 > "{out}"\npwd > "{out}.pwd"\n'), out


BASE = {"PATH": os.environ["PATH"], "SEALDROP_PASSPHRASE": "hunter2-secret",
        "SEALDROP_PASSPHRASE_FILE": "/etc/sealdrop/pass", "SEALDROP_PATIENT_NAME": "INHERITED",
        "LANG": "C.UTF-8"}


def test_the_command_gets_the_case_without_patient_data(tmp_path: Path) -> None:
    r = _result(tmp_path)
    dump, out = _env_dumper(tmp_path)
    outcome = run_hook(Hook(argv=(str(dump),)), r, base_env=BASE)
    assert outcome.ok and outcome.status == 0 and not outcome.timed_out
    env = _env_file(out)
    assert env["SEALDROP_TRANSFER_ID"] == "ab" * 16
    assert env["SEALDROP_SENDER"] == "alice.clinic"
    assert env["SEALDROP_SENDER_VERIFIED"] == "true"
    assert env["SEALDROP_INTO"] == str(tmp_path / "in")
    assert env["SEALDROP_FILE_COUNT"] == "1"
    assert env["SEALDROP_TOTAL_SIZE"] == str(r.manifest.files[0].size)
    assert env["SEALDROP_MODALITIES"] == "CT"
    assert env["SEALDROP_IMAGE_COUNT"] == "1" and env["SEALDROP_STUDY_COUNT"] == "1"
    # No patient data: neither set by us nor inherited from watch's environment.
    for name in PHI_FIELDS:
        assert name not in env
    assert "DUPONT" not in out.read_text() and "Couronne" not in out.read_text()
    # watch's secrets are not the hook's; the rest of the environment is.
    assert "SEALDROP_PASSPHRASE" not in env and "SEALDROP_PASSPHRASE_FILE" not in env
    assert "hunter2" not in out.read_text()
    assert env["PATH"] == os.environ["PATH"] and env["LANG"] == "C.UTF-8"
    # Run in --into (our own folder, not the case's).
    assert Path(f"{out}.pwd").read_text().strip() == str(tmp_path / "in")


def test_patient_data_only_when_asked(tmp_path: Path) -> None:
    r = _result(tmp_path)
    dump, out = _env_dumper(tmp_path)
    assert run_hook(Hook(argv=(str(dump),), phi=True), r, base_env=BASE).ok
    env = _env_file(out)
    assert env["SEALDROP_PATIENT_NAME"] == NAME
    assert env["SEALDROP_STUDY_DATE"] == "2026-11-30"
    assert env["SEALDROP_NOTE"] == "Couronne 36 pour Mme DUPONT"  # the first line only
    assert env["SEALDROP_LABEL"] == "Couronne 36"  # the verified card's label
    assert env["SEALDROP_CASE_FOLDER"] == str(tmp_path / "in" / "DUPONT_Marie")
    assert "SEALDROP_PASSPHRASE" not in env


def test_sender_text_cannot_smuggle_control_characters(tmp_path: Path) -> None:
    r = _result(tmp_path, note="\x1b]0;owned\x07 Couronne\u202e \x00 36\nsecond line")
    fields = case_fields(r, phi=True)
    assert fields["SEALDROP_NOTE"] == "?]0;owned? Couronne? ? 36"
    assert all("\x00" not in v and "\x1b" not in v for v in fields.values())


def test_stdin_is_closed(tmp_path: Path) -> None:
    out = tmp_path / "stdin.txt"
    reader = _script(tmp_path / "read.sh", f'cat > "{out}"; echo "read $?" >> "{out}"\n')
    outcome = run_hook(Hook(argv=(str(reader),), timeout=30), _result(tmp_path), base_env=BASE)
    assert outcome.ok and out.read_text() == "read 0\n"  # EOF at once, not a wait


def test_a_failing_command_is_reported_with_its_status_and_stderr_tail(tmp_path: Path) -> None:
    fail = _script(tmp_path / "fail.sh",
                   'echo "starting" >&2\necho "lims: connection refused" >&2\nexit 3\n')
    outcome = run_hook(Hook(argv=(str(fail),)), _result(tmp_path, relay_id="cd" * 16),
                       base_env=BASE)
    assert not outcome.ok and outcome.status == 3 and not outcome.timed_out
    assert outcome.stderr_tail == "starting | lims: connection refused"
    line = outcome.line(60)
    assert line.startswith(f"on-receive command for {'cd' * 16} failed with exit status 3")
    assert line.endswith("stderr: starting | lims: connection refused") and "\n" not in line
    assert "DUPONT" not in line and "alice" not in line  # nothing of the case but its id
    assert outcome.to_json()["exit_status"] == 3 and outcome.to_json()["ok"] is False


def test_a_hanging_command_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hang = _script(tmp_path / "hang.sh",
                   f'sleep 300 &\necho $! > "{pidfile}"\necho "waiting for LIMS" >&2\nwait\n')
    outcome = run_hook(Hook(argv=(str(hang),), timeout=1), _result(tmp_path), base_env=BASE)
    assert outcome.timed_out and outcome.status is None and not outcome.ok
    assert "killed after 1.0 s (--on-receive-timeout)" in outcome.line(1)
    assert outcome.stderr_tail == "waiting for LIMS"
    child = int(pidfile.read_text())
    # The background child went with its group (reaped by init: poll until gone).
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        threading.Event().wait(0.05)
    else:
        pytest.fail("the hook's child survived the timeout")


def test_a_stop_request_kills_the_command_at_once(tmp_path: Path) -> None:
    hang = _script(tmp_path / "hang.sh", "exec sleep 300\n")
    asked = threading.Event()
    threading.Timer(0.3, asked.set).start()
    outcome = run_hook(Hook(argv=(str(hang),), timeout=3600), _result(tmp_path),
                       base_env=BASE, stop=asked.is_set)
    assert outcome.stopped and not outcome.timed_out and outcome.status is None
    assert "watch is stopping" in outcome.line(3600)


def test_a_flood_on_stderr_keeps_only_its_tail(tmp_path: Path) -> None:
    flood = _script(tmp_path / "flood.sh",
                    "i=0; while [ $i -lt 3000 ]; do echo \"line $i ................\" >&2; "
                    "i=$((i+1)); done; echo 'the end' >&2; exit 1\n")
    outcome = run_hook(Hook(argv=(str(flood),)), _result(tmp_path), base_env=BASE)
    assert outcome.status == 1
    assert outcome.stderr_tail.endswith("the end") and len(outcome.stderr_tail) <= 300


def test_a_command_that_cannot_start_is_reported_not_raised(tmp_path: Path) -> None:
    gone = _script(tmp_path / "gone.sh", "exit 0\n")
    hook = Hook(argv=(str(gone),))
    gone.unlink()  # removed after watch started
    outcome = run_hook(hook, _result(tmp_path), base_env=BASE)
    assert outcome.status is None and outcome.not_started and not outcome.ok
    assert "could not start" in outcome.line(60) and "gone.sh" in outcome.line(60)


def test_killed_by_a_signal_says_so(tmp_path: Path) -> None:
    die = _script(tmp_path / "die.sh", "kill -TERM $$\n")
    outcome = run_hook(Hook(argv=(str(die),)), _result(tmp_path), base_env=BASE)
    assert outcome.status == -15 and "ended by signal 15" in outcome.line(60)


def test_the_command_is_split_like_a_shell_and_checked_up_front(tmp_path: Path) -> None:
    assert parse_command("echo 'new case' --urgency=low") == ("echo", "new case",
                                                             "--urgency=low")
    assert parse_command("sh -c 'echo $SEALDROP_SENDER'") == ("sh", "-c",
                                                             "echo $SEALDROP_SENDER")
    with pytest.raises(ClientError, match="cannot split"):
        parse_command("notify-send 'unclosed")
    with pytest.raises(ClientError, match="is empty"):
        parse_command("   ")
    with pytest.raises(ClientError, match="no program named 'no-such-program-h12' on PATH"):
        parse_command("no-such-program-h12 --x")
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(ClientError, match="not an executable file"):
        parse_command(str(plain))


def test_no_shell_parses_what_the_sender_wrote(tmp_path: Path) -> None:
    """The case reaches the command only as variables: a note full of shell syntax stays text."""
    r = _result(tmp_path, note="$(touch pwned); `touch pwned2` && rm -rf ~")
    out = tmp_path / "note.txt"
    argv = parse_command(f"sh -c 'printf %s \"$SEALDROP_NOTE\" > {out}'")
    assert run_hook(Hook(argv=argv, phi=True), r, base_env=BASE).ok
    assert out.read_text() == "$(touch pwned); `touch pwned2` && rm -rf ~"
    assert not (r.into / "pwned").exists() and not (r.into / "pwned2").exists()


def test_case_folder_and_label_are_the_receives(tmp_path: Path) -> None:
    r = _result(tmp_path)
    assert case_folder(r) == r.folder == r.into / "DUPONT_Marie"
    assert case_label(r) == "Couronne 36"
    env = hook_env(r, phi=False, base=BASE)
    assert "SEALDROP_CASE_FOLDER" not in env and "SEALDROP_LABEL" not in env


def test_hook_env_drops_inherited_fields_even_without_phi(tmp_path: Path) -> None:
    env = hook_env(_result(tmp_path), phi=False, base=BASE)
    assert "SEALDROP_PATIENT_NAME" not in env and env["LANG"] == "C.UTF-8"


def test_the_cli_reports_and_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """watch treats an exception from on_received as a refused transfer: the hook's
    reporter must swallow everything (here run_hook is made to blow up)."""
    import json

    from sealdrop.client.cli import hook as cli_hook

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("DUPONT")

    monkeypatch.setattr(cli_hook, "run_hook", boom)
    r = _result(tmp_path)
    cli_hook.run_on_receive(Hook(argv=("true",)), r, as_json=True)
    event = json.loads(capsys.readouterr().out)
    assert event["event"] == "on_receive" and event["ok"] is False
    assert event["not_started"] == "unexpected RuntimeError" and "DUPONT" not in str(event)
    cli_hook.run_on_receive(None, r, as_json=False)  # no hook: nothing at all
    assert capsys.readouterr() == ("", "")


def test_the_options_make_one_hook(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sealdrop.client.cli.receive import watch_cmd

    r = CliRunner().invoke(watch_cmd, ["--into", str(tmp_path), "--on-receive-phi"])
    assert r.exit_code == 2 and "--on-receive-phi needs --on-receive CMD" in r.output
    r = CliRunner().invoke(watch_cmd, ["--into", str(tmp_path), "--on-receive",
                                       "no-such-program-h12"])
    assert r.exit_code == 1 and "no program named 'no-such-program-h12'" in str(r.exception)
    r = CliRunner().invoke(watch_cmd, ["--into", str(tmp_path), "--on-receive", "true",
                                       "--on-receive-timeout", "0"])
    assert r.exit_code == 2 and "must be between 1 second and 1 day" in r.output
