"""The routes file and the listener's own route: what is accepted, and every way it is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealdrop.client.dicom.routes import (
    Route,
    RoutesError,
    build_table,
    check_aet,
    load_routes,
    parse_routes,
)

GOOD = """
[routes.LAB_DUPONT]
to = ["labo-dupont"]

[routes.RADIO_B]
to = ["radiologue-b", "labo-dupont"]
"""


def test_a_routes_file_and_the_listeners_own_title() -> None:
    table = build_table("SEALDROP", ["labo-martin"], parse_routes(GOOD))
    assert table.for_called("LAB_DUPONT") == Route("LAB_DUPONT", ("labo-dupont",))
    assert table.for_called("RADIO_B ") == Route("RADIO_B", ("radiologue-b", "labo-dupont"))
    assert table.for_called("SEALDROP") == Route("SEALDROP", ("labo-martin",))
    assert table.for_called("LAB_DUPOND") is None  # a typo is refused, not routed
    assert table.handles() == ("labo-dupont", "radiologue-b", "labo-martin")


def test_a_default_route_takes_any_other_title() -> None:
    table = build_table("SEALDROP", [], parse_routes('[default]\nto = ["labo-dupont"]\n'))
    assert table.for_called("WHATEVER") == Route("*", ("labo-dupont",))
    assert table.for_called("SEALDROP") == Route("*", ("labo-dupont",))


@pytest.mark.parametrize(("text", "message"), [
    ("[routes.LAB\nto=", "not valid TOML"),
    ('[routez.LAB]\nto = ["labo-dupont"]\n', "unknown table 'routez'"),
    ('routes = 3\n', "must be tables"),
    ('[routes.LAB]\nto = "labo-dupont"\n', "to must be a list"),
    ('[routes.LAB]\nto = []\n', "names no recipient"),
    ('[routes.LAB]\nto = ["Labo Dupont"]\n', "is not a sealdrop handle"),
    ('[routes.LAB]\nto = [3]\n', "is not a sealdrop handle"),
    ('[routes.LAB]\nto = ["labo-dupont", "labo-dupont"]\n', "twice"),
    ('[routes.LAB]\nto = ["labo-dupont"]\ncc = ["x"]\n', "exactly one key"),
    ('[routes."LAB\\\\X"]\nto = ["labo-dupont"]\n', "not valid"),
    ('[routes.WAY_TOO_LONG_FOR_AN_AE]\nto = ["labo-dupont"]\n', "not valid"),
    ('[routes."   "]\nto = ["labo-dupont"]\n', "not valid"),
    ('[default]\nto = "labo-dupont"\n', "to must be a list"),
    ("[routes.LAB]\nto = [" + ", ".join(f'"lab-{i:02d}"' for i in range(17)) + "]\n",
     "at most 16"),
])
def test_bad_routes_files_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(RoutesError, match=message):
        parse_routes(text)


def test_the_command_line_route() -> None:
    with pytest.raises(RoutesError, match="no route"):
        build_table("SEALDROP", [], None)
    with pytest.raises(RoutesError, match="--aet"):
        build_table("NOT/VALID", ["labo-dupont"], None)
    with pytest.raises(RoutesError, match="--to"):
        build_table("SEALDROP", ["labo-dupont", "labo-dupont"], None)
    with pytest.raises(RoutesError, match="own AE title 'LAB_DUPONT'"):
        build_table("LAB_DUPONT", ["labo-dupont"], parse_routes(GOOD))
    # Without --to, the listener's own title has no route unless the file gives one.
    table = build_table("SEALDROP", [], parse_routes(GOOD))
    assert table.for_called("SEALDROP") is None


def test_ae_titles() -> None:
    assert check_aet(" SEALDROP ") == "SEALDROP"
    for bad in ("", "    ", "A" * 17, "LAB\\1", "LAB\n", "LAB\x00"):
        with pytest.raises(RoutesError):
            check_aet(bad)


def test_loading_the_file(tmp_path: Path) -> None:
    good = tmp_path / "routes.toml"
    good.write_text(GOOD)
    assert set(load_routes(good).routes) == {"LAB_DUPONT", "RADIO_B"}
    with pytest.raises(RoutesError, match="cannot read"):
        load_routes(tmp_path / "missing.toml")
    big = tmp_path / "big.toml"
    big.write_text("#" * (65 * 1024))
    with pytest.raises(RoutesError, match="larger than"):
        load_routes(big)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n")
    with pytest.raises(RoutesError, match="not UTF-8"):
        load_routes(latin)
    broken = tmp_path / "broken.toml"
    broken.write_text("[routes.LAB]\nto = [\n")
    with pytest.raises(RoutesError, match=str(broken)):
        load_routes(broken)
