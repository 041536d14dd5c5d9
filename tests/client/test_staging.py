"""Receiving: every attack leaves the destination untouched and no staging folder behind.

Hostile archives are built by hand (tests/crypto/transferkit.py) and encrypted
with crypto.age to the receiver, as a malicious sender or relay would.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from sealdrop.client.errors import (
    ContactKeyChangedError,
    NotAddressedError,
    ReceiveError,
    ReplayError,
    UnknownContactError,
    UnverifiedContactError,
)
from sealdrop.client.receive import staging
from sealdrop.crypto import age
from sealdrop.crypto.errors import (
    ContainerError,
    HostileArchiveError,
    IntegrityError,
    SignatureError,
    UnsafePathError,
)
from sealdrop.crypto.identity import SecretIdentity
from tests.client.receivekit import (
    ALICE,
    BOB,
    CAROL,
    Profile,
    assert_untouched,
    make_dest,
    snapshot,
)
from tests.crypto.transferkit import Archive, build_archive, encrypt_to, raw_member

FILES = [
    ("case 17/CBCT/IM0001.dcm", b"DICM" + bytes(5000)),
    ("case 17/CBCT/IM0002.dcm", b"DICM" + bytes(range(256)) * 20),
    ("case 17/scan.stl", b"solid x\nendsolid x\n"),
    ("case 17/empty.txt", b""),
]


@pytest.fixture
def bob(tmp_path: Path) -> Profile:
    return Profile(tmp_path / "bob-home", BOB, verified=(ALICE,))


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return make_dest(tmp_path)


def good(**kw: object) -> Archive:
    return build_archive(FILES, sender=ALICE, recipients=[BOB], **kw)[0]  # type: ignore[arg-type]


def blob(arch: Archive, *to: SecretIdentity) -> bytes:
    return encrypt_to(arch.to_bytes(), *(to or (BOB,)))


def refused(
    bob: Profile,
    dest: Path,
    data: bytes,
    exc: type[BaseException] | tuple[type[BaseException], ...],
    match: str | None = None,
    **kw: object,
) -> None:
    before = snapshot(dest)
    with pytest.raises(exc, match=match) as ei:
        bob.receive(data, dest, **kw)
    assert "\n" not in str(ei.value)
    assert_untouched(dest, before)


# --- the good path -----------------------------------------------------------------


def test_receive_places_every_file(bob: Profile, dest: Path) -> None:
    before = snapshot(dest)
    got = bob.receive(blob(good()), dest)
    assert got.sender.handle == "alice.clinic" and got.sender.verified
    after = snapshot(dest)
    for path, content in FILES:
        assert after.pop(path) == content
    for extra in ("case 17", "case 17/CBCT"):
        assert after.pop(extra) is None
    assert after == before
    assert not [p for p in dest.iterdir() if p.name.startswith(staging.STAGING_PREFIX)]
    assert bob.replay.seen(got.manifest.transfer_id)


def test_receive_into_existing_folder_merges_without_clobbering(bob: Profile, dest: Path) -> None:
    arch, _ = build_archive([("old case/new.dcm", b"DICM")], sender=ALICE, recipients=[BOB])
    bob.receive(blob(arch), dest)
    assert (dest / "old case" / "new.dcm").read_bytes() == b"DICM"
    assert (dest / "old case" / "report.pdf").read_bytes() == b"%PDF old"


# --- attacks on content and manifest ------------------------------------------------


def test_attack_tampered_file_content(bob: Profile, dest: Path) -> None:
    arch = good()
    arch.members[1] = raw_member("files/" + FILES[1][0], b"DICM" + bytes(5120))
    refused(bob, dest, blob(arch), IntegrityError, "IM0002.dcm.*SHA-256")


def test_attack_swapped_file_between_transfers(bob: Profile, dest: Path) -> None:
    other, _ = build_archive(
        [(FILES[0][0], b"DICM other patient")], sender=ALICE, recipients=[BOB],
        transfer_id=b"\x02" * 16,
    )
    arch = good()
    arch.members[0] = other.members[0]
    refused(bob, dest, blob(arch), IntegrityError, "IM0001.dcm")


def test_attack_dropped_file(bob: Profile, dest: Path) -> None:
    arch = good()
    del arch.members[2]
    refused(bob, dest, blob(arch), IntegrityError, "scan.stl.*missing")


def test_attack_added_file(bob: Profile, dest: Path) -> None:
    arch = good()
    arch.members.insert(1, raw_member("files/case 17/virus.exe", b"MZ"))
    refused(bob, dest, blob(arch), IntegrityError, "virus.exe")


def test_attack_reordered_members(bob: Profile, dest: Path) -> None:
    arch = good()
    arch.members.reverse()
    refused(bob, dest, blob(arch), HostileArchiveError, "order")


def test_attack_manifest_edited(bob: Profile, dest: Path) -> None:
    arch = good(note="crown 36")
    arch.manifest = arch.manifest.replace(b"crown 36", b"crown 46")
    refused(bob, dest, blob(arch), SignatureError)


def test_attack_signature_from_another_key(bob: Profile, dest: Path) -> None:
    arch = good(signer=CAROL)
    refused(bob, dest, blob(arch), SignatureError, "alice.clinic")


def test_attack_recipient_removed_from_manifest(bob: Profile, dest: Path) -> None:
    # Alice signed a transfer for Carol only; a relay re-encrypts it to Bob.
    arch, _ = build_archive(FILES, sender=ALICE, recipients=[CAROL])
    refused(bob, dest, blob(arch), ReceiveError, "not among the recipients")


def test_attack_recipient_added_to_manifest(bob: Profile, dest: Path) -> None:
    arch, _ = build_archive(FILES, sender=ALICE, recipients=[CAROL])
    carol_only = arch.manifest
    arch.manifest = build_archive(FILES, sender=ALICE, recipients=[CAROL, BOB])[0].manifest
    assert arch.manifest != carol_only  # Bob added, the old signature kept
    refused(bob, dest, blob(arch), SignatureError)


def test_attack_receiver_not_among_age_recipients(bob: Profile, dest: Path) -> None:
    refused(bob, dest, blob(good(), CAROL), ReceiveError, "not addressed to you")


def test_not_addressed_is_its_own_class(bob: Profile, dest: Path) -> None:
    """receive drops the spooled ciphertext of such a transfer: it catches the
    class, never the message."""
    refused(bob, dest, blob(good(), CAROL), NotAddressedError)
    arch, _ = build_archive(FILES, sender=ALICE, recipients=[CAROL])
    refused(bob, dest, blob(arch), NotAddressedError)
    # A name collision is a ReceiveError too, but one the user can fix: not this class.
    (dest / "case 17").mkdir()
    (dest / "case 17" / "scan.stl").write_bytes(b"mine")
    with pytest.raises(ReceiveError) as ei:
        bob.receive(blob(good()), dest)
    assert not isinstance(ei.value, NotAddressedError)


def test_attack_replayed_transfer(bob: Profile, dest: Path, tmp_path: Path) -> None:
    data = blob(good())
    bob.receive(data, dest)
    dest2 = make_dest(tmp_path / "second")
    refused(bob, dest2, data, ReplayError, "already received")


def test_attack_corrupted_ciphertext(bob: Profile, dest: Path) -> None:
    data = bytearray(blob(good()))
    data[-100] ^= 1
    refused(bob, dest, bytes(data), age.PayloadError)


def test_attack_truncated_ciphertext(bob: Profile, dest: Path) -> None:
    data = blob(good())
    refused(bob, dest, data[: len(data) - 1000], (age.PayloadError, ContainerError))


@pytest.mark.parametrize(
    "name",
    [
        "/etc/cron.d/evil",
        "../evil",
        "files/../evil",
        "files/../../evil",
        "files/a/../../../evil",
        "files//etc/passwd",
        "files/./x",
        "files/a\\..\\..\\evil",
        "files/C:evil",
        "outside.txt",
    ],
)
def test_attack_path_traversal(bob: Profile, dest: Path, tmp_path: Path, name: str) -> None:
    arch = good()
    arch.members.insert(0, raw_member(name, b"pwned"))
    refused(bob, dest, blob(arch), (UnsafePathError, HostileArchiveError))
    assert not (tmp_path / "evil").exists()


def test_attack_traversal_via_pax_path(bob: Profile, dest: Path) -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/ok", b"x", pax={"path": "files/../../evil"}))
    refused(bob, dest, blob(arch), UnsafePathError)


@pytest.mark.parametrize(
    ("kind", "linkname"),
    [
        (tarfile.SYMTYPE, "/etc/passwd"),
        (tarfile.SYMTYPE, "../../.."),
        (tarfile.LNKTYPE, "/etc/passwd"),
        (tarfile.CHRTYPE, ""),
        (tarfile.BLKTYPE, ""),
        (tarfile.FIFOTYPE, ""),
        (tarfile.DIRTYPE, ""),
    ],
)
def test_attack_links_and_special_files(
    bob: Profile, dest: Path, kind: bytes, linkname: str
) -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/case 17/link", type=kind, linkname=linkname))
    refused(bob, dest, blob(arch), HostileArchiveError)


@pytest.mark.parametrize(
    "names",
    [
        ["files/a.dcm", "files/a.dcm"],
        ["files/Scan.STL", "files/scan.stl"],
        ["files/x", "files/x/y"],
        ["files/caf\u00e9", "files/cafe\u0301"],
    ],
)
def test_attack_duplicate_or_colliding_names(bob: Profile, dest: Path, names: list[str]) -> None:
    arch = good()
    arch.members[:0] = [raw_member(n, b"x") for n in names]
    refused(bob, dest, blob(arch), UnsafePathError)


def test_attack_member_after_manifest(bob: Profile, dest: Path) -> None:
    arch = good()
    arch.after = [raw_member("files/late.txt", b"late")]
    refused(bob, dest, blob(arch), HostileArchiveError)


def test_attack_manifest_missing(bob: Profile, dest: Path) -> None:
    arch = good()
    arch.manifest = arch.sig = b""
    refused(bob, dest, blob(arch), ContainerError, "without a manifest")


# --- attacks on trust -------------------------------------------------------------


def test_attack_key_change_of_pinned_contact(bob: Profile, dest: Path) -> None:
    # Mallory makes a fresh identity under Alice's handle and signs with it.
    mallory = SecretIdentity.generate(handle="alice.clinic", created=1_700_000_999)
    arch, _ = build_archive(FILES, sender=mallory, recipients=[BOB])
    refused(bob, dest, blob(arch), ContactKeyChangedError, "alice.clinic.*CHANGED")
    refused(bob, dest, blob(arch), ContactKeyChangedError, allow_unverified=True)


def test_attack_unverified_sender_without_flag(tmp_path: Path, dest: Path) -> None:
    bob = Profile(tmp_path / "h", BOB, unverified=(ALICE,))
    refused(bob, dest, blob(good()), UnverifiedContactError, "alice.clinic")
    bob.receive(blob(good()), dest, allow_unverified=True)
    assert (dest / FILES[0][0]).exists()


def test_attack_unknown_sender(tmp_path: Path, dest: Path) -> None:
    bob = Profile(tmp_path / "h", BOB)
    refused(bob, dest, blob(good()), UnknownContactError, "alice.clinic")
    assert bob.contacts.get("alice.clinic") is None  # nothing pinned by a refused transfer


# --- placement ----------------------------------------------------------------------


def test_name_collision_refuses_whole_transfer(bob: Profile, dest: Path) -> None:
    (dest / "case 17").mkdir()
    (dest / "case 17" / "scan.stl").write_bytes(b"the lab's own file")
    refused(bob, dest, blob(good()), ReceiveError, "scan.stl.*already exists")
    assert not bob.replay.seen(bytes(range(16)))


def test_parent_is_a_file_or_a_link(bob: Profile, dest: Path, tmp_path: Path) -> None:
    (dest / "case 17").write_bytes(b"file where a folder should be")
    refused(bob, dest, blob(good()), ReceiveError, "not a folder")
    (dest / "case 17").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dest / "case 17").symlink_to(elsewhere)
    refused(bob, dest, blob(good()), ReceiveError, "link")
    assert list(elsewhere.iterdir()) == []


def test_failure_while_placing_is_undone(
    bob: Profile, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link
    calls = {"n": 0}

    def flaky_link(src: object, dst: object, *a: object, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_link(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(staging.os, "link", flaky_link)
    refused(bob, dest, blob(good()), ReceiveError, "cannot move files")
    assert not bob.replay.seen(bytes(range(16)))


def test_failure_recording_replay_is_undone(
    bob: Profile, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*a: object, **k: object) -> None:
        raise ReplayError("disk full")

    monkeypatch.setattr(bob.replay, "record", broken)
    refused(bob, dest, blob(good()), ReplayError)


def test_destination_must_exist(bob: Profile, tmp_path: Path) -> None:
    with pytest.raises(ReceiveError, match="not an existing folder"):
        bob.receive(blob(good()), tmp_path / "nope")
