"""``sealdrop --version`` / ``-V`` and ``sealdrop-relay --version``: the installed version,
read without loading a single command module."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
VERSION = importlib.metadata.version("sealdrop")


@pytest.mark.parametrize(("program", "flag"), [("sealdrop", "--version"), ("sealdrop", "-V"),
                                               ("sealdrop-relay", "--version"),
                                               ("sealdrop-relay", "-V")])
def test_the_installed_version(program: str, flag: str) -> None:
    r = subprocess.run([str(BIN / program), flag], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == f"{program} {VERSION}\n"


def test_version_imports_no_command_module() -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['sealdrop', '-V']\n"
        "from sealdrop.client.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "from sealdrop.client.cli.registry import COMMANDS\n"
        "loaded = sorted({s.module for s in COMMANDS.values()}\n"
        "                & {m.rsplit('.', 1)[-1] for m in sys.modules\n"
        "                   if m.startswith('sealdrop.client.cli.')})\n"
        "print('LOADED', loaded, 'relay_api' in str(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"sealdrop {VERSION}", "LOADED [] False"]


def test_an_unknown_short_flag_is_still_refused() -> None:
    r = subprocess.run([str(BIN / "sealdrop"), "-v"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "No such option '-v'" in r.stderr
