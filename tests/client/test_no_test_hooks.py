"""Product code has no test-only hooks: no SEALDROP_TEST_* variable is read by it.

Tests that need a slow transfer throttle the link to the relay themselves
(tests/e2e/kit.py); small chunks are the real ``--chunk-size`` option.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_product_code_mentions_a_test_variable() -> None:
    hits = []
    for package in ("client", "server", "crypto"):
        for path in sorted((ROOT / package).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if "SEALDROP_TEST_" in line:
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == []
