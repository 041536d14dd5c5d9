"""The desk's other paths in a real browser through a real relay: verifying a
contact by its safety number, a tampered transfer shown as refused (and
nothing placed), and the whole send flow by keyboard alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import FileChooser, Page, expect

from tests.desk.browserkit import axe_findings, browser, describe, needs_browser, screenshot
from tests.desk.deskkit import Desk, desk
from tests.desk.test_desk_flow import make_dental_case, open_desk
from tests.e2e.kit import PASSPHRASE, Relay, User

pytestmark = needs_browser


def test_a_contact_is_verified_by_its_safety_number(practice: User, lab: User) -> None:
    with desk(practice) as d, browser() as b:
        page = b.new_page()
        open_desk(page, d)
        page.get_by_role("button", name="Contacts", exact=True).click()
        page.fill("#add-handle", lab.handle)
        page.get_by_role("button", name="Add", exact=True).click()
        item = page.locator("#contacts-list li", has_text=lab.handle)
        expect(item.locator(".badge.unverified")).to_be_visible()
        expect(item).to_contain_text(lab.safety_number)
        expect(item.locator("img.qr")).to_be_visible()
        # A wrong number (one digit off) is refused loudly and changes nothing.
        wrong = lab.safety_number[:-1] + str((int(lab.safety_number[-1]) + 1) % 10)
        item.locator("input").fill(wrong)
        item.get_by_role("button", name="Mark verified").click()
        expect(page.locator("#contacts-msg [role=alert]")).to_be_visible()
        assert _state(practice, lab.handle) == "unverified"
        item.locator("input").fill(lab.safety_number)
        item.get_by_role("button", name="Mark verified").click()
        expect(page.locator("#contacts-list li", has_text=lab.handle).locator(
            ".badge.verified")).to_be_visible()
        assert _state(practice, lab.handle) == "verified"
        # An account the relay does not know is a sentence, not a contact.
        page.fill("#add-handle", "nobody-here")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("#contacts-msg .error")).to_contain_text("no account")
        findings = axe_findings(page)
        assert not findings, describe(findings)


def _state(user: User, handle: str) -> str:
    contacts = json.loads(user.run("contacts", "list", "--json").stdout)
    return str(next(c["state"] for c in contacts if c["handle"] == handle))


@pytest.fixture
def lab_desk(pair: tuple[User, User]) -> Iterator[tuple[User, Desk]]:
    practice, lab = pair
    with desk(lab) as d:
        yield practice, d


def _set_folder(page: Page, folder: Path) -> None:
    page.get_by_role("button", name="Settings", exact=True).click()
    page.fill("#set-folder", str(folder))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#settings-msg")).to_contain_text("Saved.")


def test_a_tampered_transfer_is_shown_refused_and_nothing_is_placed(
        tmp_path: Path, relay: Relay, lab_desk: tuple[User, Desk]) -> None:
    practice, d = lab_desk
    case = make_dental_case(tmp_path / "src")
    tid = practice.json("send", str(case), "--to", d.user.handle)["transfer_id"]
    blob = relay.blob_path(tid)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the ciphertext
    blob.write_bytes(bytes(data))
    dest = tmp_path / "received"
    dest.mkdir()
    with browser() as b:
        page = b.new_page()
        open_desk(page, d)
        _set_folder(page, dest)
        page.get_by_role("button", name="Inbox", exact=True).click()
        card = page.locator("article.card", has_text=practice.handle)
        card.get_by_role("button", name="Receive", exact=True).click()
        job = page.locator("#inbox-jobs .card")
        try:
            expect(job.locator("[role=alert]")).to_contain_text("Refused:", timeout=60_000)
        except AssertionError as exc:
            raise AssertionError(f"{page.locator('main').inner_text()}\n{d.stderr()}") from exc
        # After the list reloads, the case itself says refused, with why.
        expect(page.locator("article.card.refused [role=alert]")).to_contain_text("Refused:")
        screenshot(page, "desk-refused")
    assert list(dest.iterdir()) == []
    assert not any((d.user.home / "staging").glob("*/files/*"))


def test_the_send_flow_by_keyboard_alone(tmp_path: Path,
                                         pair: tuple[User, User]) -> None:
    practice, lab = pair
    case = make_dental_case(tmp_path / "src")
    with desk(practice) as d, browser() as b:
        page = b.new_page()
        # Listening from the start: Playwright then intercepts file choosers
        # before any key is pressed (with expect_file_chooser() around the key
        # press, the interception can come after the key under load).
        chosen: list[FileChooser] = []
        page.on("filechooser", lambda fc: chosen.append(fc))
        page.goto(d.url)
        expect(page.locator("#passphrase")).to_be_focused()
        page.keyboard.type(PASSPHRASE)
        page.keyboard.press("Enter")
        expect(page.locator("#tabs")).to_be_visible()
        expect(page.get_by_role("button", name="Inbox", exact=True)).to_be_focused()
        page.keyboard.press("Shift+Tab")
        expect(page.get_by_role("button", name="Send", exact=True)).to_be_focused()
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        expect(page.get_by_label("Choose files…")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_label("Choose a folder…")).to_be_focused()
        page.keyboard.press("Space")  # as a keyboard user opens a file input
        for _ in range(600):  # the chooser arrives through the handler set at the start
            if chosen:
                break
            page.wait_for_timeout(100)
        assert chosen, "Space on the focused file picker opened no file chooser"
        chosen[0].set_files(str(case))
        # The form opens with the first contact that can be sent to focused.
        expect(page.locator(f"#to-{lab.handle}")).to_be_focused()
        page.keyboard.press("Space")
        expect(page.locator(f"#to-{lab.handle}")).to_be_checked()
        page.keyboard.press("Tab")
        page.keyboard.type("Crown 46 by keyboard")
        for _ in range(10):  # on through the note and the expiry to the button
            if page.evaluate("document.activeElement.id") == "send-button":
                break
            page.keyboard.press("Tab")
        expect(page.locator("#send-button")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#send-jobs .ok")).to_contain_text("Sent, encrypted", timeout=60_000)
    sent = practice.json("status", "--json-phi")["transfers"]
    assert [t["label"] for t in sent] == ["Crown 46 by keyboard"]


def test_received_studies_go_into_the_pacs_set_in_settings(
        tmp_path: Path, lab_desk: tuple[User, Desk]) -> None:
    from tests.e2e.pacs import storescp

    practice, d = lab_desk
    case = make_dental_case(tmp_path / "src")
    practice.json("send", str(case), "--to", d.user.handle)
    dest = tmp_path / "received"
    dest.mkdir()
    with storescp(tmp_path / "pacs") as pacs, browser() as b:
        page = b.new_page()
        open_desk(page, d)
        page.get_by_role("button", name="Settings", exact=True).click()
        page.fill("#set-folder", str(dest))
        page.fill("#set-pacs", "not a pacs")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#settings-msg .error")).to_be_visible()  # refused, with why
        page.fill("#set-pacs", pacs.target)
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#settings-msg")).to_contain_text("Saved.")
        page.get_by_role("button", name="Inbox", exact=True).click()
        card = page.locator("article.card", has_text=practice.handle)
        card.get_by_role("button", name="Receive", exact=True).click()
        expect(page.locator("#inbox-jobs .ok").nth(1)).to_contain_text(
            f"Stored in the PACS {pacs.target}: 2 of 2 images.", timeout=60_000)
        # Both DICOM instances are in the PACS; the STL and the note are not DICOM.
        assert len(pacs.files()) == 2


def test_an_outage_is_shown_as_a_retry_and_a_failed_send_resumes(
        tmp_path: Path, relay: Relay, pair: tuple[User, User]) -> None:
    from tests.e2e.kit import make_case

    practice, lab = pair
    case = make_case(tmp_path / "src", big=6 * 1024 * 1024)
    other = make_dental_case(tmp_path / "src2")
    with desk(practice) as d, browser() as b:
        page = b.new_page()
        open_desk(page, d)
        page.get_by_role("button", name="Send", exact=True).click()
        # 1. The relay stops mid-upload and comes back: the job says it retries.
        with relay.throttled(up=512 * 1024):
            page.set_input_files("#folder-input", str(case))
            page.check(f"#to-{lab.handle}")
            page.get_by_role("button", name="Encrypt and send").click()
            expect(page.locator("#send-jobs progress")).to_be_visible()
            expect(page.locator("#send-jobs .facts")).to_contain_text(" of ", timeout=30_000)
            relay.kill()
            expect(page.locator("#send-jobs .hint")).to_contain_text("Retrying:",
                                                                     timeout=30_000)
            expect(page.locator("#send-jobs .hint")).to_contain_text("Nothing is lost.")
            relay.start()
        expect(page.locator("#send-jobs .ok")).to_contain_text("Sent, encrypted",
                                                               timeout=120_000)
        # 2. The relay is down when a send starts: a sentence, then "Try again" resumes.
        relay.stop()
        page.set_input_files("#folder-input", str(other))
        expect(page.locator("#send-form")).to_be_visible()
        page.check(f"#to-{lab.handle}")
        expect(page.locator(f"#to-{lab.handle}")).to_be_checked()
        page.get_by_role("button", name="Encrypt and send").click()
        failed = page.locator("#send-jobs .card", has=page.locator("[role=alert]"))
        expect(failed).to_contain_text(relay.url, timeout=60_000)  # names the relay
        relay.start()
        failed.get_by_role("button", name="Try again (resumes)").click()
        expect(page.locator("#send-jobs .ok").first).to_contain_text("Sent, encrypted",
                                                                     timeout=60_000)
        screenshot(page, "desk-send-retried")
    assert len(practice.json("status")["transfers"]) == 2


def test_deidentified_send_retract_and_watch(tmp_path: Path, relay: Relay,
                                             pair: tuple[User, User]) -> None:
    import pydicom

    from tests.e2e.kit import wait_for

    practice, lab = pair
    case = make_dental_case(tmp_path / "src")
    dest = tmp_path / "received"
    dest.mkdir()
    with desk(practice) as at_practice, desk(lab) as at_lab, browser() as b:
        page = b.new_page()
        open_desk(page, at_practice)
        # 1. De-identified: the lab gets the copies, never the names.
        page.get_by_role("button", name="Send", exact=True).click()
        page.set_input_files("#folder-input", str(case))
        expect(page.locator("#send-form")).to_be_visible()
        page.check("#deidentify")
        page.check(f"#to-{lab.handle}")
        page.get_by_role("button", name="Encrypt and send").click()
        expect(page.locator("#send-jobs .ok").first).to_contain_text("Sent, encrypted",
                                                                     timeout=60_000)
        # 2. The lab turns on automatic receiving: the case arrives by itself.
        lab_page = b.new_page()
        open_desk(lab_page, at_lab)
        lab_page.get_by_role("button", name="Settings", exact=True).click()
        lab_page.fill("#set-folder", str(dest))
        lab_page.check("#set-watch")
        lab_page.get_by_role("button", name="Save").click()
        expect(lab_page.locator("#settings-msg")).to_contain_text("Saved.")
        wait_for(lambda: any(p.suffix == ".dcm" for p in dest.rglob("*")), 60,
                 "the watch to place the case")
        for p in dest.rglob("*.dcm"):
            ds = pydicom.dcmread(p)
            assert "CompressedSamples" not in str(ds.get("PatientName", "")), p


        def listed() -> bool:  # the event follows the placing by a moment: ask again
            lab_page.get_by_role("button", name="Settings", exact=True).click()
            lab_page.wait_for_timeout(300)
            return "received" in lab_page.locator("#watch-events").inner_text()

        wait_for(listed, 30, "the watch's event in Settings")
        # 3. A case nobody opened yet is retracted from Status (two clicks).
        lab_page.get_by_role("button", name="Settings", exact=True).click()
        lab_page.uncheck("#set-watch")
        lab_page.get_by_role("button", name="Save").click()
        expect(lab_page.locator("#settings-msg")).to_contain_text("Saved.")
        tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
        page.get_by_role("button", name="Status", exact=True).click()
        row = page.locator("article.card", has_text=tid)
        row.get_by_role("button", name="Retract…").click()
        row.get_by_role("button", name="Really retract? Click again").click()
        expect(page.locator("#status-msg")).to_contain_text("Retracted")
    states = {t["id"]: t for t in practice.json("status")["transfers"]}
    assert states[tid]["retracted_at"] is not None


def test_files_dropped_on_the_send_screen_are_staged(pair: tuple[User, User]) -> None:
    practice, lab = pair
    with desk(practice) as d, browser() as b:
        page = b.new_page()
        open_desk(page, d)
        page.get_by_role("button", name="Send", exact=True).click()
        # A drop as another program makes it: files, no folder entries.
        dropped = page.evaluate_handle("""() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["%PDF-1.4 prescription"], "prescription.pdf"));
            dt.items.add(new File(["solid s\\nendsolid s\\n"], "scan.stl"));
            return dt;
        }""")
        page.dispatch_event("#drop", "dragover", {"dataTransfer": dropped})
        page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
        expect(page.locator("#send-form")).to_be_visible()
        expect(page.locator("#send-files")).to_contain_text("2 file(s)")
        expect(page.locator("#deid-box")).to_be_hidden()  # no DICOM, no switch
        stages = list((practice.home / "desk-outgoing").iterdir())
        assert len(stages) == 1
        assert sorted(p.name for p in stages[0].iterdir()) == ["prescription.pdf", "scan.stl"]
        # Discarded: the staged copies are gone.
        page.get_by_role("button", name="Discard").click()
        expect(page.locator("#send-form")).to_be_hidden()
    assert not stages[0].exists()
