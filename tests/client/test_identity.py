"""The profile's identity: create, load, wrong passphrase, damage, CLI, and stock age."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from sealdrop.client.cli import cli
from sealdrop.client.errors import IdentityError, WrongPassphraseError
from sealdrop.client.profile.identity import create_identity, load_identity, load_public_bundle
from sealdrop.client.profile.layout import IDENTITY_FILE, resolve_home
from sealdrop.crypto import safety

PASS = b"Zahnarzt-Praxis 2024!"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "profile"


def test_create_and_load(home: Path) -> None:
    made = create_identity(home, "dr.martin", PASS, work_factor=10, now=1_700_000_000)
    assert stat.S_IMODE((home / IDENTITY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    loaded = load_identity(home, PASS)
    assert loaded.bundle == made.bundle == load_public_bundle(home)
    assert loaded.bundle.created == 1_700_000_000
    raw = (home / IDENTITY_FILE).read_bytes()
    assert raw.startswith(b"age-encryption.org/v1\n-> scrypt ") and b"AGE-SECRET" not in raw


def test_refuses_to_overwrite(home: Path) -> None:
    create_identity(home, "dr.martin", PASS, work_factor=10)
    before = (home / IDENTITY_FILE).read_bytes()
    with pytest.raises(IdentityError, match="already exists"):
        create_identity(home, "dr.other", PASS, work_factor=10)
    assert (home / IDENTITY_FILE).read_bytes() == before


def test_bad_handle(home: Path) -> None:
    with pytest.raises(IdentityError, match="invalid handle"):
        create_identity(home, "Dr Martin", PASS, work_factor=10)
    assert not (home / IDENTITY_FILE).exists()


def test_wrong_passphrase(home: Path) -> None:
    create_identity(home, "dr.martin", PASS, work_factor=10)
    with pytest.raises(WrongPassphraseError) as ei:
        load_identity(home, b"not it")
    assert "not it" not in str(ei.value) and PASS.decode() not in str(ei.value)


@pytest.mark.parametrize("keep", [0, 30, 100, 200, -1])
def test_truncated_identity_file(home: Path, keep: int) -> None:
    create_identity(home, "dr.martin", PASS, work_factor=10)
    path = home / IDENTITY_FILE
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(IdentityError) as ei:
        load_identity(home, PASS)
    assert not isinstance(ei.value, WrongPassphraseError) or keep < 100
    assert PASS.decode() not in str(ei.value)


def test_missing_identity(home: Path) -> None:
    with pytest.raises(IdentityError, match="no sealdrop identity") as ei:
        load_identity(home, PASS)
    assert ei.value.hint and "identity create" in ei.value.hint


def test_repr_and_errors_never_show_secrets(home: Path) -> None:
    ident = create_identity(home, "dr.martin", PASS, work_factor=10)
    text = repr(ident) + str(vars(ident).get("bundle"))
    for secret in (ident.x25519.encode(), ident.pq.encode(), PASS.decode()):
        assert secret not in text


def test_resolve_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEALDROP_HOME", str(tmp_path / "env"))
    assert resolve_home(None) == tmp_path / "env"
    assert resolve_home(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("SEALDROP_HOME")
    assert resolve_home(None) == Path.home() / ".sealdrop"


# --- CLI -----------------------------------------------------------------------------


def run(args: list[str], env: dict[str, str] | None = None) -> object:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=True)
    return result


def test_cli_create_show_export(home: Path, tmp_path: Path) -> None:
    env = {"SEALDROP_PASSPHRASE": PASS.decode()}
    r = run(["identity", "create", "--handle", "dr.martin", "--home", str(home),
             "--work-factor", "10"], env)
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert PASS.decode() not in r.output  # type: ignore[attr-defined]
    r = run(["identity", "show", "--json", "--home", str(home)])
    shown = json.loads(r.output)  # type: ignore[attr-defined]
    bundle = load_public_bundle(home)
    assert shown["handle"] == "dr.martin"
    assert shown["safety_number"] == safety.safety_number(bundle.signing_key)
    assert shown["x25519"] == bundle.x25519 and shown["pq"] == bundle.pq
    r = run(["identity", "show", "--home", str(home)])
    assert shown["safety_number"] in r.output  # type: ignore[attr-defined]
    r = run(["identity", "export", "--age", "--home", str(home)], env)
    ident = load_identity(home, PASS)
    assert ident.x25519.encode() in r.output and ident.pq.encode() in r.output  # type: ignore[attr-defined]
    assert "SIGNING" not in r.output  # type: ignore[attr-defined]
    pwfile = tmp_path / "pw"
    pwfile.write_bytes(PASS + b"\n")
    r = run(["identity", "export", "--age", "--no-pq", "--home", str(home),
             "--passphrase-file", str(pwfile)])
    assert "SECRET-KEY-PQ" not in r.output and ident.x25519.encode() in r.output  # type: ignore[attr-defined]
    r = run(["identity", "export", "--bundle"], {"SEALDROP_HOME": str(home)})
    assert json.loads(r.output)["handle"] == "dr.martin"  # type: ignore[attr-defined]


def test_cli_wrong_passphrase_exits_nonzero(home: Path) -> None:
    create_identity(home, "dr.martin", PASS, work_factor=10)
    r = run(["identity", "export", "--age", "--home", str(home)], {"SEALDROP_PASSPHRASE": "nope"})
    assert r.exit_code != 0  # type: ignore[attr-defined]
    assert isinstance(r.exception, WrongPassphraseError)  # type: ignore[attr-defined]
    assert "AGE-SECRET" not in r.output  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("age") is None, reason="needs /usr/bin/age")
def test_stock_age_decrypts_the_identity_file(home: Path, tmp_path: Path) -> None:
    """`age -d identity.age` (passphrase typed on a terminal) gives a usable identity file."""
    import pty
    import select

    create_identity(home, "dr.martin", PASS, work_factor=10)
    out_path = tmp_path / "plain.txt"
    pid, fd = pty.fork()
    if pid == 0:  # child: age asks for the passphrase on its terminal (the pty)
        os.execvp("age", ["age", "-d", "-o", str(out_path), str(home / IDENTITY_FILE)])
    buf = b""
    sent = False
    while True:
        ready, _, _ = select.select([fd], [], [], 20)
        if not ready:
            break
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        buf += data
        if not sent and b"passphrase" in buf.lower():
            os.write(fd, PASS + b"\n")
            sent = True
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, buf
    text = out_path.read_text()
    ident = load_identity(home, PASS)
    assert ident.x25519.encode() in text and ident.pq.encode() in text
    from sealdrop.crypto import age

    assert len(age.parse_identities(text)) == 2
