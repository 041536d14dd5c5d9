"""Benchmark `sealdrop age` against the `age` CLI on the same file, same run.

Throughput ratio = age's time / sealdrop's time (higher is better for us).
Targets (PRODUCT.md / issue 3): ratio >= 1.3 for encrypt and for decrypt,
peak RSS < 100 MB. Output goes to /dev/null so the disk does not dominate.
Also printed: each contender's least CPU-seconds (user + sys, wait4's
rusage), which hold up on a busy machine where the times do not. sealdrop's
modules are byte-compiled first, as an installed wheel has them: with
PYTHONDONTWRITEBYTECODE set (as in CI) an editable checkout otherwise
compiles them again on every run, a tenth of a second of each.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchutil import best, make_random_file, parse_size, run, warm  # noqa: E402
from e2ekit import compile_tree  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="1G", help="file size (default 1G)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender; best is kept")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    age = shutil.which("age")
    keygen = shutil.which("age-keygen")
    sealdrop = shutil.which("sealdrop")
    if not (age and keygen and sealdrop):
        print("needs `age`, `age-keygen` (apt-get install age) and sealdrop on PATH")
        return 2
    size = parse_size(args.size)
    compile_tree()
    with tempfile.TemporaryDirectory(prefix="sealdrop-bench-") as tmp:
        d = Path(tmp)
        plain, key, ct = d / "plain.bin", d / "key.txt", d / "plain.age"
        make_random_file(plain, size)
        subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
        rcpt = subprocess.run([keygen, "-y", str(key)], check=True, capture_output=True,
                              text=True).stdout.strip()
        subprocess.run([age, "-r", rcpt, "-o", str(ct), str(plain)], check=True)
        warm(plain)
        warm(ct)
        jobs = {
            ("encrypt", "age"): [age, "-r", rcpt, str(plain)],
            ("encrypt", "sealdrop"): [sealdrop, "age", "-r", rcpt, str(plain)],
            ("decrypt", "age"): [age, "-d", "-i", str(key), str(ct)],
            ("decrypt", "sealdrop"): [sealdrop, "age", "-d", "-i", str(key), str(ct)],
        }
        results = {}
        for _ in range(args.repeat):  # interleave so drift hits both alike
            for name, cmd in jobs.items():
                results.setdefault(name, []).append(run(cmd))
    gib = size / (1 << 30)
    ok = True
    print(f"file: {size} bytes ({gib:.2f} GiB), best of {args.repeat}, output to /dev/null")
    for op in ("encrypt", "decrypt"):
        a, s = best(results[(op, "age")]), best(results[(op, "sealdrop")])
        ratio = a.seconds / s.seconds
        a_cpu = min(results[(op, "age")], key=lambda r: r.cpu_s)
        s_cpu = min(results[(op, "sealdrop")], key=lambda r: r.cpu_s)
        print(f"{op}: age {a.seconds:.3f} s ({gib / a.seconds:.2f} GiB/s, {a.max_rss_mb:.0f} MB)"
              f" | sealdrop {s.seconds:.3f} s ({gib / s.seconds:.2f} GiB/s,"
              f" {s.max_rss_mb:.0f} MB) | ratio {ratio:.2f}x (target >= 1.30)"
              f" | RSS target < 100 MB: {'ok' if s.max_rss_mb < 100 else 'MISSED'}")
        print(f"  CPU (user + sys): age {a_cpu.cpu_s:.2f} s ({a_cpu.user_s:.2f} + "
              f"{a_cpu.sys_s:.2f}) | sealdrop {s_cpu.cpu_s:.2f} s ({s_cpu.user_s:.2f} + "
              f"{s_cpu.sys_s:.2f}), with both cores")
        ok &= ratio >= 1.3 and s.max_rss_mb < 100
    print("all targets met" if ok else "a target was missed")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
