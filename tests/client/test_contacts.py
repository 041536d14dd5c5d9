"""Pinned contacts: TOFU, verification, key change refused, rotation, the CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from sealdrop.client.cli import cli
from sealdrop.client.errors import (
    ContactError,
    ContactKeyChangedError,
    SafetyNumberMismatchError,
    UnknownContactError,
    UnverifiedContactError,
)
from sealdrop.client.profile.contacts import ContactState, ContactStore
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.identity import SecretIdentity
from tests.client.receivekit import ALICE, BOB, NOW


@pytest.fixture
def store(tmp_path: Path) -> ContactStore:
    return ContactStore(tmp_path / "home")


def rotated(ident: SecretIdentity, created: int) -> KeyBundle:
    """A newer bundle, same signing key, new encryption keys."""
    other = SecretIdentity.generate(handle=ident.handle, created=created)
    return KeyBundle.create(
        handle=ident.handle, signing_key=ident.signing_key,
        x25519=other.bundle.x25519, pq=other.bundle.pq, created=created,
    )


def impostor(handle: str) -> KeyBundle:
    return SecretIdentity.generate(handle=handle, created=1_800_000_000).bundle


def test_add_unverified_then_verify(store: ContactStore) -> None:
    c = store.add(ALICE.bundle, now=NOW)
    assert c.state is ContactState.UNVERIFIED and not c.verified
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    c = store.verify("alice.clinic", ALICE.safety_number.replace(" ", "-"), now=NOW + 1)
    assert c.verified and c.verified_at == NOW + 1
    assert store.get("alice.clinic") == c


def test_add_with_fingerprint(store: ContactStore) -> None:
    assert store.add(ALICE.bundle, now=NOW, fingerprint=ALICE.safety_number).verified


def test_wrong_fingerprint_saves_nothing(store: ContactStore) -> None:
    with pytest.raises(SafetyNumberMismatchError, match="alice.clinic"):
        store.add(ALICE.bundle, now=NOW, fingerprint=BOB.safety_number)
    assert store.get("alice.clinic") is None
    store.add(ALICE.bundle, now=NOW)
    with pytest.raises(SafetyNumberMismatchError):
        store.verify("alice.clinic", BOB.safety_number, now=NOW)
    assert not store.get("alice.clinic").verified  # type: ignore[union-attr]


def test_key_change_is_refused_loudly(store: ContactStore) -> None:
    store.add(ALICE.bundle, now=NOW, fingerprint=ALICE.safety_number)
    evil = impostor("alice.clinic")
    for call in (
        lambda: store.add(evil, now=NOW),
        lambda: store.check_sender(evil, allow_unverified=True, now=NOW),
        lambda: store.check_recipient(evil, allow_unverified=True, now=NOW),
    ):
        with pytest.raises(ContactKeyChangedError, match="alice.clinic.*CHANGED") as ei:
            call()
        assert ei.value.hint and "compare the new safety number" in ei.value.hint
    assert store.get("alice.clinic").bundle == ALICE.bundle  # type: ignore[union-attr]


def test_key_change_with_wrong_number_still_refused(store: ContactStore) -> None:
    store.add(ALICE.bundle, now=NOW, fingerprint=ALICE.safety_number)
    evil = impostor("alice.clinic")
    with pytest.raises(SafetyNumberMismatchError):
        store.add(evil, now=NOW, fingerprint=ALICE.safety_number)


def test_key_change_after_reverification(store: ContactStore) -> None:
    store.add(ALICE.bundle, now=NOW, fingerprint=ALICE.safety_number)
    new = impostor("alice.clinic")  # say Alice really lost her laptop
    from sealdrop.crypto import safety

    c = store.add(new, now=NOW + 5, fingerprint=safety.safety_number(new.signing_key))
    assert c.verified and c.bundle == new and c.added == NOW + 5


def test_rotation_by_same_signing_key_updates(store: ContactStore) -> None:
    store.add(ALICE.bundle, now=NOW, fingerprint=ALICE.safety_number)
    newer = rotated(ALICE, ALICE.bundle.created + 100)
    assert store.check_recipient(newer, allow_unverified=False, now=NOW) == newer
    assert store.get("alice.clinic").bundle == newer  # type: ignore[union-attr]
    assert store.get("alice.clinic").verified  # type: ignore[union-attr]
    # The old bundle (a relay rolling back) does not replace the newer one.
    assert store.check_recipient(ALICE.bundle, allow_unverified=False, now=NOW) == newer
    assert store.add(ALICE.bundle, now=NOW).bundle == newer


def test_forged_bundle_is_refused(store: ContactStore) -> None:
    forged = KeyBundle(
        handle="alice.clinic", signing_key=ALICE.signing_public_key, x25519=BOB.bundle.x25519,
        pq=BOB.bundle.pq, created=ALICE.bundle.created + 1, signature=ALICE.bundle.signature,
    )
    with pytest.raises(ContactError, match="invalid signature"):
        store.add(forged, now=NOW)
    store.add(ALICE.bundle, now=NOW, fingerprint=ALICE.safety_number)
    with pytest.raises(ContactError):
        store.check_recipient(forged, allow_unverified=False, now=NOW)


def test_unverified_needs_the_flag(store: ContactStore) -> None:
    store.add(ALICE.bundle, now=NOW)
    for check in (store.check_sender, store.check_recipient):
        with pytest.raises(UnverifiedContactError, match="alice.clinic"):
            check(ALICE.bundle, allow_unverified=False, now=NOW)
        check(ALICE.bundle, allow_unverified=True, now=NOW)


def test_unknown_contact(store: ContactStore) -> None:
    with pytest.raises(UnknownContactError):
        store.check_recipient(BOB.bundle, allow_unverified=False, now=NOW)
    assert store.get("bob.lab") is None
    store.check_recipient(BOB.bundle, allow_unverified=True, now=NOW)
    assert store.get("bob.lab").state is ContactState.UNVERIFIED  # type: ignore[union-attr]
    with pytest.raises(UnknownContactError):
        store.verify("nobody", ALICE.safety_number, now=NOW)


def test_remove_and_list(store: ContactStore) -> None:
    store.add(ALICE.bundle, now=NOW)
    store.add(BOB.bundle, now=NOW, fingerprint=BOB.safety_number)
    assert [c.handle for c in store.list()] == ["alice.clinic", "bob.lab"]
    store.remove("alice.clinic")
    assert [c.handle for c in store.list()] == ["bob.lab"]
    with pytest.raises(UnknownContactError):
        store.remove("alice.clinic")


def test_damaged_store_is_an_error(store: ContactStore) -> None:
    store.add(ALICE.bundle, now=NOW)
    obj = json.loads(store.path.read_text())
    obj["contacts"]["alice.clinic"]["bundle"]["x25519"] = BOB.bundle.x25519
    store.path.write_text(json.dumps(obj))
    with pytest.raises(ContactError, match="damaged"):
        store.list()
    store.path.write_text("{nope")
    with pytest.raises(ContactError, match="damaged"):
        store.get("alice.clinic")


def test_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bundle_file = tmp_path / "alice.json"
    bundle_file.write_text(ALICE.bundle.dumps())
    runner = CliRunner()

    def run(*args: str) -> object:
        return runner.invoke(cli, ["contacts", *args, "--home", str(home)])

    r = run("add", "alice.clinic", "--bundle-file", str(bundle_file))
    assert r.exit_code == 0 and "unverified" in r.output  # type: ignore[attr-defined]
    assert ALICE.safety_number in r.output  # type: ignore[attr-defined]
    r = run("verify", "alice.clinic", *ALICE.safety_number.split())
    assert r.exit_code == 0 and "verified" in r.output  # type: ignore[attr-defined]
    r = run("list", "--json")
    (entry,) = json.loads(r.output)  # type: ignore[attr-defined]
    assert entry["state"] == "verified" and entry["safety_number"] == ALICE.safety_number
    evil_file = tmp_path / "evil.json"
    evil_file.write_text(impostor("alice.clinic").dumps())
    r = run("add", "alice.clinic", "--bundle-file", str(evil_file))
    assert r.exit_code != 0 and isinstance(r.exception, ContactKeyChangedError)  # type: ignore[attr-defined]
    r = run("add", "bob.lab", "--bundle-file", str(bundle_file))
    assert r.exit_code != 0 and "not 'bob.lab'" in str(r.exception)  # type: ignore[attr-defined]
    r = run("remove", "alice.clinic")
    assert r.exit_code == 0
    r = run("list")
    assert "no contacts" in r.output  # type: ignore[attr-defined]


def test_signing_key_type_is_opaque() -> None:
    assert isinstance(ALICE.signing_key, SigningKey)
