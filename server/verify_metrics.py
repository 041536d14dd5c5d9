"""What ``verify --repair`` removed, as a Prometheus text file.

``verify`` runs as its own short process (a timer), so it has no /metrics of
its own to count into. It writes ``DATA/verify.prom`` instead, in the text
exposition format that node_exporter's textfile collector reads (point its
``--collector.textfile.directory`` at a folder holding a link to it). The file
is replaced atomically: a scrape never sees half of it. It counts the last
repair run, by sender, problem and action; the timestamp says when.
"""

from __future__ import annotations

import os
from pathlib import Path

from .ops import VerifyReport

FILE_NAME = "verify.prom"
REMOVED = "sealdrop_verify_repair_removed"
LAST_RUN = "sealdrop_verify_repair_last_run_timestamp_seconds"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(report: VerifyReport, *, now: int) -> str:
    lines = [
        f"# HELP {REMOVED} Transfers and blobs the last verify --repair removed or cut.",
        f"# TYPE {REMOVED} gauge",
    ]
    for (sender, problem, action), n in sorted(report.removed_counts().items()):
        lines.append(
            f'{REMOVED}{{sender="{_label(sender)}",problem="{problem}",action="{action}"}} {n}'
        )
    lines += [
        f"# HELP {LAST_RUN} When verify --repair last finished (unix seconds).",
        f"# TYPE {LAST_RUN} gauge",
        f"{LAST_RUN} {now}",
    ]
    return "\n".join(lines) + "\n"


def write(data_dir: Path, report: VerifyReport, *, now: int) -> Path:
    path = Path(data_dir) / FILE_NAME
    tmp = path.with_name(FILE_NAME + ".tmp")
    tmp.write_text(render(report, now=now), "utf-8")
    os.replace(tmp, path)
    return path
