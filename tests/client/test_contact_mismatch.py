"""A wrong safety number says what it changed (nothing) and what to do, for a contact
verified before, one never verified, and one not yet pinned."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sealdrop.client.cli.contacts import contacts
from sealdrop.client.errors import SafetyNumberMismatchError
from sealdrop.client.profile.contacts import ContactState, ContactStore
from sealdrop.crypto import safety
from tests.client.receivekit import ALICE, BOB, NOW

SEALDROP = str(Path(sys.executable).parent / "sealdrop")


def _number(bundle: object) -> str:
    return safety.safety_number(bundle.signing_key)  # type: ignore[attr-defined]


def _wrong(bundle: object) -> str:
    """The right number with its last digit changed: the typo a person makes."""
    right = _number(bundle)
    return right[:-1] + str((int(right[-1]) + 1) % 10)


def test_a_verified_contact_stays_verified(tmp_path: Path) -> None:
    store = ContactStore(tmp_path)
    store.add(ALICE.bundle, now=NOW, fingerprint=_number(ALICE.bundle))
    with pytest.raises(SafetyNumberMismatchError) as e:
        store.verify("alice.clinic", _wrong(ALICE.bundle), now=NOW + 86400)
    day = time.strftime("%Y-%m-%d", time.localtime(NOW))
    assert str(e.value) == (
        "the number you typed does not match alice.clinic's key; alice.clinic stays "
        f"verified (with the number compared on {day}). Check the digits with them again.")
    assert e.value.hint is not None and "sealdrop whoami" in e.value.hint
    after = store.get("alice.clinic")
    assert after is not None and after.state is ContactState.VERIFIED
    assert after.verified_at == NOW  # the first comparison's date, untouched


def test_add_with_a_wrong_number_on_a_verified_contact_says_the_same(tmp_path: Path) -> None:
    store = ContactStore(tmp_path)
    store.add(ALICE.bundle, now=NOW, fingerprint=_number(ALICE.bundle))
    with pytest.raises(SafetyNumberMismatchError, match="alice.clinic stays verified"):
        store.add(ALICE.bundle, now=NOW + 5, fingerprint=_wrong(ALICE.bundle))
    after = store.get("alice.clinic")
    assert after is not None and after.verified and after.verified_at == NOW


def test_an_unverified_contact_stays_unverified(tmp_path: Path) -> None:
    store = ContactStore(tmp_path)
    store.add(BOB.bundle, now=NOW)
    with pytest.raises(SafetyNumberMismatchError) as e:
        store.verify("bob.lab", _wrong(BOB.bundle), now=NOW)
    assert str(e.value) == ("the number you typed does not match bob.lab's key; bob.lab stays "
                            "unverified. Check the digits with them again.")
    assert e.value.hint is not None and "do not send to bob.lab" in e.value.hint
    after = store.get("bob.lab")
    assert after is not None and after.state is ContactState.UNVERIFIED


def test_a_new_contact_with_a_wrong_number_is_not_saved(tmp_path: Path) -> None:
    store = ContactStore(tmp_path)
    with pytest.raises(SafetyNumberMismatchError, match="nothing was saved"):
        store.add(BOB.bundle, now=NOW, fingerprint=_wrong(BOB.bundle))
    assert store.get("bob.lab") is None


def test_the_cli_prints_it_and_the_right_number_still_verifies(tmp_path: Path) -> None:
    store = ContactStore(tmp_path)
    store.add(ALICE.bundle, now=NOW, fingerprint=_number(ALICE.bundle))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
    r = subprocess.run([SEALDROP, "contacts", "verify", "alice.clinic", _wrong(ALICE.bundle),
                        "--home", str(tmp_path)], capture_output=True, text=True, timeout=60,
                       env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0].startswith(
        "sealdrop: error: the number you typed does not match alice.clinic's key; "
        "alice.clinic stays verified (with the number compared on ")
    assert r.stderr.splitlines()[1].startswith("sealdrop: hint: ask alice.clinic to read theirs")
    ok = CliRunner().invoke(contacts, ["verify", "alice.clinic", *_number(ALICE.bundle).split(),
                                       "--home", str(tmp_path)])
    assert ok.exit_code == 0 and ok.output == "alice.clinic: verified\n"
