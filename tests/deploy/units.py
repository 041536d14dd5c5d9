"""Reading the systemd units in deploy/ the way systemd does: sections, keys,
repeated keys in order, comments and blank lines ignored."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = sorted(DEPLOY.glob("*.service"))
TIMERS = sorted(DEPLOY.glob("*.timer"))
RELAY_SERVICES = [p for p in SERVICES if p.name.startswith("sealdrop-relay")]


def parse(path: Path) -> dict[str, list[str]]:
    """``{"[Service]ReadWritePaths": [value, ...]}``; a key's values in file order."""
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        keys.setdefault(f"{section}{key.strip()}", []).append(value.strip())
    return keys


def words(keys: dict[str, list[str]], key: str) -> list[str]:
    return [w for value in keys.get(key, []) for w in value.split()]
