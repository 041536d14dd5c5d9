"""Every unit in deploy/ is valid for systemd and hardened: `systemd-analyze
verify` reports nothing, and `systemd-analyze security --offline=true` scores
each service at or below EXPOSURE_LIMIT (docs/operations.md, "Unit hardening").

Both run offline, on the files, without a running systemd. verify checks that
every ExecStart= binary exists, so it reads copies whose sealdrop paths point
at a stub executable; everything else in the units is checked as shipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .units import DEPLOY, RELAY_SERVICES, SERVICES, TIMERS, parse, words

# 0 is a fully sandboxed unit, 10 none at all; systemd calls up to 1.9 "OK" and the
# relay units score 1.1 (a service that needs the network and a data folder cannot
# reach 0). Above 2.0 a hardening directive went missing.
EXPOSURE_LIMIT = 2.0
SD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(
    SD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)")
SEALDROP_BINARIES = ("/opt/sealdrop/.venv/bin/sealdrop-relay", "/usr/local/bin/sealdrop")
DATA = "/var/lib/sealdrop-relay"


def exposure(unit: Path) -> float:
    assert SD_ANALYZE is not None
    r = subprocess.run([SD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def verify(units: list[Path], tmp: Path) -> str:
    """What `systemd-analyze verify` says about copies of ``units``: "" when clean."""
    assert SD_ANALYZE is not None
    (tmp / "bin").mkdir()
    stub = tmp / "bin" / "stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    (tmp / "units").mkdir()
    copies = []
    for unit in units:
        text = unit.read_text("utf-8")
        for binary in SEALDROP_BINARIES:
            text = text.replace(binary, str(stub))
        copy = tmp / "units" / unit.name
        copy.write_text(text)
        copies.append(copy)
    r = subprocess.run([SD_ANALYZE, "verify", "--man=no", *map(str, copies)],
                       capture_output=True, text=True, timeout=120)
    # verify exits 0 on an unknown key or a bad value, and only warns: any output counts
    return (r.stdout + r.stderr).strip() + ("" if r.returncode == 0 else f" (exit {r.returncode})")


def test_deploy_ships_the_units() -> None:
    assert {p.name for p in SERVICES} == {
        "sealdrop-relay.service", "sealdrop-relay@.service", "sealdrop-relay-gc.service",
        "sealdrop-relay-backup.service", "sealdrop-relay-verify.service",
        "sealdrop-watch.service", "sealdrop-dicom-listen.service"}
    assert {p.name for p in TIMERS} == {"sealdrop-relay-gc.timer", "sealdrop-relay-backup.timer",
                                        "sealdrop-relay-verify.timer"}


@needs_systemd
@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_unit_exposure_is_at_most_the_limit(unit: Path) -> None:
    assert exposure(unit) <= EXPOSURE_LIMIT


@needs_systemd
def test_the_exposure_check_notices_missing_hardening(tmp_path: Path) -> None:
    """Without its hardening block the relay unit scores far above the limit."""
    text = (DEPLOY / "sealdrop-relay.service").read_text("utf-8")
    head, _, rest = text.partition("# --- hardening")
    bare = tmp_path / "sealdrop-relay.service"
    bare.write_text(head + "[Install]" + rest.split("[Install]", 1)[1])
    assert exposure(bare) > EXPOSURE_LIMIT + 5


@needs_systemd
def test_every_unit_verifies_clean(tmp_path: Path) -> None:
    assert verify([*SERVICES, *TIMERS], tmp_path) == ""


@needs_systemd
def test_verify_reports_a_bad_directive(tmp_path: Path) -> None:
    bad = tmp_path / "sealdrop-relay-gc.service"
    bad.write_text((DEPLOY / bad.name).read_text("utf-8").replace(
        "ProtectSystem=strict", "ProtectSystem=maybe"))
    (tmp_path / "v").mkdir()
    out = verify([bad], tmp_path / "v")
    assert "protect system value" in out and "maybe" in out


def test_relay_units_share_one_hardening_block() -> None:
    """gc and backup run the same code on the same data as the relay: same sandbox."""
    def hardening(unit: Path) -> list[str]:
        block = unit.read_text("utf-8").partition("# --- hardening")[2]
        return [line for line in block.split("[Install]")[0].splitlines()
                if line and not line.startswith("#")]
    blocks = {unit.name: hardening(unit) for unit in RELAY_SERVICES}
    first = blocks["sealdrop-relay.service"]
    assert "ProtectSystem=strict" in first and "CapabilityBoundingSet=" in first
    assert "NoNewPrivileges=yes" in first and "UMask=0077" in first
    assert all(block == first for block in blocks.values()), blocks


@pytest.mark.parametrize("unit", RELAY_SERVICES, ids=lambda p: p.name)
def test_relay_units_run_as_the_system_user_on_the_data_folder(unit: Path) -> None:
    keys = parse(unit)
    assert keys["[Service]User"] == ["sealdrop"] and keys["[Service]Group"] == ["sealdrop"]
    assert DATA in words(keys, "[Service]ReadWritePaths")
    assert "[Service]DynamicUser" not in keys  # a fixed user owns the data between runs


def test_only_the_relay_creates_the_data_folder() -> None:
    """serve (one process, or one per port) may create a fresh data folder; gc,
    backup and verify must fail on a missing one instead of running against an empty folder."""
    serves = {"sealdrop-relay.service", "sealdrop-relay@.service"}
    for unit in RELAY_SERVICES:
        state = parse(unit).get("[Service]StateDirectory", [])
        assert state == (["sealdrop-relay"] if unit.name in serves else [])


def test_the_per_port_unit_is_the_relay_unit_on_its_instance_port() -> None:
    """sealdrop-relay@PORT.service runs what sealdrop-relay.service runs, with the
    same configuration and sandbox: only the port (the instance), the description
    and the conflict with the single process differ."""
    single = parse(DEPLOY / "sealdrop-relay.service")
    each = parse(DEPLOY / "sealdrop-relay@.service")
    differ = {key for key in single.keys() | each.keys() if single.get(key) != each.get(key)}
    assert differ == {"[Unit]Description", "[Unit]Conflicts", "[Service]ExecStart"}
    assert each["[Unit]Conflicts"] == ["sealdrop-relay.service"]
    [start] = each["[Service]ExecStart"]
    assert start == single["[Service]ExecStart"][0].replace("--port 8780", "--port %i")
    assert start.endswith(" serve --host 127.0.0.1 --port %i")  # loopback: nginx in front


def test_backup_unit_creates_its_target_and_keeps_fourteen() -> None:
    keys = parse(DEPLOY / "sealdrop-relay-backup.service")
    [start] = keys["[Service]ExecStart"]
    m = re.search(r" backup --into (\S+) --keep (\d+)$", start)
    assert m, start
    target, keep = m.group(1), int(m.group(2))
    assert keep == 14
    # created before the sandbox is set up ('+': outside it), private, owned by the user
    assert keys["[Service]ExecStartPre"] == [
        f"+/usr/bin/install -d -m 0700 -o sealdrop -g sealdrop {target}"]
    assert target in words(keys, "[Service]ReadWritePaths")


def test_verify_unit_checks_and_never_repairs() -> None:
    """The timer's verify only reports (exit 1 fails the unit): --repair deletes
    transfers, which is the operator's decision."""
    keys = parse(DEPLOY / "sealdrop-relay-verify.service")
    [start] = keys["[Service]ExecStart"]
    assert start.split()[1:] == ["verify"]
    assert keys["[Service]Type"] == ["oneshot"]
    assert parse(DEPLOY / "sealdrop-relay-verify.timer")["[Timer]OnCalendar"] == [
        "Sun *-*-* 03:30:00"]  # weekly: the alerts' periods (tests/server/test_alert_rules.py)


def test_every_timer_starts_a_shipped_service() -> None:
    for timer in TIMERS:
        keys = parse(timer)
        service = keys.get("[Timer]Unit", [timer.stem + ".service"])[0]
        assert (DEPLOY / service).is_file(), timer.name
        assert keys["[Timer]Persistent"] == ["true"]  # a missed run happens after boot
        assert keys["[Install]WantedBy"] == ["timers.target"]


def test_watch_stays_stopped_after_a_log_refusal() -> None:
    """Every exit status of a failed transparency-log check stops the watch unit
    for good: restarting would repeat the refusal every 30 s (docs/transparency.md)."""
    from sealdrop.client import errors

    def statuses(cls: type[errors.LogVerificationError]) -> set[int]:
        out = {cls.exit_status}
        for sub in cls.__subclasses__():
            out |= statuses(sub)
        return out

    text = (DEPLOY / "sealdrop-watch.service").read_text()
    (line,) = [x for x in text.splitlines() if x.startswith("RestartPreventExitStatus=")]
    prevented = {int(v) for v in line.partition("=")[2].split()}
    wanted = statuses(errors.LogVerificationError)
    assert len(wanted) >= 9 and wanted <= prevented, sorted(wanted - prevented)
