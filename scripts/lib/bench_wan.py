"""Benchmark `sealdrop send` against `curl -T` over a clinic's uplink: 50 Mbit/s.

The script makes a network namespace whose loopback is the link (MTU 1500, a
``tbf`` qdisc at ``--rate``, and ``--rtt`` of ``netem`` delay, half each way),
and runs in it a relay (SQLite + files) with two profiles and a plain
unencrypted PUT endpoint. The same random file (``--size``, 256 MiB by
default) goes up both ways, alternately, ``--repeat`` times:

    sealdrop send FILE --to lab    vs    curl -T FILE http://127.0.0.1:P/f

Ratio = curl's time / sealdrop's (target >= 0.95: over a slow link sealdrop
must keep the pipe full). Needs root (``ip netns``, ``tc``); without it the
script says so and exits 2. The namespace is deleted on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchutil import make_random_file, parse_size, warm  # noqa: E402
from e2ekit import (  # noqa: E402
    LoopbackRelay,
    Proc,
    compile_tree,
    cpu_seconds,
    free_port,
    measure,
    median,
    wait_for,
)


def _chunk_requests(log: Path) -> list[dict[str, float]]:
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "request" and str(rec.get("route", "")).endswith("/data") \
                and rec.get("method") == "PATCH":
            out.append(rec)
    return out


def upload_answers(log: Path) -> collections.Counter[int]:
    """The relay's answers to chunk uploads, by status, from its request log: a
    409 is a chunk sent again in full, which a slow link pays for."""
    return collections.Counter(int(r.get("status", 0)) for r in _chunk_requests(log))


def idle_ends(log: Path, start: float, end: float) -> tuple[float, float]:
    """Seconds of a send (wall clock ``start`` to ``end``) before the relay began
    its first chunk upload, and after it answered the last one: the link carries
    no file there (start-up, key refresh, create, card; complete)."""
    rs = [r for r in _chunk_requests(log) if start <= float(r["ts"]) <= end]
    if not rs:
        return 0.0, 0.0
    first = min(float(r["ts"]) - float(r.get("duration_s", 0)) for r in rs)
    last = max(float(r["ts"]) for r in rs)
    return first - start, end - last


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


class Namespace:
    """A network namespace whose loopback is a slow link; deleted by close()."""

    def __init__(self, rate: str, rtt_ms: float) -> None:
        self.name = f"sealdrop-wan-{os.getpid()}"
        sh("ip", "netns", "add", self.name)
        self.prefix = ["ip", "netns", "exec", self.name]
        try:
            # A real uplink's MTU (tbf also drops any packet larger than its burst).
            sh("ip", "-n", self.name, "link", "set", "lo", "mtu", "1500")
            sh("ip", "-n", self.name, "link", "set", "lo", "up")
            tc = [*self.prefix, "tc", "qdisc", "add", "dev", "lo"]
            self.rtt_ms = rtt_ms
            if rtt_ms > 0:
                # Both directions cross lo: half the round trip each way. netem is
                # a kernel module some machines lack: then the link has no delay.
                try:
                    sh(*tc, "root", "handle", "1:", "netem", "delay", f"{rtt_ms / 2:g}ms",
                       "limit", "100000")
                except subprocess.CalledProcessError:
                    print("note: tc netem is not available here; the link has no added "
                          "delay", file=sys.stderr)
                    self.rtt_ms = 0
            if self.rtt_ms > 0:
                sh(*tc, "parent", "1:", "handle", "2:", "tbf", "rate", rate, "burst",
                   "32kbit", "latency", "50ms")
            else:
                sh(*tc, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "50ms")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="256M", help="file size (default 256M)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds per contender (default 1)")
    ap.add_argument("--rate", default="50mbit", help="link rate for tc tbf (default 50mbit)")
    ap.add_argument("--rtt", type=float, default=20.0,
                    help="round-trip time in ms added with netem (default 20; 0: none)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_wan needs root: it creates a network namespace and a tc qdisc "
              "(run it as root, e.g. with sudo)", file=sys.stderr)
        return 2
    missing = [t for t in ("ip", "tc", "curl") if shutil.which(t) is None]
    if missing:
        print(f"bench_wan needs {', '.join(missing)} on PATH (Debian: iproute2, curl)",
              file=sys.stderr)
        return 2
    size = parse_size(args.size)
    compile_tree()
    # SIGTERM too must reach the finally blocks that delete the namespace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ns = Namespace(args.rate, args.rtt)
    ours: list[Proc] = []
    theirs: list[Proc] = []
    relay_cpu: list[float] = []
    answers: collections.Counter[int] = collections.Counter()
    windows: list[tuple[float, float]] = []
    idle: list[tuple[float, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="sealdrop-wan-") as tmp:
            d = Path(tmp)
            relay = LoopbackRelay(d, size, prefix=ns.prefix)
            plain_root = d / "plain"
            plain_root.mkdir()
            port = free_port()
            log_path = d / "plain.log"
            with open(log_path, "wb") as log:
                plain = subprocess.Popen(
                    [*ns.prefix, sys.executable, str(Path(__file__).with_name("plainput.py")),
                     str(port), str(plain_root)], stdout=log, stderr=log)
            try:
                wait_for(log_path, b"listening", plain, "the plain PUT endpoint")
                src = d / "payload.bin"
                print(f"making a {size}-byte random file…", flush=True)
                make_random_file(src, size)
                warm(src)
                url = f"http://127.0.0.1:{port}/payload.bin"
                for i in range(args.repeat):
                    c0 = cpu_seconds(relay.pid)
                    t0 = time.time()
                    sent, _ = relay.send(src, d / f"send-{i}.json")
                    windows.append((t0, time.time()))
                    relay_cpu.append(cpu_seconds(relay.pid) - c0)
                    ours.append(sent)
                    theirs.append(measure(["curl", "-sS", "-f", "-T", str(src), url],
                                          prefix=ns.prefix))
                    (plain_root / "payload.bin").unlink()
                    print(f"round {i + 1}: sealdrop {sent.seconds:.1f} s, "
                          f"curl -T {theirs[-1].seconds:.1f} s", flush=True)
            finally:
                plain.terminate()
                plain.wait(30)
                relay.close()
                answers = upload_answers(d / "relay.log")
                idle = [idle_ends(d / "relay.log", a, b) for a, b in windows]
    finally:
        ns.close()
    s = median([p.seconds for p in ours])
    c = median([p.seconds for p in theirs])
    mbit = size * 8 / 1e6
    ratio = c / s
    print(f"file: {size} bytes, median of {args.repeat}, link {args.rate}, "
          f"added RTT {ns.rtt_ms:g} ms, MTU 1500")
    print(f"sealdrop send {s:.1f} s ({mbit / s:.1f} Mbit/s), curl -T {c:.1f} s "
          f"({mbit / c:.1f} Mbit/s): ratio {ratio:.3f}x (target >= 0.950)")
    gib = size / (1 << 30)
    print(f"CPU per GiB: send client {median([p.cpu for p in ours]) / gib:.2f} s, "
          f"relay {median(relay_cpu) / gib:.2f} s; peak RSS: send client "
          f"{max(p.max_rss_mb for p in ours):.0f} MB")
    shown = ", ".join(f"{n} x {status}" for status, n in sorted(answers.items()))
    print(f"chunk uploads answered: {shown or 'none logged'} (a 409 is a chunk sent twice)")
    if idle:
        print(f"link idle in a send (median): {median([a for a, _ in idle]):.2f} s before "
              f"the first chunk upload began, {median([b for _, b in idle]):.2f} s after the "
              "last was answered")
    ok = ratio >= 0.95
    print("target met" if ok else "target missed")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
