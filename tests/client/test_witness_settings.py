"""`sealdrop config witness add|remove` and `require-cosignatures N`: the
profile's cosignature policy, kept in its config file."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sealdrop.client.cli import cli
from sealdrop.client.profile.config import ProfileConfig, load_config, save_config
from tests.witnesskit import LOG_KEY, WITNESS_KEY

OTHER = WITNESS_KEY.vkey.replace("witness.test/w1", "witness.test/w2")  # id no longer matches


def test_witness_settings(tmp_path: Path) -> None:
    save_config(tmp_path, ProfileConfig(relay="https://relay.example", handle="cabinet-martin"))

    def run(*args: str) -> tuple[int, str]:
        r = CliRunner().invoke(cli, ["config", *args, "--home", str(tmp_path)])
        return r.exit_code, r.output

    code, out = run("require-cosignatures", "1")
    assert code == 2 and "only 0 witnesses are configured" in out
    code, out = run("witness", "add", LOG_KEY.vkey)  # a log key is not a witness's
    assert code == 2 and "is not a witness vkey" in out
    assert run("witness", "add", OTHER)[0] == 2
    assert run("witness", "add", WITNESS_KEY.vkey)[0] == 0
    assert run("witness", "add", WITNESS_KEY.vkey)[0] == 0  # twice: kept once
    assert run("require-cosignatures", "1")[0] == 0
    code, out = run("witness", "--json")
    assert code == 0 and json.loads(out) == {"witnesses": [WITNESS_KEY.vkey],
                                             "require_cosignatures": 1}
    cfg = load_config(tmp_path)
    assert (cfg.witnesses, cfg.require_cosignatures) == ((WITNESS_KEY.vkey,), 1)
    code, out = run("witness", "remove", WITNESS_KEY.vkey)
    assert code == 2 and "lower it first (sealdrop config require-cosignatures 0)" in out
    assert run("require-cosignatures", "0")[0] == 0
    assert run("witness", "remove", WITNESS_KEY.vkey)[0] == 0
    assert load_config(tmp_path) == ProfileConfig(relay="https://relay.example",
                                                  handle="cabinet-martin")
    # A hand-edited file asking for more cosignatures than witnesses is refused.
    path = tmp_path / "config.json"
    obj = json.loads(path.read_text())
    path.write_text(json.dumps({**obj, "require_cosignatures": 2}))
    r = CliRunner().invoke(cli, ["config", "witness", "--home", str(tmp_path)])
    assert r.exit_code == 1
    assert "require_cosignatures must be 0 to the number of witnesses" in str(r.exception)
