"""The browser kit itself: Debian chromium under Playwright, axe-core under a strict CSP,
full-page screenshots.

The pages come from a real aiohttp server on 127.0.0.1 that sends the desk's
CSP, so what passes here is what the desk's own tests will rely on: axe runs
where inline scripts may not, and the CSP really holds in this chromium.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from tests.desk import browserkit

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = browserkit.needs_browser

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

# 1x1 transparent PNG, for the <img> elements.
_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)

_CLEAN = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Inbox</title>
<link rel="stylesheet" href="/style.css"></head>
<body>
<main>
<h1>Inbox</h1>
<img src="/pixel.png" alt="Practice logo">
<form action="/send" method="post">
<label for="note">Note</label> <input id="note" name="note" type="text">
<button type="submit">Send</button>
</form>
<div class="tall">A long list</div>
</main>
</body>
</html>
"""

# Two WCAG 2.1 A failures axe rates critical: an image with no text
# alternative, a button with no accessible name.
_BROKEN = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Broken</title></head>
<body>
<main>
<h1>Broken</h1>
<img id="logo" src="/pixel.png">
<button id="go" type="button"></button>
</main>
</body>
</html>
"""

_SCRIPTS = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Scripts</title></head>
<body>
<main><h1>Scripts</h1></main>
<script>document.body.dataset.inline = "ran";</script>
<script src="/app.js"></script>
</body>
</html>
"""

_STYLE = ".tall { height: 3000px; background: #eef; } body { color: #111; background: #fff; }\n"
_APP_JS = 'document.body.dataset.external = "ran";\n'


def _page(text: str, content_type: str = "text/html") -> web.Response:
    return web.Response(
        text=text, content_type=content_type, headers={"Content-Security-Policy": CSP}
    )


def _app() -> web.Application:
    async def clean(_: web.Request) -> web.Response:
        return _page(_CLEAN)

    async def broken(_: web.Request) -> web.Response:
        return _page(_BROKEN)

    async def scripts(_: web.Request) -> web.Response:
        return _page(_SCRIPTS)

    async def style(_: web.Request) -> web.Response:
        return _page(_STYLE, "text/css")

    async def app_js(_: web.Request) -> web.Response:
        return _page(_APP_JS, "text/javascript")

    async def pixel(_: web.Request) -> web.Response:
        return web.Response(body=_PIXEL, content_type="image/png")

    app = web.Application()
    app.router.add_get("/clean", clean)
    app.router.add_get("/broken", broken)
    app.router.add_get("/scripts", scripts)
    app.router.add_get("/style.css", style)
    app.router.add_get("/app.js", app_js)
    app.router.add_get("/pixel.png", pixel)
    return app


@pytest.fixture
def base() -> Iterator[str]:
    with browserkit.serve(_app()) as url:
        yield url


def test_axe_reports_a_missing_alt_and_a_nameless_button(base: str) -> None:
    with browserkit.browser() as b:
        page = b.new_page()
        response = page.goto(f"{base}/broken")
        assert response is not None and response.headers["content-security-policy"] == CSP
        findings = browserkit.axe_findings(page)
    by_id = {f["id"]: f for f in findings}
    assert set(by_id) == {"image-alt", "button-name"}, browserkit.describe(findings)
    assert by_id["image-alt"]["impact"] in ("serious", "critical")
    assert by_id["button-name"]["impact"] in ("serious", "critical")
    assert by_id["image-alt"]["targets"] == ["#logo"]
    assert by_id["button-name"]["targets"] == ["#go"]
    text = browserkit.describe(findings)
    assert "image-alt" in text and "#logo" in text and "button-name" in text


def test_axe_impact_filter_keeps_only_the_impacts_asked_for(base: str) -> None:
    with browserkit.browser() as b:
        page = b.new_page()
        page.goto(f"{base}/broken")
        assert browserkit.axe_findings(page, impacts=("minor",)) == []
        # Injected once: a second scan on the same page reuses the loaded axe.
        both = browserkit.axe_findings(page, impacts=("critical", "serious", "moderate"))
    assert {f["id"] for f in both} == {"image-alt", "button-name"}


