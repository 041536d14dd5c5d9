"""``sealdrop age`` through the installed console script, as a user runs it."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.tools import run_tty

BIN = Path(sys.executable).parent / "sealdrop"
AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
needs_age = pytest.mark.skipif(
    AGE is None, reason="the age CLI is not installed (apt-get install age)"
)
PASSPHRASE = "staple battery horse correct"


def data_of(size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha512(b"cli" + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


def sealdrop(
    *args: str | Path,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if k != "SEALDROP_PASSPHRASE"}
    return subprocess.run(
        [str(BIN), "age", *map(str, args)],
        input=input if input is not None else b"",
        capture_output=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
        start_new_session=True,  # no controlling terminal: prompts must not hang
    )


def ok(proc: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], *fragments: str) -> str:
    assert proc.returncode != 0
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("sealdrop: error: ")]
    assert len(errors) == 1, err
    assert all(line.startswith(("sealdrop: error: ", "sealdrop: hint: ")) for line in lines), err
    for f in fragments:
        assert f.lower() in errors[0].lower(), err
    return errors[0]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("cli-keys")
    path = d / "key.txt"
    proc = ok(sealdrop("keygen", "-o", path))
    public = proc.stderr.decode().split("Public key: ")[1].split()[0]
    return path, public


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("cli-keys2") / "other.txt"
    proc = ok(sealdrop("keygen", "-o", path))
    return path, proc.stderr.decode().split("Public key: ")[1].split()[0]


# --- keygen -------------------------------------------------------------------------


def test_keygen_file_is_private_and_well_formed(key: tuple[Path, str]) -> None:
    path, public = key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# created: ")
    assert lines[1] == f"# public key: {public}"
    assert lines[2].startswith("AGE-SECRET-KEY-1")
    assert public.startswith("age1") and not public.startswith("age1pq")


def test_keygen_refuses_to_overwrite(key: tuple[Path, str]) -> None:
    path, _ = key
    before = path.read_bytes()
    proc = sealdrop("keygen", "-o", path)
    assert_one_line_error(proc, "exists")
    assert path.read_bytes() == before
    assert not list(path.parent.glob("*.partial"))


def test_keygen_pq(tmp_path: Path) -> None:
    path = tmp_path / "pq.txt"
    proc = ok(sealdrop("keygen", "--pq", "-o", path))
    public = proc.stderr.decode().split("Public key: ")[1].split()[0]
    assert public.startswith("age1pq1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "AGE-SECRET-KEY-PQ-1" in path.read_text()
    assert ok(sealdrop("keygen", "-y", path)).stdout.decode().strip() == public
    # A post-quantum round trip through the CLI.
    (tmp_path / "pt").write_bytes(b"pq payload")
    ok(sealdrop("-r", public, "-o", tmp_path / "ct", tmp_path / "pt"))
    assert b"\n-> mlkem768x25519 " in (tmp_path / "ct").read_bytes()
    out = ok(sealdrop("-d", "-i", path, tmp_path / "ct")).stdout
    assert out == b"pq payload"


def test_keygen_to_stdout_and_convert(tmp_path: Path, key: tuple[Path, str]) -> None:
    proc = ok(sealdrop("keygen"))
    text = proc.stdout.decode()
    assert "AGE-SECRET-KEY-1" in text
    f = tmp_path / "k"
    f.write_text(text)
    public = text.split("# public key: ")[1].split()[0]
    assert ok(sealdrop("keygen", "-y", f)).stdout.decode().strip() == public
    assert ok(sealdrop("keygen", "-y", key[0])).stdout.decode().strip() == key[1]


@pytest.mark.skipif(AGE_KEYGEN is None, reason="age-keygen is not installed")
def test_keygen_y_agrees_with_age_keygen(key: tuple[Path, str]) -> None:
    theirs = subprocess.run([AGE_KEYGEN, "-y", str(key[0])], capture_output=True, check=True)  # type: ignore[list-item]
    assert theirs.stdout.decode().strip() == key[1]


# --- encrypt / decrypt -------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * 1024 + 1, 300_000])
def test_round_trip_files(tmp_path: Path, key: tuple[Path, str], size: int) -> None:
    pt = data_of(size)
    (tmp_path / "pt").write_bytes(pt)
    ok(sealdrop("-e", "-r", key[1], "-o", tmp_path / "ct", tmp_path / "pt"))
    ok(sealdrop("-d", "-i", key[0], "-o", tmp_path / "out", tmp_path / "ct"))
    assert (tmp_path / "out").read_bytes() == pt


def test_pipes_armor_and_recipients_file(tmp_path: Path, key, other_key) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(100_000)
    rfile = tmp_path / "recipients"
    rfile.write_text(f"# two labs\n{key[1]}\n\n{other_key[1]}\n")
    ct = ok(sealdrop("-a", "-R", rfile, input=pt)).stdout
    assert ct.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert ct.rstrip().endswith(b"-----END AGE ENCRYPTED FILE-----")
    for k in (key, other_key):
        assert ok(sealdrop("-d", "-i", k[0], input=ct)).stdout == pt
    # Several -r and several -i.
    ct2 = ok(sealdrop("-r", key[1], "-r", other_key[1], input=pt)).stdout
    assert ok(sealdrop("-d", "-i", other_key[0], "-i", key[0], input=ct2)).stdout == pt
    assert ok(sealdrop("-d", "-i", key[0], "-", input=ct2)).stdout == pt


def test_passphrase_from_the_environment(tmp_path: Path) -> None:
    pt = data_of(5000)
    env = {"SEALDROP_PASSPHRASE": PASSPHRASE}
    ct = ok(sealdrop("-p", "-a", input=pt, env=env)).stdout
    assert b"BEGIN AGE" in ct
    assert ok(sealdrop("-d", input=ct, env=env)).stdout == pt
    wrong = sealdrop("-d", input=ct, env={"SEALDROP_PASSPHRASE": "not it"})
    line = assert_one_line_error(wrong)
    assert "not it" not in wrong.stderr.decode() and PASSPHRASE not in line
    # No passphrase and no terminal: a clear error, not a hang.
    assert_one_line_error(sealdrop("-d", input=ct), "passphrase")
    assert_one_line_error(sealdrop("-p", input=pt), "passphrase")


def test_passphrase_is_never_an_argument(tmp_path: Path) -> None:
    """-p is a flag: a word after it is the input file, never the passphrase."""
    proc = sealdrop("-p", "hunter2-secret", env={"SEALDROP_PASSPHRASE": PASSPHRASE}, cwd=tmp_path)
    assert proc.returncode != 0
    assert not list(tmp_path.iterdir())
    help_text = ok(sealdrop("--help")).stdout.decode()
    assert "SEALDROP_PASSPHRASE" in help_text


def test_refuses_binary_to_a_terminal(tmp_path: Path, key: tuple[Path, str]) -> None:
    (tmp_path / "pt").write_bytes(b"x")
    code, out = run_tty([str(BIN), "age", "-r", key[1], str(tmp_path / "pt")], [])
    assert code != 0
    assert b"terminal" in out


def test_usage_errors(tmp_path: Path, key: tuple[Path, str]) -> None:
    assert sealdrop("-e", "-d", "-i", key[0], input=b"").returncode != 0
    assert_one_line_error(sealdrop("-d", "-r", key[1], input=b""))
    assert_one_line_error(sealdrop("-i", key[0], input=b"x"))
    assert_one_line_error(sealdrop(input=b"x"), "recipient")
    assert_one_line_error(sealdrop("-r", "age1notakey", input=b"x"))
    assert_one_line_error(
        sealdrop("-p", "-r", key[1], input=b"x", env={"SEALDROP_PASSPHRASE": PASSPHRASE})
    )


# --- failures: one line, non-zero, no output left behind ----------------------------


@pytest.fixture
def encrypted(tmp_path: Path, key: tuple[Path, str]) -> tuple[Path, bytes]:
    pt = data_of(3 * 64 * 1024 + 100)  # several chunks, so a late failure is possible
    (tmp_path / "pt").write_bytes(pt)
    ok(sealdrop("-r", key[1], "-o", tmp_path / "ct", tmp_path / "pt"))
    return tmp_path / "ct", pt


def _no_output(d: Path, name: str = "out") -> None:
    assert not (d / name).exists()
    assert not [p.name for p in d.iterdir() if p.name.endswith(".partial")]


def test_wrong_key(encrypted, other_key) -> None:  # type: ignore[no-untyped-def]
    ct, _ = encrypted
    proc = sealdrop("-d", "-i", other_key[0], "-o", ct.parent / "out", ct)
    assert_one_line_error(proc, "identity")
    _no_output(ct.parent)


def test_tampered_payload_leaves_no_output(encrypted, key) -> None:  # type: ignore[no-untyped-def]
    ct, _ = encrypted
    raw = bytearray(ct.read_bytes())
    raw[-100] ^= 0x01  # in the last chunk: earlier chunks authenticate first
    ct.write_bytes(bytes(raw))
    proc = sealdrop("-d", "-i", key[0], "-o", ct.parent / "out", ct)
    assert_one_line_error(proc, "tampered")
    _no_output(ct.parent)


def test_tampered_header(encrypted, key) -> None:  # type: ignore[no-untyped-def]
    ct, _ = encrypted
    raw = ct.read_bytes()
    i = raw.index(b"\n---") - 3
    raw = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
    ct.write_bytes(raw)
    proc = sealdrop("-d", "-i", key[0], "-o", ct.parent / "out", ct)
    assert_one_line_error(proc)
    _no_output(ct.parent)


@pytest.mark.parametrize("cut", [10, 200, 64 * 1024 + 300, -1, -17, -(64 * 1024 + 16)])
def test_truncated_file_leaves_no_output(encrypted, key, cut: int) -> None:  # type: ignore[no-untyped-def]
    ct, _ = encrypted
    raw = ct.read_bytes()
    ct.write_bytes(raw[:cut])
    proc = sealdrop("-d", "-i", key[0], "-o", ct.parent / "out", ct)
    assert_one_line_error(proc)
    _no_output(ct.parent)


def test_failed_decryption_keeps_an_existing_output_file(encrypted, key) -> None:  # type: ignore[no-untyped-def]
    ct, _ = encrypted
    (ct.parent / "out").write_bytes(b"previous contents")
    ct.write_bytes(ct.read_bytes()[:-5])
    assert_one_line_error(sealdrop("-d", "-i", key[0], "-o", ct.parent / "out", ct))
    assert (ct.parent / "out").read_bytes() == b"previous contents"
    assert not [p.name for p in ct.parent.iterdir() if p.name.endswith(".partial")]


def test_missing_files(tmp_path: Path, key: tuple[Path, str]) -> None:
    assert_one_line_error(sealdrop("-d", "-i", key[0], tmp_path / "nope.age"), "nope.age")
    assert_one_line_error(sealdrop("-d", "-i", tmp_path / "nokey", input=b"x"), "nokey")
    assert_one_line_error(sealdrop("-R", tmp_path / "norcpt", input=b"x"), "norcpt")
    assert_one_line_error(sealdrop("keygen", "-y", tmp_path / "nokey"), "nokey")
    proc = sealdrop("-r", key[1], "-o", tmp_path / "out", tmp_path / "missing-input")
    assert_one_line_error(proc, "missing-input")
    _no_output(tmp_path)


def test_not_an_age_file(tmp_path: Path, key: tuple[Path, str]) -> None:
    assert_one_line_error(sealdrop("-d", "-i", key[0], input=b"hello world\n"), "age")
    assert_one_line_error(sealdrop("-d", "-i", key[0], input=b""))


def test_malformed_identity_file_is_not_echoed(tmp_path: Path) -> None:
    f = tmp_path / "bad"
    f.write_text("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQTHISISNOTVALID\n")
    proc = sealdrop("-d", "-i", f, input=b"age-encryption.org/v1\n")
    assert_one_line_error(proc)
    assert "THISISNOTVALID" not in proc.stderr.decode()


# --- interop with the age binary through the CLI ------------------------------------


@needs_age
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
def test_sealdrop_encrypts_age_decrypts(tmp_path: Path, key, armor: bool) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(200_000)
    (tmp_path / "pt").write_bytes(pt)
    ok(sealdrop("-r", key[1], *(["-a"] if armor else []), "-o", tmp_path / "ct", tmp_path / "pt"))
    got = subprocess.run(
        [AGE, "-d", "-i", str(key[0]), str(tmp_path / "ct")],  # type: ignore[list-item]
        capture_output=True,
        check=True,
    ).stdout
    assert got == pt


@needs_age
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
def test_age_encrypts_sealdrop_decrypts(tmp_path: Path, key, armor: bool) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(200_000)
    (tmp_path / "pt").write_bytes(pt)
    argv = [AGE, "-r", key[1], "-o", str(tmp_path / "ct")] + (["-a"] if armor else [])
    subprocess.run([*argv, str(tmp_path / "pt")], check=True)  # type: ignore[list-item]
    ok(sealdrop("-d", "-i", key[0], "-o", tmp_path / "out", tmp_path / "ct"))
    assert (tmp_path / "out").read_bytes() == pt


@needs_age
def test_age_keygen_identity_through_the_cli(tmp_path: Path) -> None:
    assert AGE_KEYGEN is not None
    k = tmp_path / "agekey"
    subprocess.run([AGE_KEYGEN, "-o", str(k)], check=True, capture_output=True)
    public = (
        subprocess.run([AGE_KEYGEN, "-y", str(k)], check=True, capture_output=True)
        .stdout.decode()
        .strip()
    )
    ct = ok(sealdrop("-r", public, input=b"lab results")).stdout
    assert ok(sealdrop("-d", "-i", k, input=ct)).stdout == b"lab results"


@needs_age
def test_passphrase_file_from_age_opens_with_the_env(tmp_path: Path) -> None:
    (tmp_path / "pt").write_bytes(b"passphrase interop")
    code, transcript = run_tty(
        [AGE, "-p", "-o", str(tmp_path / "ct"), str(tmp_path / "pt")],  # type: ignore[list-item]
        [(b"passphrase", PASSPHRASE.encode()), (b"Confirm", PASSPHRASE.encode())],
    )
    assert code == 0, transcript
    out = ok(sealdrop("-d", tmp_path / "ct", env={"SEALDROP_PASSPHRASE": PASSPHRASE})).stdout
    assert out == b"passphrase interop"
