"""The documents stay true to the tree: every test they cite exists, and every
source path docs/architecture.md names is there.

The threat model maps each attack to the tests that prove it; a test renamed
or deleted would silently leave an attack unproven on paper.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
# `tests/x/test_a.py::test_b`, `test_a.py::test_b` or `::test_b` (same file as before)
CITATION = re.compile(r"`((?:[\w/.-]+\.py)?)::(test_\w+)`")


@cache
def _tests_in(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


def _files_named(name: str) -> list[Path]:
    if "/" in name:
        return [ROOT / name] if (ROOT / name).is_file() else []
    return sorted((ROOT / "tests").rglob(name))


def _citations(doc: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    current = ""
    for line in doc.read_text("utf-8").splitlines():
        for file_part, test in CITATION.findall(line):
            current = file_part or current
            out.append((current, test))
    return out


CITED = [(doc.name, f, t) for doc in DOCS for f, t in _citations(doc)]


def test_the_docs_cite_tests() -> None:
    assert len(CITED) > 40  # the threat model's attack tables


@pytest.mark.parametrize(("doc", "file", "test"), CITED)
def test_cited_test_exists(doc: str, file: str, test: str) -> None:
    files = _files_named(file)
    assert files, f"{doc} cites {file}, which does not exist"
    assert any(test in _tests_in(f) for f in files), f"{doc} cites {file}::{test}: not found"


def test_architecture_paths_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    paths = set(re.findall(r"`((?:tests|crypto|server|client|scripts)/[\w/.]+)`", text))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []
