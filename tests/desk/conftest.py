"""The desk's tests reuse the end-to-end fixtures: a real relay from a template,
and profiles driven by the real CLI (tests/e2e/conftest.py)."""

from tests.e2e.conftest import lab, pair, practice, relay, relay_template

__all__ = ["lab", "pair", "practice", "relay", "relay_template"]
