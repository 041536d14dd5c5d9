"""Issue 10, classes 1, 3 and 5 at the receive function: hostile transfers become one
refusal with the project's error; nothing unverified is ever written in DEST or
anywhere before the sender is known; staging is private, outside DEST, and goes
away on signals and after SIGKILL; a refused transfer changes no pinned contact.
"""

from __future__ import annotations

import fcntl
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealdrop.client.errors import ClientError, ReceiveError, ReplayError
from sealdrop.client.profile.layout import STAGING_DIR
from sealdrop.client.receive import stagearea
from sealdrop.client.receive import staging as staging_mod
from sealdrop.client.receive.interrupt import Signals
from sealdrop.crypto.container import BLOCK
from sealdrop.crypto.errors import SealdropCryptoError
from tests.client.receivekit import ALICE, BOB, CAROL, NOW, Profile, make_dest, snapshot
from tests.crypto.transferkit import build_archive, encrypt_to

FILES = [("case 9/IM0001.dcm", b"DICM" + bytes(range(256)) * 40), ("case 9/scan.stl", b"solid")]


def sealed(*, sender: object = ALICE, transfer_id: bytes = bytes(range(16))) -> bytes:
    arch, _ = build_archive(FILES, sender=sender, recipients=[BOB],  # type: ignore[arg-type]
                            transfer_id=transfer_id)
    return arch.to_bytes()


def area_of(dest: Path) -> Path:
    return dest.resolve().parent / stagearea.SIBLING_NAME


def staged_left(dest: Path) -> list[str]:
    area = area_of(dest)
    return sorted(p.name for p in area.iterdir()) if area.exists() else []


# --- class 1: fuzzing the whole receive path -------------------------------------------

