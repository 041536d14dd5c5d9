"""``[[witness]]`` in relay.toml (and SEALDROP_RELAY_WITNESS): read, checked, frozen."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealdrop.server.config import DEFAULT_CONFIG_TEXT, WitnessConfig, load_config
from sealdrop.server.errors import ConfigError
from tests.witnesskit import LOG_KEY, WITNESS_KEY


def test_witness_tables_and_environment(tmp_path: Path) -> None:
    (tmp_path / "relay.toml").write_text(
        DEFAULT_CONFIG_TEXT
        + f'[[witness]]\nurl = "https://w1.example/"\nvkey = "{WITNESS_KEY.vkey}"\n'
        + f'[[witness]]\nurl = "http://127.0.0.1:8790"\nvkey = "{WITNESS_KEY.vkey}"\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.witness == (WitnessConfig("https://w1.example", WITNESS_KEY.vkey),
                           WitnessConfig("http://127.0.0.1:8790", WITNESS_KEY.vkey))
    env = {"SEALDROP_RELAY_WITNESS": f"https://w2.example {WITNESS_KEY.vkey}"}
    assert load_config(tmp_path, env=env).witness == (
        WitnessConfig("https://w2.example", WITNESS_KEY.vkey),)
    assert load_config(tmp_path, env={"SEALDROP_RELAY_WITNESS": ""}).witness == ()
    (tmp_path / "relay.toml").write_text(DEFAULT_CONFIG_TEXT)
    assert load_config(tmp_path, env={}).witness == ()  # none by default


@pytest.mark.parametrize("table", [
    f'url = "https://w1.example"\nvkey = "{LOG_KEY.vkey}"',  # a log key, not a cosigner's
    f'url = "ftp://w1.example"\nvkey = "{WITNESS_KEY.vkey}"',
    f'url = "https://w1.example"\nvkey = "{WITNESS_KEY.vkey}"\nname = "w1"',
    'url = "https://w1.example"',
])
def test_a_bad_witness_is_refused(tmp_path: Path, table: str) -> None:
    (tmp_path / "relay.toml").write_text(f"[[witness]]\n{table}\n")
    with pytest.raises(ConfigError, match=r"witness must be tables \[\[witness\]\] with url"):
        load_config(tmp_path, env={})
