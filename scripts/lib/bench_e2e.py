"""Benchmark sealdrop end to end (send, then receive) against magic-wormhole, same run.

    sealdrop:       sealdrop send FILE --to lab   (practice -> loopback relay, stored)
                    sealdrop receive ID --into D  (relay -> lab, verified, placed)
    magic-wormhole: wormhole send FILE --code C   |  wormhole receive --accept-file C
                    (both at once, through a loopback mailbox server and transit relay)

The two alternate, ``--repeat`` rounds each, on the same random file; every
round starts after a ``sync``, and every received file is compared with the
original. Printed: each contender's median wall time and the ratio
(wormhole / sealdrop, target >= 1.0x), the peak RSS of the sealdrop client
(wait4) and relay (VmHWM, reset per phase), and CPU-seconds per GiB (user +
system) of the client's send and receive and of the relay's ingest and serve
(target: ingest <= 1.5 s/GiB). CPU holds up on a busy machine; wall time does not.
Each round also times a durable copy of the file (``dd conv=fsync``): sealdrop
writes the file durably twice (relay and lab), magic-wormhole never fsyncs, so
twice that copy is the floor the disk sets for sealdrop, printed with the ratio
it allows.

The two profiles' identities are sealed at scrypt 2^12 so that the rounds time
the transfer; the last lines measure what unlocking a profile made with the
default (2^18) adds to each command, in time and peak RSS, and the ratio with it.

magic-wormhole is a benchmark-only dependency (scripts/lib/wormhole-requirements.txt),
installed into this venv on first use.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchutil import make_random_file, parse_size, warm  # noqa: E402
from e2ekit import (  # noqa: E402
    BIN,
    LoopbackRelay,
    Proc,
    compile_tree,
    cpu_seconds,
    free_port,
    hwm_mb,
    measure,
    median,
    reset_hwm,
    same_file,
    wait_for,
)

REQUIREMENTS = Path(__file__).with_name("wormhole-requirements.txt")
CODE = "1-abc-def"


def ensure_wormhole() -> None:
    """Install the pinned magic-wormhole packages into this venv unless already there."""
    if all((BIN / name).exists() for name in ("wormhole", "twist")):
        return
    print(f"installing magic-wormhole into {BIN.parent} (benchmark only, "
          f"{REQUIREMENTS.name})…", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "pip", "install", "--progress-bar", "off",
                             "-r", str(REQUIREMENTS)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # one line per step: progress without pip's noise
        line = line.strip()
        if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
            print(f"  {line.split(' (')[0][:72]}", flush=True)
    if proc.wait() != 0:
        raise SystemExit("pip could not install magic-wormhole; see the lines above")


class Wormhole:
    """A loopback mailbox server and transit relay, and one send/receive pair at a time."""

    def __init__(self, d: Path) -> None:
        self.d = d
        mailbox, transit = free_port(), free_port()
        self.relay_url = f"ws://127.0.0.1:{mailbox}/v1"
        self.transit = f"tcp:127.0.0.1:{transit}"
        twist = str(BIN / "twist")
        self._logs = [open(d / "wh-mailbox.log", "wb"), open(d / "wh-transit.log", "wb")]  # noqa: SIM115
        self.procs = [
            subprocess.Popen([twist, "wormhole-mailbox",
                              f"--port=tcp:{mailbox}:interface=127.0.0.1",
                              f"--channel-db={d / 'wh-mailbox.sqlite'}"],
                             cwd=d, stdout=self._logs[0], stderr=subprocess.STDOUT),
            subprocess.Popen([twist, "transitrelay", f"--port=tcp:{transit}:interface=127.0.0.1"],
                             cwd=d, stdout=self._logs[1], stderr=subprocess.STDOUT),
        ]
        for p, log, what in zip(self.procs, ("wh-mailbox.log", "wh-transit.log"),
                                ("the wormhole mailbox server", "the transit relay"),
                                strict=True):
            wait_for(d / log, b"Starting", p, what)

    def move(self, src: Path, into: Path) -> tuple[Proc, Proc, float]:
        """Send ``src`` into the folder ``into``; both processes' runs and the wall time
        from the first start to the last exit."""
        common = ["--relay-url", self.relay_url, "--transit-helper", self.transit]
        wormhole = str(BIN / "wormhole")
        results: dict[str, Proc] = {}
        errors: list[BaseException] = []

        def go(name: str, cmd: list[str], cwd: Path) -> None:  # both run at once
            try:
                results[name] = measure(cmd, cwd=cwd, quiet=True)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t0 = time.perf_counter()
        sender = threading.Thread(target=go, args=("send", [
            wormhole, *common, "send", "--hide-progress", "--no-qr", "--code", CODE,
            str(src)], self.d))
        receiver = threading.Thread(target=go, args=("receive", [
            wormhole, *common, "receive", "--hide-progress", "--accept-file", "-o",
            str(into / src.name), CODE], into))
        sender.start()
        time.sleep(0.3)  # the sender claims the nameplate first
        receiver.start()
        sender.join()
        receiver.join()
        wall = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"magic-wormhole failed: {errors[0]}")
        return results["send"], results["receive"], wall

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
            p.wait(30)
        for log in self._logs:
            log.close()


def durable_copy(src: Path, dst: Path) -> float:
    """Seconds to copy ``src`` to ``dst`` and fsync it, from a clean page cache
    state (nothing dirty); ``dst`` is removed after."""
    os.sync()
    t0 = time.perf_counter()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=4M", "conv=fsync", "status=none"],
                   check=True)
    took = time.perf_counter() - t0
    dst.unlink()
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G", help="file size, e.g. 256M, 1G, 4G (default 1G)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per contender (default 3)")
    ap.add_argument("--no-wormhole", action="store_true",
                    help="measure sealdrop only (no ratio)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    size = parse_size(args.size)
    gib = size / (1 << 30)
    if not args.no_wormhole:
        ensure_wormhole()
    compile_tree()
    ours: list[float] = []
    theirs: list[float] = []
    sends: list[Proc] = []
    receives: list[Proc] = []
    ingest: list[float] = []
    serve: list[float] = []
    disk: list[float] = []
    relay_mb = 0.0
    wh_mb = 0.0
    with tempfile.TemporaryDirectory(prefix="sealdrop-e2e-") as tmp:
        d = Path(tmp)
        relay = LoopbackRelay(d, size)
        wormhole = None if args.no_wormhole else Wormhole(d)
        try:
            src = d / "payload.bin"
            print(f"making a {size}-byte random file…", flush=True)
            make_random_file(src, size)
            warm(src)
            for i in range(args.repeat):
                into = d / f"in-{i}"
                into.mkdir()
                os.sync()
                reset_hwm(relay.pid)
                c0 = cpu_seconds(relay.pid)
                sent, tid = relay.send(src, d / f"send-{i}.json")
                c1 = cpu_seconds(relay.pid)
                got = relay.receive(tid, into)
                c2 = cpu_seconds(relay.pid)
                relay_mb = max(relay_mb, hwm_mb(relay.pid))
                if not same_file(src, into / src.name):
                    raise SystemExit("sealdrop: the received file differs from the original")
                sends.append(sent)
                receives.append(got)
                ingest.append(c1 - c0)
                serve.append(c2 - c1)
                ours.append(sent.seconds + got.seconds)
                shutil.rmtree(into)
                line = (f"round {i + 1}: sealdrop {ours[-1]:.2f} s (send {sent.seconds:.2f}, "
                        f"receive {got.seconds:.2f})")
                if wormhole is not None:
                    into = d / f"wh-{i}"
                    into.mkdir()
                    os.sync()
                    ws, wr, wall = wormhole.move(src, into)
                    if not same_file(src, into / src.name):
                        raise SystemExit("magic-wormhole: the received file differs")
                    wh_mb = max(wh_mb, ws.max_rss_mb, wr.max_rss_mb)
                    theirs.append(wall)
                    shutil.rmtree(into)
                    line += f", magic-wormhole {wall:.2f} s"
                disk.append(durable_copy(src, d / "disk.bin"))
                line += f", durable copy {disk[-1]:.2f} s"
                print(line, flush=True)
            unlock, low = relay.unlock_cost()
        finally:
            relay.close()
            if wormhole is not None:
                wormhole.close()

    def per_gib(xs: list[float]) -> str:
        return f"{median(xs) / gib:.2f}"

    s = median(ours)
    print(f"file: {size} bytes ({gib:.2f} GiB), median of {args.repeat}, loopback, "
          f"{os.cpu_count()} CPUs")
    print(f"sealdrop send + receive: {s:.2f} s ({gib / s:.2f} GiB/s) "
          f"[send {median([p.seconds for p in sends]):.2f} s, "
          f"receive {median([p.seconds for p in receives]):.2f} s]")
    ok = True
    if theirs:
        w = median(theirs)
        ratio = w / s
        ok = ratio >= 1.0
        print(f"magic-wormhole send | receive: {w:.2f} s ({gib / w:.2f} GiB/s)  "
              f"ratio {ratio:.2f}x (target >= 1.0)")
    # Why this line: sealdrop fsyncs the file twice on the way (the relay before
    # `send` returns, the lab before `receive` acks); magic-wormhole's receiver
    # writes it to the page cache and never fsyncs. On a slow disk that alone
    # bounds the ratio, whatever the code does.
    floor = 2 * median(disk)
    print(f"the disk: a durable copy of the file (dd conv=fsync) takes {median(disk):.2f} s; "
          f"sealdrop writes it durably twice, so the disk alone makes {floor:.2f} s its floor"
          + (f" (ratio at most {median(theirs) / floor:.2f}x)" if theirs else ""))
    print("CPU per GiB (user + system): "
          f"send client {per_gib([p.user for p in sends])} + "
          f"{per_gib([p.system for p in sends])} s, "
          f"receive client {per_gib([p.user for p in receives])} + "
          f"{per_gib([p.system for p in receives])} s, "
          f"relay ingest {per_gib(ingest)} s (target <= 1.5), relay serve {per_gib(serve)} s")
    send_mb = max(p.max_rss_mb for p in sends)
    recv_mb = max(p.max_rss_mb for p in receives)
    print(f"peak RSS: send client {send_mb:.0f} MB, receive client {recv_mb:.0f} MB, "
          f"relay {relay_mb:.0f} MB (target < 150 MB each)"
          + (f"; magic-wormhole {wh_mb:.0f} MB" if theirs else ""))
    # The rounds use profiles sealed at scrypt 2^12 so that they time the transfer.
    # A profile made with the defaults (2^18, as age) pays this on every command:
    # shown, and counted into a second ratio, so nobody mistakes one for the other.
    extra = unlock.seconds - low.seconds
    print(f"identity unlock at the default work factor (scrypt 2^18): +{extra:.2f} s and "
          f"+{unlock.user + unlock.system - low.user - low.system:.2f} CPU-s per command, "
          f"peak RSS {unlock.max_rss_mb:.0f} MB (2^12: {low.max_rss_mb:.0f} MB); "
          "send and receive each pay it, watch and desk once per start")
    if theirs:
        print(f"with two default unlocks: sealdrop {s + 2 * extra:.2f} s, "
              f"ratio {median(theirs) / (s + 2 * extra):.2f}x")
    ok = (ok and median(ingest) / gib <= 1.5 and max(send_mb, recv_mb, relay_mb) < 150)
    print("all targets met" if ok else "a target was missed")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