_PLAIN = sealed()
_BLOB = encrypt_to(_PLAIN, BOB, classical=True)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_transfers_are_accepted_or_refused_with_the_projects_error(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Mutate the plaintext archive (re-encrypted, as a hostile sender would) or the
    ciphertext (as a hostile relay would): the only outcomes are 'accepted' and
    'refused with SealdropCryptoError/ClientError', DEST untouched and no staging left."""
    root = tmp_path_factory.mktemp("fuzz")
    bob = Profile(root / "home", BOB, verified=(ALICE,))
    dest = make_dest(root)
    layer = data.draw(st.sampled_from(["plain", "cipher"]))
    buf = bytearray(_PLAIN if layer == "plain" else _BLOB)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        op = data.draw(st.sampled_from(["byte", "number", "truncate", "insert"]))
        if op == "byte":
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "number":
            at = pos - pos % BLOCK + data.draw(st.sampled_from([124, 148, 156, 345]))
            buf[at:at + 12] = data.draw(st.binary(min_size=12, max_size=12))
        elif op == "truncate":
            del buf[max(pos, 1):]
        else:
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=600))
    blob = encrypt_to(bytes(buf), BOB, classical=True) if layer == "plain" else bytes(buf)
    before = snapshot(dest)
    try:
        placed = bob.receive(blob, dest)
    except (SealdropCryptoError, ClientError) as exc:
        assert "\n" not in str(exc)
        assert snapshot(dest) == before
    else:
        assert [p.relative_to(dest).as_posix() for p in placed.files] == [p for p, _ in FILES]
    assert staged_left(dest) == []
    assert bob.contacts.get(ALICE.handle) is not None


def test_an_unexpected_parser_exception_becomes_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The net under the parsers: a bug raising e.g. IndexError is still a refusal."""
    bob = Profile(tmp_path / "home", BOB, verified=(ALICE,))
    dest = make_dest(tmp_path)
    before = snapshot(dest)

    def broken(block: bytes) -> object:
        raise IndexError("a parser bug")

    monkeypatch.setattr("sealdrop.crypto.container.ContainerReader._parse_header",
                        staticmethod(broken))
    with pytest.raises(SealdropCryptoError, match="malformed.*IndexError"):
        bob.receive(encrypt_to(_PLAIN, BOB, classical=True), dest)
    assert snapshot(dest) == before and staged_left(dest) == []


# --- class 3: where staging happens, and when ----------------------------------------


def test_verify_first_writes_nothing_before_the_sender_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``verify_first`` (a sender the relay names is not verified), a stranger's,
    an unverified sender's or a forged transfer is refused after the first (read-only)
    reading: not one file is staged anywhere."""
    writes: list[str] = []
    real = staging_mod._write_member
    monkeypatch.setattr(staging_mod, "_write_member",
                        lambda s, p, r: (writes.append(p), real(s, p, r))[1])
    dest = make_dest(tmp_path)
    stranger = Profile(tmp_path / "h1", BOB)  # ALICE unknown
    with pytest.raises(ClientError, match="not among your contacts"):
        stranger.receive(encrypt_to(_PLAIN, BOB, classical=True), dest, verify_first=True)
    unverified = Profile(tmp_path / "h2", BOB, unverified=(ALICE,))
    with pytest.raises(ClientError, match="not verified"):
        unverified.receive(encrypt_to(_PLAIN, BOB, classical=True), dest, verify_first=True)
    forged = Profile(tmp_path / "h3", BOB, verified=(ALICE,))
    arch, _ = build_archive(FILES, sender=ALICE, recipients=[BOB], signer=CAROL)
    with pytest.raises(SealdropCryptoError, match="signature"):
        forged.receive(encrypt_to(arch.to_bytes(), BOB, classical=True), dest,
                       verify_first=True)
    assert writes == []
    ok = Profile(tmp_path / "h4", BOB, verified=(ALICE,))
    ok.receive(encrypt_to(_PLAIN, BOB, classical=True), dest, verify_first=True)
    assert writes == [p for p, _ in FILES]  # the check above could fail


def test_one_pass_stages_only_privately_and_leaves_nothing_when_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pass (the default): a forged, a stranger's or a tampered transfer is staged
    as it is decrypted, but only in the private area (0700, outside DEST), and every
    staged byte is gone once it is refused; DEST is never touched."""
    staged: list[Path] = []
    real = staging_mod._write_member

    def spy(folder: Path, path: str, read: object) -> None:
        staged.append(folder)
        assert os.stat(folder).st_mode & 0o777 == 0o700
        real(folder, path, read)  # type: ignore[arg-type]

    monkeypatch.setattr(staging_mod, "_write_member", spy)
    dest = make_dest(tmp_path)
    before = snapshot(dest)
    home = tmp_path / "h"
    bob = Profile(home, BOB, verified=(ALICE,))
    forged, _ = build_archive(FILES, sender=ALICE, recipients=[BOB], signer=CAROL)
    with pytest.raises(SealdropCryptoError, match="signature"):
        bob.receive(encrypt_to(forged.to_bytes(), BOB, classical=True), dest, home=home)
    stranger = Profile(tmp_path / "h2", BOB)  # ALICE unknown
    with pytest.raises(ClientError, match="not among your contacts"):
        stranger.receive(encrypt_to(_PLAIN, BOB, classical=True), dest, home=stranger.home)
    big, _ = build_archive([("case 9/big.bin", bytes(range(256)) * 1024)], sender=ALICE,
                           recipients=[BOB])
    blob = bytearray(encrypt_to(big.to_bytes(), BOB, classical=True))
    blob[-1] ^= 1  # the final chunk's tag: three chunks of big.bin are staged before it
    with pytest.raises(SealdropCryptoError, match="authenticate"):
        bob.receive(bytes(blob), dest, home=home)
    assert len(staged) == 2 * len(FILES) + 1  # the checks below mean something
    for folder in staged:
        assert not folder.exists()
        assert not folder.resolve().is_relative_to(dest.resolve())
    assert list((home / STAGING_DIR).iterdir()) == []
    assert snapshot(dest) == before


def test_staging_is_private_outside_dest_on_its_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    bob = Profile(home, BOB, verified=(ALICE,))
    dest = make_dest(tmp_path)
    seen: list[tuple[Path, int, dict[str, bytes | None]]] = []
    real = staging_mod._write_member

    def spy(folder: Path, path: str, read: object) -> None:
        seen.append((folder, os.stat(folder).st_mode & 0o777, snapshot(dest)))
        real(folder, path, read)  # type: ignore[arg-type]

    monkeypatch.setattr(staging_mod, "_write_member", spy)
    before = snapshot(dest)
    staging_mod.receive_transfer(io.BytesIO(encrypt_to(_PLAIN, BOB, classical=True)),
                                 identity=BOB, contacts=bob.contacts, replay=bob.replay,
                                 dest=dest, now=NOW, home=home)
    assert seen
    for folder, mode, dest_then in seen:
        assert folder.parent == home / STAGING_DIR  # the profile: same filesystem here
        assert not folder.resolve().is_relative_to(dest.resolve())
        assert mode == 0o700 and os.stat(folder.parent).st_mode & 0o777 == 0o700
        assert dest_then == before  # nothing visible in DEST while staging
    assert list((home / STAGING_DIR).iterdir()) == []


def test_staging_area_refuses_places_inside_dest_or_elsewhere(tmp_path: Path) -> None:
    dest = make_dest(tmp_path)
    with pytest.raises(ReceiveError, match="no private staging folder") as ei:
        stagearea.staging_area(dest, configured=dest / "sub")
    assert "--staging" in (ei.value.hint or "")
    assert not (dest / "sub").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReceiveError, match="no private staging folder"):
        stagearea.staging_area(dest, configured=tmp_path / "file")
    # a profile inside DEST is skipped for the sibling folder, never used
    assert stagearea.staging_area(dest, home=dest / "profile") == area_of(dest)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        with pytest.raises(ReceiveError, match="no private staging folder"):
            stagearea.staging_area(dest, configured=shm / f"sd-{os.getpid()}")
    # someone else's access is taken away, not used as is
    wide = tmp_path / "wide"
    wide.mkdir(mode=0o777)
    os.chmod(wide, 0o777)
    assert stagearea.staging_area(dest, configured=wide) == wide
    assert os.stat(wide).st_mode & 0o777 == 0o700


