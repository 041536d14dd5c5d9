"""A note and an invite have ways in that are not argv (class 6): a file, ``-`` for
standard input, an environment variable; the command line wins over the
environment; two sources at one level are refused. Reading is bounded.

The end-to-end proof (the real CLI, a real relay, the note arriving) is in
tests/e2e/test_hygiene.py; here the rules, before any profile is needed.
"""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
from click.core import ParameterSource
from click.testing import CliRunner, Result

from sealdrop.client.cli import cli
from sealdrop.client.cli.send import _read_note, send_cmd
from sealdrop.client.cli.textin import read_text_file
from sealdrop.client.errors import ClientError
from sealdrop.crypto.manifest import MAX_NOTE_CHARS


def _send(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
          stdin: bytes | None = None) -> Result:
    (tmp_path / "f.txt").write_text("x")
    return CliRunner().invoke(
        cli, ["send", str(tmp_path / "f.txt"), "--to", "lab-dupont", "--home",
              str(tmp_path / "home"), *args], env=env, input=stdin)


def _note(sources: dict[str, ParameterSource], note: str | None, note_file: Path | None
          ) -> str:
    ctx = click.Context(send_cmd)
    for name, source in sources.items():
        ctx.set_parameter_source(name, source)
    return _read_note(ctx, note, note_file)


CLI, ENV = ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT


def test_note_from_a_file_without_its_final_line_break(tmp_path: Path) -> None:
    f = tmp_path / "note.txt"
    f.write_bytes("Couronne 36\nteinte A2 — é\r\n".encode())
    assert _note({"note_file": CLI}, None, f) == "Couronne 36\nteinte A2 — é"


def test_note_from_stdin() -> None:
    got = read_text_file(Path("-"), what="note", max_bytes=1000,
                         stdin=io.BytesIO(b"Couronne 36\n"))
    assert got == "Couronne 36"


def test_the_command_line_wins_over_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "note.txt"
    f.write_text("from the file")
    assert _note({"note": ENV, "note_file": CLI}, "from env", f) == "from the file"
    assert _note({"note": CLI, "note_file": ENV}, "from argv", f) == "from argv"
    assert _note({"note": ENV}, "from env", None) == "from env"
    assert _note({}, None, None) == ""


def test_two_sources_on_one_level_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "note.txt"
    f.write_text("n")
    for level in (CLI, ENV):
        with pytest.raises(click.UsageError, match="give --note or --note-file, not both"):
            _note({"note": level, "note_file": level}, "x", f)
    r = _send(tmp_path, "--note", "x", "--note-file", str(f))
    assert r.exit_code == 2 and "give --note or --note-file, not both" in r.output


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read the note from"),
    (b"\xff\xfe bad", "is not UTF-8 text"),
    (b"x" * (4 * MAX_NOTE_CHARS + 1), "is too long"),
    (b"x" * (MAX_NOTE_CHARS + 1), f"the note is too long ({MAX_NOTE_CHARS + 1} characters"),
])
def test_bad_note_files_are_one_line_errors_before_anything_else(
    tmp_path: Path, content: bytes | None, message: str,
) -> None:
    f = tmp_path / "note.txt"
    if content is not None:
        f.write_bytes(content)
    r = _send(tmp_path, "--note-file", str(f))
    assert isinstance(r.exception, ClientError)
    assert message in str(r.exception) and "\n" not in str(r.exception)


def test_note_file_from_the_environment_and_stdin(tmp_path: Path) -> None:
    # Read before the profile is opened: the profile error proves the note was taken.
    r = _send(tmp_path, env={"SEALDROP_NOTE_FILE": "-"}, stdin=b"\xff not utf-8")
    assert "the note in standard input is not UTF-8 text" in str(r.exception)
    r = _send(tmp_path, "--note-file", "-", stdin=b"fine\n")
    assert isinstance(r.exception, ClientError) and "not set up" in str(r.exception)


def _init(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
          stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(
        cli, ["init", "--relay", "http://127.0.0.1:9", "--handle", "lab-dupont",
              "--home", str(tmp_path / "home"), *args], env=env, input=stdin)


def test_init_needs_an_invite_from_somewhere(tmp_path: Path) -> None:
    r = _init(tmp_path, env={"SEALDROP_INVITE": "", "SEALDROP_INVITE_FILE": ""})
    assert r.exit_code == 2 and "--invite-file FILE (- for standard input)" in r.output
    r = _init(tmp_path, "--invite-file", "-", stdin=b"   \n")
    assert r.exit_code == 2 and "give the invite code" in r.output


def test_init_refuses_two_invites_on_the_command_line(tmp_path: Path) -> None:
    f = tmp_path / "invite.txt"
    f.write_text("5d0b8e2f9a3c4e7f8a1b2c3d4e5f6a7b\n")
    r = _init(tmp_path, "--invite", "x", "--invite-file", str(f))
    assert r.exit_code == 2 and "give --invite or --invite-file, not both" in r.output


def test_an_invite_file_that_is_not_an_invite_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "big.iso"
    f.write_bytes(b"0" * 5000)
    r = _init(tmp_path, "--invite-file", str(f))
    assert isinstance(r.exception, ClientError)
    assert f"the invite code in {f} is too long" in str(r.exception)


def test_help_says_why_and_how() -> None:
    send_help = CliRunner().invoke(cli, ["send", "--help"], terminal_width=200).output
    assert "--note-file" in send_help and "SEALDROP_NOTE" in send_help
    assert "- reads standard input" in send_help and "(ps)" in send_help
    init_help = CliRunner().invoke(cli, ["init", "--help"], terminal_width=200).output
    assert "--invite-file -" in init_help and "SEALDROP_INVITE_FILE" in init_help
    assert "(ps)" in init_help
