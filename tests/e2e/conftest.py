from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kit import Relay, User, make_template


@pytest.fixture(scope="session")
def relay_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    data = tmp_path_factory.mktemp("relay-template") / "data"
    return data, make_template(data)


@pytest.fixture
def relay(tmp_path: Path, relay_template: tuple[Path, list[str]]) -> Iterator[Relay]:
    r = Relay(tmp_path / "relay-data", tmp_path / "relay.log", template=relay_template)
    r.start()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def practice(tmp_path: Path, relay: Relay) -> User:
    u = User(tmp_path, "cabinet-martin", relay)
    u.init()
    return u


@pytest.fixture
def lab(tmp_path: Path, relay: Relay) -> User:
    u = User(tmp_path, "labo-dupont", relay)
    u.init()
    return u


@pytest.fixture
def pair(practice: User, lab: User) -> tuple[User, User]:
    practice.trust(lab)
    lab.trust(practice)
    return practice, lab