def test_sweep_removes_what_a_killed_receive_left_and_spares_a_live_one(tmp_path: Path) -> None:
    dest = make_dest(tmp_path)
    area = stagearea.staging_area(dest)
    # A receive killed with SIGKILL while staging, in a real process.
    code = ("import sys, os, time; from pathlib import Path\n"
            "from sealdrop.client.receive.stagearea import staging_folder\n"
            "with staging_folder(Path(sys.argv[1])) as f:\n"
            "    (f / 'files').mkdir(); (f / 'files' / 'IM1').write_bytes(b'patient')\n"
            "    print(f, flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(area)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    dead = Path(proc.stdout.readline().strip())
    assert (dead / "files" / "IM1").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    # A live one: locked by this process.
    with stagearea.staging_folder(area) as live:
        legacy = dest / ".sealdrop-staging-0123456789abcdef"
        (legacy / "files").mkdir(parents=True)
        gone = stagearea.sweep(area, dest)
        assert sorted(gone) == sorted([dead, legacy])
        assert live.exists() and not dead.exists() and not legacy.exists()
        fd = os.open(live, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not live.exists()


def test_sigterm_while_staging_removes_it_and_leaves_dest_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = Profile(tmp_path / "home", BOB, verified=(ALICE,))
    dest = make_dest(tmp_path)
    before = snapshot(dest)
    real = staging_mod._write_member
    staged: list[Path] = []

    def write_then_term(folder: Path, path: str, read: object) -> None:
        real(folder, path, read)  # type: ignore[arg-type]
        staged.append(folder / "files" / path)
        os.kill(os.getpid(), signal.SIGTERM)  # the real signal, delivered here

    monkeypatch.setattr(staging_mod, "_write_member", write_then_term)
    with Signals().installed(), pytest.raises(KeyboardInterrupt):
        bob.receive(encrypt_to(_PLAIN, BOB, classical=True), dest)
    assert staged and not staged[0].exists()
    assert staged_left(dest) == [] and snapshot(dest) == before
    assert not bob.replay.seen(bytes(range(16)))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


# --- class 5: a refused transfer changes no pinned contact --------------------------


def test_a_refused_transfer_changes_no_pinned_contact(tmp_path: Path) -> None:
    bob = Profile(tmp_path / "home", BOB, verified=(CAROL,))
    dest = make_dest(tmp_path)
    (dest / "case 9").mkdir()
    (dest / "case 9" / "scan.stl").write_bytes(b"taken")  # a name the transfer needs
    contacts_before = (tmp_path / "home" / "contacts.json").read_bytes()
    blob = encrypt_to(_PLAIN, BOB, classical=True)
    # Unknown sender accepted with the flag, but refused for the name collision: not pinned.
    with pytest.raises(ReceiveError, match="already exists"):
        bob.receive(blob, dest, allow_unverified=True)
    assert bob.contacts.get(ALICE.handle) is None
    # Refused as a replay: not pinned either.
    bob.replay.record(bytes(range(16)), NOW)
    (dest / "case 9" / "scan.stl").unlink()
    with pytest.raises(ReplayError):
        bob.receive(blob, dest, allow_unverified=True)
    assert bob.contacts.get(ALICE.handle) is None
    assert (tmp_path / "home" / "contacts.json").read_bytes() == contacts_before
    # Accepted: pinned (unverified) only now.
    fresh = sealed(transfer_id=bytes(16))
    bob.receive(encrypt_to(fresh, BOB, classical=True), dest, allow_unverified=True)
    got = bob.contacts.get(ALICE.handle)
    assert got is not None and not got.verified
