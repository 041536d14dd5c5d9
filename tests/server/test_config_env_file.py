"""One configuration: every command reads the same environment file the relay
unit names, so a database URL kept there is never lost to a command run from a
shell or another unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.server.config import load_config, read_env_file
from sealdrop.server.errors import ConfigError

from .relaykit import PG_URL, RELAY_CMD, fresh_database

DB_KINDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=DB_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        # Outside the data folder, so that the fallback is a different database.
        (tmp_path / "db").mkdir()
        yield f"sqlite:///{tmp_path / 'db' / 'relay.db'}"
        return
    yield from fresh_database(str(request.param), tmp_path / "data")


def relay_cli(*args: str, env_file: Path | None) -> subprocess.CompletedProcess[str]:
    # A shell with none of the relay's variables: only (maybe) the file's name.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_RELAY_")}
    env["SEALDROP_RELAY_ENV_FILE"] = str(env_file) if env_file else "/nonexistent/env"
    return subprocess.run([*RELAY_CMD, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_database_url_in_the_environment_file_reaches_every_command(
    tmp_path: Path, db: str
) -> None:
    data = tmp_path / "data"
    env_file = tmp_path / "env"
    env_file.write_text(
        "# written by the operator, mode 0600\n"
        f"SEALDROP_RELAY_DATABASE_URL='{db}'\n"
        "OTHER_PROGRAM=ignored\n"
    )
    assert relay_cli("init", "--data", str(data), env_file=env_file).returncode == 0
    code = json.loads(relay_cli("invite", "create", "--json", "--data", str(data),
                                env_file=env_file).stdout)["code"]
    assert code
    r = relay_cli("gc", "--json", "--data", str(data), env_file=env_file)
    assert r.returncode == 0, r.stderr
    listed = relay_cli("invite", "list", "--json", "--data", str(data), env_file=env_file)
    assert [json.loads(x)["state"] for x in listed.stdout.splitlines()] == ["open"]
    # Without the file, the command falls back to SQLite in the data folder: a
    # different database, refused before it acts.
    r = relay_cli("gc", "--data", str(data), env_file=None)
    assert r.returncode == 1
    assert "not bound to each other" in r.stderr or "fresh or foreign" in r.stderr
    assert "Traceback" not in r.stderr


def test_environment_file_syntax(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text('export SEALDROP_RELAY_PORT="9999"\n\n; note\nSEALDROP_RELAY_LOG_LEVEL=debug\n')
    assert read_env_file(f) == {"SEALDROP_RELAY_PORT": "9999", "SEALDROP_RELAY_LOG_LEVEL": "debug"}
    cfg = load_config(tmp_path, env={"SEALDROP_RELAY_ENV_FILE": str(f)})
    assert (cfg.port, cfg.log_level) == (9999, "debug")
    # The process environment still wins over the file.
    cfg = load_config(tmp_path, env={"SEALDROP_RELAY_ENV_FILE": str(f),
                                     "SEALDROP_RELAY_PORT": "8000"})
    assert cfg.port == 8000
    assert read_env_file(tmp_path / "absent") == {}
    f.write_text("SEALDROP_RELAY_DATABSE_URL=postgresql://x/y\n")
    with pytest.raises(ConfigError, match="unknown setting SEALDROP_RELAY_DATABSE_URL"):
        load_config(tmp_path, env={"SEALDROP_RELAY_ENV_FILE": str(f)})
    f.write_text("SEALDROP_RELAY_PORT\n")
    with pytest.raises(ConfigError, match="expected NAME=value"):
        read_env_file(f)
    f.write_text("SEALDROP_RELAY_PORT=eighty\n")
    with pytest.raises(ConfigError, match="port must be int"):
        load_config(tmp_path, env={"SEALDROP_RELAY_ENV_FILE": str(f)})


def test_an_unreadable_environment_file_is_refused_not_skipped(tmp_path: Path) -> None:
    """The relay's user cannot read the file: a sentence, never a silent fallback."""
    f = tmp_path / "env"
    f.write_text("SEALDROP_RELAY_DATABASE_URL=postgresql://relay@db/relay\n")
    f.chmod(0o600)
    code = ("from sealdrop.server.config import load_config\n"
            f"load_config({str(tmp_path)!r}, env={{'SEALDROP_RELAY_ENV_FILE': {str(f)!r}}})")
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        # root reads any file: run as nobody, as the relay runs as its own user.
        tmp_path.chmod(0o755)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    else:
        f.chmod(0)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    assert "cannot read the environment file as this user" in r.stderr
    assert "chmod 0640" in r.stderr
