"""The command registry: `sealdrop --help` lists every command without importing it,
and each listed summary is the command's own first help line."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sealdrop.client.cli import registry

ROOT = Path(__file__).resolve().parents[2]

# What `sealdrop --help` must not pay for: any command module, rich (progress
# bars), the relay client, and the packages that do the jobs.
FORBIDDEN = {f"sealdrop.client.cli.{spec.module}" for spec in registry.COMMANDS.values()} | {
    "rich",
    "sealdrop.client.relay_api",
    "sealdrop.client.send",
    "sealdrop.client.receive",
    "sealdrop.client.profile.session",
    "pydicom",
}


def _imported_by_help() -> tuple[str, set[str]]:
    """Run the console script's main with --help under -X importtime: (stdout, modules)."""
    code = "import sys; from sealdrop.client.cli import main; sys.argv[0] = 'sealdrop'; main()"
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code, "--help"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    modules = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                modules.add(name)
    return r.stdout, modules


def test_help_imports_no_command_module() -> None:
    out, modules = _imported_by_help()
    assert "sealdrop.client.cli.registry" in modules  # the measurement sees our imports
    assert not {m for m in modules if m in FORBIDDEN or m.split(".")[0] in FORBIDDEN
                or any(m.startswith(f + ".") for f in FORBIDDEN)}
    for name in registry.COMMANDS:
        assert f"\n  {name} " in out, name


def test_help_lists_the_summaries() -> None:
    out, _ = _imported_by_help()
    listed = out.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.strip()] == list(registry.COMMANDS)
    for name, spec in registry.COMMANDS.items():
        (line,) = [x for x in listed if x.split()[:1] == [name]]
        shown = line.split(None, 1)[1]
        assert spec.summary.startswith(shown.removesuffix("...")), (name, shown)


@pytest.mark.parametrize("name", list(registry.COMMANDS))
def test_summary_is_the_commands_first_help_line(name: str) -> None:
    spec = registry.COMMANDS[name]
    command = getattr(importlib.import_module(f"sealdrop.client.cli.{spec.module}"), spec.attr)
    assert isinstance(command, click.Command) and command.name == name
    assert command.help is not None
    first_paragraph = command.help.split("\n\n", 1)[0]
    # One line, so that the listing click would make from the command itself
    # (its first paragraph, shortened) is the listing made from the summary.
    assert first_paragraph == first_paragraph.splitlines()[0]
    assert spec.summary == first_paragraph


def test_every_command_is_registered() -> None:
    """A click command defined in a cli module but missing from the registry (and
    not a subcommand of a registered group) would be unreachable."""
    found: dict[tuple[str, str], click.Command] = {}
    for path in sorted((ROOT / "client" / "cli").glob("*.py")):
        if path.stem == "__init__":
            continue
        module = importlib.import_module(f"sealdrop.client.cli.{path.stem}")
        for attr, value in vars(module).items():
            if isinstance(value, click.Command) and getattr(
                    value.callback, "__module__", None) == module.__name__:
                found[(path.stem, attr)] = value
    registered = {(s.module, s.attr) for s in registry.COMMANDS.values()}
    subcommands = {id(c) for key in registered if isinstance(found.get(key), click.Group)
                   for c in found[key].commands.values()}  # type: ignore[attr-defined]
    subcommands.add(id(found[("age", "keygen")]))  # `sealdrop age keygen`, dispatched by age
    assert {k for k, c in found.items() if id(c) not in subcommands} == registered


def _all_examples() -> str:
    """The examples in the --help of every command and subcommand."""
    from click.testing import CliRunner

    from sealdrop.client.cli import cli

    paths = [[name] for name in registry.COMMANDS]
    paths += [["contacts", c] for c in ("add", "verify", "list", "remove")]
    paths += [["identity", c] for c in ("create", "show", "export")] + [["age", "keygen"]]
    out = []
    for path in paths:
        r = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
        assert r.exit_code == 0, (path, r.output)
        out.append(r.output.partition("Example")[2])
    return "\n".join(out)


def test_examples_show_ids_and_invites_as_32_hex_digits() -> None:
    import re

    text = _all_examples()
    shown = re.findall(r"--invite (\S+)", text)
    shown += re.findall(r"invite code, e\.g\. ([^,\s]+)", text)  # pasted into --invite-file -
    shown += re.findall(r"sealdrop (?:status|receive) (?:-- )?([^-\s]\S*)", text)
    assert len(shown) >= 3
    for token in shown:
        assert re.fullmatch(r"[0-9a-f]{32}", token), token
    assert "K7Q" not in text
