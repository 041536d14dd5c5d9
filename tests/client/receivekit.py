"""Helpers for the client transfer tests: profiles, destination snapshots, receive."""

from __future__ import annotations

import io
from pathlib import Path

from sealdrop.client.profile.contacts import ContactStore
from sealdrop.client.profile.replay import ReplayStore
from sealdrop.client.receive.staging import STAGING_PREFIX, PlacedTransfer, receive_transfer
from sealdrop.crypto.identity import SecretIdentity
from tests.crypto.transferkit import identity

ALICE = identity("alice.clinic")
BOB = identity("bob.lab")
CAROL = identity("carol.lab")
NOW = 1_718_000_100


class Profile:
    """A receiver's profile folder with its contact and replay stores."""

    def __init__(
        self,
        home: Path,
        owner: SecretIdentity,
        *,
        verified: tuple[SecretIdentity, ...] = (),
        unverified: tuple[SecretIdentity, ...] = (),
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.owner = owner
        self.contacts = ContactStore(home)
        self.replay = ReplayStore(home)
        for c in verified:
            self.contacts.add(c.bundle, now=NOW, fingerprint=c.safety_number)
        for c in unverified:
            self.contacts.add(c.bundle, now=NOW)

    def receive(self, blob: bytes, dest: Path, **kw: object) -> PlacedTransfer:
        return receive_transfer(
            io.BytesIO(blob),
            identity=self.owner,
            contacts=self.contacts,
            replay=self.replay,
            dest=dest,
            now=NOW,
            **kw,  # type: ignore[arg-type]
        )


def make_dest(root: Path) -> Path:
    """A destination that already holds something, so 'untouched' means something."""
    dest = root / "dest"
    (dest / "old case").mkdir(parents=True)
    (dest / "old case" / "report.pdf").write_bytes(b"%PDF old")
    (dest / "notes.txt").write_text("keep me")
    return dest


def snapshot(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = None if p.is_dir() else p.read_bytes()
    return out


def assert_untouched(dest: Path, before: dict[str, bytes | None]) -> None:
    assert snapshot(dest) == before
    assert not [p for p in dest.iterdir() if p.name.startswith(STAGING_PREFIX)]