def test_a_clean_page_has_no_findings(base: str) -> None:
    with browserkit.browser() as b:
        page = b.new_page()
        page.goto(f"{base}/clean")
        assert page.evaluate("() => typeof window.axe") == "undefined"
        findings = browserkit.axe_findings(page)
        # axe really ran on this page (the empty list is not a scan that never happened).
        assert page.evaluate("() => typeof window.axe.run") == "function"
        assert page.locator("img").get_attribute("alt") == "Practice logo"
    assert findings == [], browserkit.describe(findings)


def test_the_csp_blocks_inline_scripts_and_allows_same_origin_ones(base: str) -> None:
    with browserkit.browser() as b:
        page = b.new_page()
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text
                else None)
        page.goto(f"{base}/scripts")
        page.wait_for_function("() => document.body.dataset.external === 'ran'")
        assert page.evaluate("() => document.body.dataset.inline") is None
        # Why axe is injected with page.evaluate: a <script> with inline text
        # is what the CSP refuses, from Playwright as from an attacker.
        from playwright.sync_api import Error

        with pytest.raises(Error, match="Content Security Policy directive 'script-src 'self''"):
            page.add_script_tag(content="document.body.dataset.injected = 'ran';")
        assert page.evaluate("() => document.body.dataset.injected") is None
    assert any("script-src" in v for v in violations), violations


def test_screenshot_writes_a_full_page_png(base: str, tmp_path: Path) -> None:
    with browserkit.browser() as b:
        page = b.new_page(viewport={"width": 800, "height": 600})
        page.goto(f"{base}/clean")
        shot = browserkit.screenshot(page, "browserkit-clean", folder=tmp_path / "shots")
    assert shot == tmp_path / "shots" / "browserkit-clean.png"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    # The whole page, not the 600-pixel viewport: the stylesheet made it 3000+ tall.
    assert width == 800 and height > 3000


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "Upper", "with space", "x" * 81])
def test_screenshot_refuses_a_name_that_is_not_a_plain_file_name(
    name: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="screenshot name"):
        browserkit.screenshot(None, name, folder=tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_artifacts_folder_follows_the_environment(tmp_path: Path) -> None:
    assert browserkit.artifacts_folder({"SEALDROP_TEST_ARTIFACTS": str(tmp_path)}) == tmp_path
    assert browserkit.artifacts_folder({}) == browserkit.REPO / "artifacts" / "desk"
    assert browserkit.artifacts_folder({"SEALDROP_TEST_ARTIFACTS": ""}) == (
        browserkit.REPO / "artifacts" / "desk"
    )


def test_artifacts_are_not_committed() -> None:
    ignored = (browserkit.REPO / ".gitignore").read_text().split()
    assert "artifacts/" in ignored


def _version_page(b: Browser) -> tuple[str, str]:
    """chromium's own account of itself: (command line, profile folder)."""
    page = b.new_page()
    page.goto("chrome://version")
    return page.inner_text("#command_line"), page.inner_text("#profile_path")


def test_each_browser_is_debian_chromium_with_a_fresh_profile_and_quiet_flags() -> None:
    with browserkit.browser() as b:
        first_command, first_profile = _version_page(b)
    with browserkit.browser() as b:
        _, second_profile = _version_page(b)
    assert first_command.startswith("/usr/lib/chromium/chromium ")
    for flag in browserkit.ARGS:
        assert flag in first_command.split(), flag
    assert "--headless" in first_command
    assert first_profile != second_profile
    # Playwright's temporary profile, gone once the browser closed.
    assert not Path(first_profile).exists()


def test_a_missing_chromium_is_named_with_its_fix_and_fails_the_browser(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browserkit, "CHROMIUM", str(tmp_path / "chromium"))
    reason = browserkit.missing()
    assert reason is not None
    assert "install Debian chromium (.ci/run does" in reason
    # browser() fails rather than skips: on CI, where the mark never skips, a
    # missing browser is a red run, not a quiet one.
    with pytest.raises(pytest.fail.Exception, match="install Debian chromium"):
        with browserkit.browser():
            pass

