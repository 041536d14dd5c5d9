"""The desk in a real browser, through a real relay: a practice sends a case
(DICOM from pydicom's test files and an intraoral scan as STL) from its desk,
the lab receives it in its desk, previews it, and the practice sees it
verified. Each main screen is photographed (artifacts/desk/) and scanned
with axe-core: no serious or critical finding."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pydicom.data import get_testdata_file

from tests.desk.browserkit import axe_findings, browser, describe, needs_browser, screenshot
from tests.desk.deskkit import Desk, desk
from tests.e2e.kit import PASSPHRASE, User

pytestmark = needs_browser

TETRA = """solid scan
facet normal 0 0 -1
 outer loop
  vertex 0 0 0
  vertex 1 0 0
  vertex 0 1 0
 endloop
endfacet
facet normal 0 -1 0
 outer loop
  vertex 0 0 0
  vertex 0 0 1
  vertex 1 0 0
 endloop
endfacet
facet normal -1 0 0
 outer loop
  vertex 0 0 0
  vertex 0 1 0
  vertex 0 0 1
 endloop
endfacet
facet normal 1 1 1
 outer loop
  vertex 1 0 0
  vertex 0 0 1
  vertex 0 1 0
 endloop
endfacet
endsolid scan
"""


def make_dental_case(root: Path) -> Path:
    case = root / "Dupont-crown-46"
    (case / "cbct").mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        src = get_testdata_file(name)
        assert src is not None
        shutil.copy(src, case / "cbct" / name)
    (case / "scan-lower.stl").write_text(TETRA)
    (case / "notes.txt").write_text("crown 46, shade A2\n")
    return case


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def open_desk(page: Page, d: Desk) -> None:
    page.goto(d.url)
    expect(page.locator("#passphrase")).to_be_focused()
    assert page.url == d.origin + "/"  # the token left the address bar
    page.fill("#passphrase", PASSPHRASE)
    page.get_by_role("button", name="Unlock", exact=True).click()
    expect(page.locator("#tabs")).to_be_visible()


def clean(page: Page, what: str) -> None:
    findings = axe_findings(page)
    assert not findings, f"{what}: {describe(findings)}"


@pytest.fixture
def desks(pair: tuple[User, User]) -> Iterator[tuple[Desk, Desk]]:
    practice, lab = pair
    with desk(practice) as a, desk(lab) as b:
        yield a, b


def test_send_receive_preview_and_status_in_the_browser(
        tmp_path: Path, desks: tuple[Desk, Desk]) -> None:
    at_practice, at_lab = desks
    case = make_dental_case(tmp_path / "src")
    dest = tmp_path / "received"
    dest.mkdir()
    with browser() as b:
        sender = b.new_context(viewport={"width": 1100, "height": 900}).new_page()
        sender.goto(at_practice.url)
        expect(sender.locator("#passphrase")).to_be_visible()
        screenshot(sender, "desk-unlock")
        clean(sender, "unlock screen")
        sender.fill("#passphrase", "not the passphrase")
        sender.get_by_role("button", name="Unlock", exact=True).click()
        expect(sender.locator("#unlock-msg .error")).to_be_visible()
        sender.fill("#passphrase", PASSPHRASE)
        sender.get_by_role("button", name="Unlock", exact=True).click()
        expect(sender.locator("#tabs")).to_be_visible()

        # Send: drop the case folder, check the DICOM summary, pick the lab.
        sender.get_by_role("button", name="Send", exact=True).click()
        sender.set_input_files("#folder-input", str(case))
        expect(sender.locator("#send-form")).to_be_visible()
        expect(sender.locator("#send-files")).to_contain_text("4 file(s)")
        expect(sender.locator("#send-files")).to_contain_text("2 DICOM")
        expect(sender.locator("#send-dicom li").first).to_be_visible()
        expect(sender.locator("#deid-box")).to_be_visible()
        sender.check(f"#to-{at_lab.user.handle}")
        sender.fill("#send-label", "Crown 46")
        sender.fill("#send-note", "<b>shade A2</b> please")
        screenshot(sender, "desk-send")
        clean(sender, "send screen")
        sender.get_by_role("button", name="Encrypt and send").click()
        expect(sender.locator("#send-jobs .ok")).to_contain_text(
            f"Sent, encrypted, to {at_lab.user.handle}", timeout=60_000)

        # The lab: receive folder, inbox card from a verified sender, receive.
        lab = b.new_context(viewport={"width": 1100, "height": 900}).new_page()
        open_desk(lab, at_lab)
        lab.get_by_role("button", name="Settings", exact=True).click()
        lab.fill("#set-folder", str(dest))
        lab.get_by_role("button", name="Save").click()
        expect(lab.locator("#settings-msg")).to_contain_text("Saved.")
        screenshot(lab, "desk-settings")
        clean(lab, "settings screen")
        lab.get_by_role("button", name="Inbox", exact=True).click()
        card = lab.locator("article.card", has_text="Crown 46")
        expect(card).to_be_visible(timeout=30_000)
        expect(card.locator(".badge.verified")).to_be_visible()
        expect(card).to_contain_text(at_practice.user.handle)
        # The sender's note is text on the page, never markup.
        expect(card).to_contain_text("<b>shade A2</b> please")
        assert card.locator("b").count() == 0
        screenshot(lab, "desk-inbox")
        clean(lab, "inbox screen")
        card.get_by_role("button", name="Receive", exact=True).click()
        expect(card).to_contain_text("Received and verified", timeout=60_000)
        placed = [p for p in dest.iterdir() if p.is_dir()]
        assert len(placed) == 1 and files_of(placed[0]) == files_of(case)

        # Previews: a middle slice per series, and the scan in 3D.
        card = lab.locator("article.card", has_text="Crown 46")
        card.get_by_role("button", name="Show preview").click()
        expect(card.locator(".thumbs img")).to_have_count(2, timeout=30_000)
        card.get_by_role("button", name="Show in 3D").click()
        expect(card.locator("canvas.mesh")).to_be_visible()
        expect(card.locator("canvas.mesh")).to_be_focused()
        lab.keyboard.press("ArrowLeft")  # turns it; the page stays whole
        screenshot(lab, "desk-preview")
        clean(lab, "inbox with previews")

        # The practice's status: delivered and verified, by the lab's signed receipt.
        sender.get_by_role("button", name="Status", exact=True).click()
        sent = sender.locator("article.card", has_text="Crown 46")
        expect(sent).to_contain_text("verified ✓", timeout=30_000)
        screenshot(sender, "desk-status")
        clean(sender, "status screen")
        sender.get_by_role("button", name="Check against the relay's log").click()
        expect(sender.locator("#audit-msg .ok")).to_contain_text("Everything verified",
                                                                 timeout=30_000)
        sender.get_by_role("button", name="Contacts", exact=True).click()
        expect(sender.locator("#contacts-list")).to_contain_text(at_lab.user.handle)
        expect(sender.locator("#me img.qr")).to_be_visible()
        screenshot(sender, "desk-contacts")
        clean(sender, "contacts screen")
    # Nothing the sender dropped is left behind once sent.
    outgoing = at_practice.user.home / "desk-outgoing"
    assert not outgoing.exists() or not any(outgoing.iterdir())
