"""What sending through ``sealdrop desk`` costs, against ``sealdrop send`` of the
same case in the same run.

A loopback relay (SQLite + files) and two profiles that know each other
(``e2ekit.LoopbackRelay``). Each round sends one case folder (one random file
of --size) to the lab twice, alternating:

1. the baseline: ``sealdrop send CASE --to bench-lab`` (wall, CPU seconds, peak
   RSS from wait4);
2. the desk: a real ``sealdrop desk --no-browser`` driven by Debian's chromium
   (Playwright, headless): the folder chosen in the page and uploaded by the
   browser into the desk's private staging folder ("stage"), then "Encrypt and
   send" until the page says sent ("send"). The desk's CPU seconds and peak RSS
   (VmHWM, reset before each round) are the desk process's own; the browser's
   are not counted.

The profiles are sealed at scrypt 2^12 so that the rounds time the transfer.
Last, a desk on a profile made with the defaults (scrypt 2^18, as age) is
unlocked once in the page: its peak RSS then is what a practice's desk
reaches at its first minute (scrypt's 256 MiB), whatever it sends after.

Prints each round, the medians, the ratios desk/CLI (stage + send, and send
alone), that unlock's time and peak RSS, and the load average at start and
end: on a shared machine read the ratios with it. No figure is a target;
tests never assert any of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import make_random_file, parse_size  # noqa: E402
from e2ekit import LoopbackRelay, cpu_seconds, hwm_mb, reset_hwm  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _desk_round(page: object, case: Path, pid: int) -> tuple[float, float, float, float]:
    """(stage seconds, send seconds, desk CPU seconds, desk peak RSS MB) of one send."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    reset_hwm(pid)
    cpu0 = cpu_seconds(pid)
    page.get_by_role("button", name="Send", exact=True).click()
    t0 = time.perf_counter()
    page.set_input_files("#folder-input", str(case))
    expect(page.locator("#send-form")).to_be_visible(timeout=600_000)
    t1 = time.perf_counter()
    page.check("#to-bench-lab")
    cards = page.locator("#send-jobs .card")
    before = cards.count()
    page.get_by_role("button", name="Encrypt and send").click()
    # This send's card (new ones come first), not an earlier one already "Sent".
    expect(cards).to_have_count(before + 1, timeout=600_000)
    expect(cards.first.locator(".ok")).to_contain_text("Sent, encrypted", timeout=600_000)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, cpu_seconds(pid) - cpu0, hwm_mb(pid)


def _default_unlock(relay: LoopbackRelay, browser: object) -> tuple[float, float]:
    """(seconds, peak RSS MB) of a desk unlocking a profile at the default work factor."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    env = {k: v for k, v in relay._user("bench-default", work_factor=None).items()
           if k != "SEALDROP_PASSPHRASE"}
    desk = subprocess.Popen([relay.sealdrop, "desk", "--no-browser"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert desk.stdout is not None
        page = browser.new_page()
        page.goto(desk.stdout.readline().strip())
        page.fill("#passphrase", "bench")
        t0 = time.perf_counter()
        page.get_by_role("button", name="Unlock", exact=True).click()
        page.locator("#tabs").wait_for(timeout=120_000)
        return time.perf_counter() - t0, hwm_mb(desk.pid)
    finally:
        desk.terminate()
        desk.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="200MiB", help="the case's one file (default 200MiB)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    args = ap.parse_args()
    size = parse_size(args.size)
    from playwright.sync_api import sync_playwright

    print(f"bench_desk: one case of {size} bytes, {args.rounds} round(s); load average "
          f"{_load()}")
    with tempfile.TemporaryDirectory(prefix="bench-desk-") as tmp:
        d = Path(tmp)
        relay = LoopbackRelay(d, size)
        case = d / "case"
        case.mkdir()
        make_random_file(case / "scan.bin", size)
        env = {k: v for k, v in relay.practice.items() if k != "SEALDROP_PASSPHRASE"}
        desk = subprocess.Popen([relay.sealdrop, "desk", "--no-browser"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        cli: list[tuple[float, float, float]] = []
        web: list[tuple[float, float, float, float]] = []
        try:
            assert desk.stdout is not None
            url = desk.stdout.readline().strip()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                page = browser.new_page()
                page.goto(url)
                page.fill("#passphrase", "bench")
                page.get_by_role("button", name="Unlock", exact=True).click()
                page.locator("#tabs").wait_for()
                for n in range(args.rounds):
                    p, _ = relay.send(case, d / f"send-{n}.json")
                    cli.append((p.seconds, p.cpu, p.max_rss_mb))
                    web.append(_desk_round(page, case, desk.pid))
                    print(f"round {n + 1}: cli {cli[-1][0]:.2f} s, {cli[-1][1]:.2f} CPU-s, "
                          f"{cli[-1][2]:.0f} MB peak; desk stage {web[-1][0]:.2f} s + send "
                          f"{web[-1][1]:.2f} s, {web[-1][2]:.2f} CPU-s, {web[-1][3]:.0f} MB peak")
                unlock = _default_unlock(relay, browser)
                browser.close()
        finally:
            desk.terminate()
            desk.wait(30)
            relay.close()
    med = statistics.median
    c_s, c_cpu, c_rss = (med(x[i] for x in cli) for i in range(3))
    w_stage, w_send, w_cpu, w_rss = (med(x[i] for x in web) for i in range(4))
    print(f"median cli: {c_s:.2f} s, {c_cpu:.2f} CPU-s, {c_rss:.0f} MB peak RSS (wait4)")
    print(f"median desk: stage {w_stage:.2f} s + send {w_send:.2f} s = "
          f"{w_stage + w_send:.2f} s, {w_cpu:.2f} CPU-s, {w_rss:.0f} MB peak RSS (VmHWM)")
    print(f"ratio desk/cli: total {(w_stage + w_send) / c_s:.2f}x, send alone "
          f"{w_send / c_s:.2f}x, CPU {w_cpu / c_cpu:.2f}x, peak RSS {w_rss / c_rss:.2f}x")
    print(f"desk unlocking a default profile (scrypt 2^18): {unlock[0]:.2f} s, "
          f"{unlock[1]:.0f} MB peak RSS (VmHWM)")
    print(f"load average at end: {_load()}")


if __name__ == "__main__":
    main()
