"""The relay's peak RSS on SQLite + SeaweedFS (S3) while it ingests and serves
one large send: issue 14 asks for flat memory in S3 mode (a part streamed into
UploadPart, never held whole). Prints the relay's VmHWM after start, after the
send and after the receive, and each step's wall time.

    .venv/bin/python scripts/lib/s3_rss.py [--mib 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _hwm(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return " ".join(line.split()[1:])
    return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="size of the file sent")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.e2e.kit import Relay, User
    from tests.s3kit import AWS_ENV, Seaweed

    os.environ.update(AWS_ENV)
    tmp = Path(tempfile.mkdtemp(prefix="sealdrop-s3-rss-", dir="/var/tmp"))
    (tmp / "weed").mkdir()
    weed = Seaweed(tmp / "weed")
    weed.start()
    try:
        data = tmp / "relay"
        data.mkdir()
        (data / "relay.toml").write_text(
            f's3_endpoint = "{weed.endpoint}"\nblobs = "s3://{weed.new_bucket()}/relay"\n')
        relay = Relay(data, tmp / "relay.log")
        relay.env.update(AWS_ENV)
        relay.start()
        assert relay.proc is not None
        pid = relay.proc.pid
        practice, lab = User(tmp, "cabinet-martin", relay), User(tmp, "labo", relay)
        for u in (practice, lab):
            u.init()
        practice.trust(lab)
        lab.trust(practice)
        case = tmp / "case"
        case.mkdir()
        with (case / "cbct.bin").open("wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        print(f"relay after start: peak RSS {_hwm(pid)}")
        t0 = time.monotonic()
        tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
        t1 = time.monotonic()
        print(f"send {args.mib} MiB: {t1 - t0:.1f} s; relay peak RSS {_hwm(pid)}")
        dest = tmp / "in"
        dest.mkdir()
        lab.run("receive", "--into", str(dest), "--", tid, timeout=1800)
        print(f"receive: {time.monotonic() - t1:.1f} s; relay peak RSS {_hwm(pid)}")
        relay.close()
    finally:
        weed.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
