"""The architecture as tests (docs/architecture.md).

- ``sealdrop.crypto`` imports neither ``server`` nor ``client`` and touches no
  file, socket, process, clock or environment: the only ``os`` it uses is
  ``os.urandom`` as a default for injectable randomness.
- ``sealdrop.server`` never imports ``sealdrop.client`` (and never decrypts).
- ``sealdrop.client`` never imports ``sealdrop.server``: it speaks to the relay
  over HTTP, through the protocol module both import.
- Nothing imports the root folders as top-level packages.

Checked on the source with ``ast``, so a lazy import inside a function counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crypto", "server", "client")

# I/O and ambient state the pure crypto layer must not reach for.
CRYPTO_FORBIDDEN = {
    "aiohttp", "asyncio", "click", "datetime", "http", "pathlib", "shutil",
    "socket", "sqlalchemy", "subprocess", "sys", "tempfile", "time", "urllib",
}


def _modules(pkg: str) -> Iterator[tuple[str, Path]]:
    base = ROOT / pkg
    for path in sorted(base.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield "sealdrop." + ".".join(parts), path


def _imports(module: str, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _all(pkg: str) -> list[tuple[str, Path]]:
    return list(_modules(pkg))


def _first_part_hits(names: set[str], forbidden: set[str]) -> set[str]:
    return {n for n in names if n in forbidden or n.split(".")[0] in forbidden}


@pytest.mark.parametrize(("module", "path"), _all("crypto"), ids=lambda v: str(v))
def test_crypto_is_pure(module: str, path: Path) -> None:
    names = _imports(module, path)
    assert not {n for n in names if n.startswith(("sealdrop.server", "sealdrop.client"))}
    assert not _first_part_hits(names, CRYPTO_FORBIDDEN)
    tree = ast.parse(path.read_text("utf-8"))
    os_uses = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    }
    assert os_uses <= {"urandom"}, f"{module} uses os.{sorted(os_uses - {'urandom'})}"
    assert not any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
        for node in ast.walk(tree)
    ), f"{module} opens a file"


@pytest.mark.parametrize(("module", "path"), _all("server"), ids=lambda v: str(v))
def test_server_never_imports_the_client(module: str, path: Path) -> None:
    assert not {n for n in _imports(module, path) if n.startswith("sealdrop.client")}


@pytest.mark.parametrize(("module", "path"), _all("client"), ids=lambda v: str(v))
def test_client_never_imports_the_server(module: str, path: Path) -> None:
    assert not {n for n in _imports(module, path) if n.startswith("sealdrop.server")}


def test_nothing_imports_the_root_folders_as_packages() -> None:
    offenders = []
    for pkg in (*PACKAGES, "tests", "scripts"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "__pycache__" in path.parts or "node_modules" in path.parts:
                continue
            for name in _imports("x.y", path):
                if name.split(".")[0] in PACKAGES:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    # The checks above must be able to fail: a module that imports the client
    # from the server side, and a crypto module that reads the clock.
    bad = tmp_path / "bad.py"
    bad.write_text("from sealdrop.client import cli\nimport time\nfrom ..x import y\n")
    names = _imports("sealdrop.server.sub.bad", bad)
    assert "sealdrop.client.cli" in names
    assert "sealdrop.server.x.y" in names
    assert _first_part_hits(names, CRYPTO_FORBIDDEN) == {"time"}
