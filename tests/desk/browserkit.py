"""The desk's browser tests: Playwright driving Debian's chromium, axe-core, screenshots.

The browser is the system one, ``/usr/bin/chromium`` from Debian (``.ci/run``
installs it): Playwright's own browser builds come from a download host this
project's machines cannot reach, so ``playwright install`` is never run and
every launch names the executable. The ``playwright`` wheel brings only its
driver (a Node.js program it ships); it fetches no browser when installed.

Each ``browser()`` is a fresh chromium process with a fresh profile, so tests
share nothing and run side by side under pytest-xdist.

The accessibility scan injects the vendored axe-core (``vendor/axe-core/``)
through DevTools (``page.evaluate``), which the desk's strict CSP
(``script-src 'self'``, no ``'unsafe-inline'``) does not govern: a ``<script>``
tag with the same text would be refused, as it should be.

Screenshots go to ``ARTIFACTS`` (``artifacts/desk/``, git-ignored, unless
``$SEALDROP_TEST_ARTIFACTS`` names another folder) and stay after the run.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aiohttp import web
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"

# Headless chromium as root (CI, this machine) refuses to start without
# --no-sandbox. The rest stop the connections chromium makes on its own (field
# trials, component updates, sync, QUIC probes): the closed network here
# refuses them, and a test must not wait on any of them or depend on their
# answer.
ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# The WCAG 2.1 A and AA rules: what issue 16 asks the desk to pass. axe's
# "best-practice" rules are advice, not conformance, and are left out.
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")

_SHOT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"{CHROMIUM} is missing: install Debian chromium "
            "(.ci/run does: apt-get install chromium)"
        )
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: install the test extra (scripts/test does)"
    return None


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# For a test module: ``pytestmark = browserkit.needs_browser``. Off CI, a
# machine without chromium skips with the reason in the summary (run pytest
# with -rs to see it). On CI the mark never skips: a missing browser fails
# every test loudly in ``browser()``, so CI cannot pass without them.
_reason = missing()
needs_browser = pytest.mark.skipif(
    _reason is not None and not _on_ci(), reason=_reason or "chromium and playwright present"
)


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    """A headless Debian chromium of its own, closed on exit.

    Playwright's ``launch`` gives every browser a fresh temporary profile
    (``--user-data-dir`` under the temp folder, removed on close); it refuses a
    ``--user-data-dir`` of ours, which only a persistent context may have.
    """
    reason = missing()
    if reason is not None:
        pytest.fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(ARGS))
        try:
            yield launched
        finally:
            launched.close()


@functools.cache
def _axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


_RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {
    runOnly: {type: "tag", values: tags},
    resultTypes: ["violations"],
  });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    helpUrl: v.helpUrl,
    targets: v.nodes.map((n) => n.target.flat(Infinity).join(" >>> ")),
  }));
}"""


def axe_findings(
    page: Page, *, impacts: Iterable[str] = ("serious", "critical")
) -> list[dict[str, Any]]:
    """The page's WCAG 2.1 A/AA violations of the given impacts, as axe-core reports them.

    Each is ``{"id", "impact", "help", "helpUrl", "targets"}``, targets being
    the CSS selectors of the offending elements. Scans the page as it is now:
    call it again after the page changes (a dialog opened, a list filled).
    """
    # The source runs as a DevTools evaluation, outside the page's CSP: the
    # page's own script-src would refuse it as an inline <script>.
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    violations: list[dict[str, Any]] = page.evaluate(_RUN_AXE, list(WCAG_TAGS))
    wanted = set(impacts)
    return [v for v in violations if v["impact"] in wanted]


def describe(findings: Iterable[Mapping[str, Any]]) -> str:
    """The findings as lines an assertion message can show: impact, rule, help, where."""
    lines = [
        f"{f['impact']} {f['id']}: {f['help']} at {', '.join(f['targets'])} ({f['helpUrl']})"
        for f in findings
    ]
    return "\n".join(lines) or "no findings"


def artifacts_folder(env: Mapping[str, str] = os.environ) -> Path:
    """Where screenshots go: $SEALDROP_TEST_ARTIFACTS, else artifacts/desk/ in the repo."""
    chosen = env.get("SEALDROP_TEST_ARTIFACTS")
    return Path(chosen) if chosen else REPO / "artifacts" / "desk"


ARTIFACTS = artifacts_folder()


def screenshot(page: Page, name: str, *, folder: Path | None = None) -> Path:
    """Save the whole page (not just the viewport) as ``<folder>/<name>.png``.

    One name per screen and test: two xdist workers writing the same name
    would race. ``folder`` defaults to ``ARTIFACTS``.
    """
    if not _SHOT_NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: use lowercase letters, digits, . _ -")
    target = (folder or ARTIFACTS) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target, full_page=True)
    return target


@contextlib.contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on 127.0.0.1 at a port the OS picks; yields its base URL.

    The app runs on an event loop in a thread of its own: Playwright's sync
    API, which drives the page from the test's thread, refuses to run inside
    a running asyncio loop.
    """
    import asyncio

    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="browserkit-serve", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
