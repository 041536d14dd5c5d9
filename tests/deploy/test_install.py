"""deploy/install.sh performs the documented Debian 12 install: a system user with
no home and no login shell, private data and backup folders, init as that user,
the units installed and enabled. Checked on its dry run (the commands it would
run on a fresh machine), and the relay's commands are run with no home folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .units import DEPLOY, RELAY_SERVICES, TIMERS, parse, words

SCRIPT = DEPLOY / "install.sh"
RELAY = Path(sys.executable).parent / "sealdrop-relay"
NOBODY = 65534


def dry_run() -> list[list[str]]:
    env = {**os.environ, "SEALDROP_INSTALL_DRY_RUN": "1"}
    r = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                       check=True, timeout=60)
    return [line[2:].split() for line in r.stdout.splitlines() if line.startswith("+ ")]


def test_install_script_parses_as_posix_sh() -> None:
    for shell in ("sh", "dash", "bash"):
        if shutil.which(shell):
            subprocess.run([shell, "-n", str(SCRIPT)], check=True, timeout=30)


def test_install_creates_a_system_user_without_a_home() -> None:
    [useradd] = [c for c in dry_run() if c[0] == "useradd"]
    assert useradd[-1] == "sealdrop"
    assert {"--system", "--no-create-home", "--user-group"} <= set(useradd)
    assert useradd[useradd.index("--shell") + 1] == "/usr/sbin/nologin"
    assert useradd[useradd.index("--home-dir") + 1] == "/nonexistent"
    assert "--create-home" not in useradd and "-m" not in useradd


def test_install_steps_come_in_a_working_order() -> None:
    cmds = dry_run()
    def index(match: str) -> int:
        return next(i for i, c in enumerate(cmds) if " ".join(c).startswith(match)
                    or c[0].endswith(match))

    first = {"useradd": index("useradd"), "pip": index("/bin/pip"),
             "runuser": index("runuser"), "daemon-reload": index("systemctl daemon-reload"),
             "enable": index("systemctl enable")}
    # the user exists before it owns folders, the package before init runs it,
    # the units are in place before systemd reloads and starts them
    assert first["useradd"] < first["pip"] < first["runuser"] < first["daemon-reload"]
    assert first["daemon-reload"] < first["enable"] == len(cmds) - 1


def test_install_paths_are_the_units_paths() -> None:
    cmds = dry_run()
    [mkdirs] = [c for c in cmds if c[:4] == ["install", "-d", "-m", "0700"]]
    assert mkdirs[4:8] == ["-o", "sealdrop", "-g", "sealdrop"]
    data, backups = mkdirs[8:]
    relay = parse(DEPLOY / "sealdrop-relay.service")
    assert data == "/var/lib/" + relay["[Service]StateDirectory"][0]
    for unit in RELAY_SERVICES:
        assert data in words(parse(unit), "[Service]ReadWritePaths")
    backup_start = parse(DEPLOY / "sealdrop-relay-backup.service")["[Service]ExecStart"][0]
    assert f"--into {backups} " in backup_start
    [init] = [c for c in cmds if c[0] == "runuser"]
    assert init[:4] == ["runuser", "-u", "sealdrop", "--"]
    assert init[4] == relay["[Service]ExecStart"][0].split()[0]  # the binary the units run
    assert init[5:] == ["init", "--data", data]


def test_install_installs_and_enables_every_relay_unit() -> None:
    cmds = dry_run()
    installed = {Path(c[-1]).name for c in cmds
                 if c[:3] == ["install", "-m", "0644"] and c[-1].startswith("/etc/systemd/system/")}
    shipped = {p.name for p in [*RELAY_SERVICES, *TIMERS]}
    assert installed == shipped
    for c in cmds:
        if c[:3] == ["install", "-m", "0644"]:
            assert Path(c[-2]) == DEPLOY / Path(c[-1]).name  # from this checkout
    enabled = set(cmds[-1][3:])
    assert cmds[-1][:3] == ["systemctl", "enable", "--now"]
    assert enabled == {"sealdrop-relay.service"} | {p.name for p in TIMERS}


def test_install_refuses_without_root() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEALDROP_INSTALL_DRY_RUN"}
    cmd = ["sh", str(SCRIPT)]
    if os.geteuid() == 0:  # run it as nobody, as an operator who forgot sudo would
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("runs as root and setpriv (util-linux) is missing")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == ("install.sh: error: run as root (su - or sudo); "
                                "it creates a system user and units")
    assert r.stdout == ""  # it stopped before its first step


@pytest.fixture
def nobody_folder() -> Iterator[Path]:
    """A private folder the unprivileged user can use (pytest's tmp_path is under
    root's 0700 folder when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="sealdrop-nohome-"))
    if os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_relay_commands_need_no_home(nobody_folder: Path) -> None:
    """The relay's user is a system user with no home folder: nothing may need one.
    Run as root, the commands run as `nobody` (whose home does not exist either)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SEALDROP_", "XDG_")) and k != "HOME"}
    env["HOME"] = "/nonexistent"
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("runs as root and setpriv (util-linux) is missing")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    data = nobody_folder / "data"

    def relay(*args: str) -> str:
        r = subprocess.run([*prefix, str(RELAY), *args, "--data", str(data)], env=env,
                           cwd="/", capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    relay("init")
    assert re.fullmatch(r"\S+\n", relay("invite", "create"))
    relay("gc")
    assert "ok" in relay("verify")
    out = relay("backup", "--into", str(nobody_folder / "backups"), "--keep", "3")
    assert "backed up 0 transfer(s)" in out
    assert not Path("/nonexistent").exists()
    assert sorted(p.name for p in nobody_folder.iterdir()) == ["backups", "data"]
    if prefix:  # everything it made belongs to the unprivileged user
        made = [nobody_folder, *nobody_folder.rglob("*")]
        assert {p.stat().st_uid for p in made} == {NOBODY}
