"""What the last ``verify`` found, and what the last ``verify --repair``
removed, as a Prometheus text file.

``verify`` runs as its own short process (a timer), so it has no /metrics of
its own to count into. It writes ``DATA/verify.prom`` instead, in the text
exposition format that node_exporter's textfile collector reads (point its
``--collector.textfile.directory`` at a folder holding a link to it). The file
is replaced atomically: a scrape never sees half of it.

Every run writes when it finished and what it found, so a stale timestamp
shows a verify that stopped running (the weekly timer runs it without
--repair). A --repair run also counts what it removed, by sender, problem and
action, with its own timestamp; a run without --repair keeps those lines of
the previous file, so they always describe the last repair.
"""

from __future__ import annotations

import os
from pathlib import Path

from .ops import VerifyReport

FILE_NAME = "verify.prom"
LAST_VERIFY = "sealdrop_verify_last_run_timestamp_seconds"
PROBLEMS = "sealdrop_verify_problems"
PAST_OFFSET = "sealdrop_verify_uploads_past_offset"
REMOVED = "sealdrop_verify_repair_removed"
LAST_RUN = "sealdrop_verify_repair_last_run_timestamp_seconds"
# Every name the file can hold (alert rules may use these: tests/server/test_alert_rules.py).
NAMES = (LAST_VERIFY, PROBLEMS, PAST_OFFSET, REMOVED, LAST_RUN)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _found(report: VerifyReport, *, now: int) -> list[str]:
    lines = [
        f"# HELP {LAST_VERIFY} When verify last finished, with or without --repair (unix seconds).",
        f"# TYPE {LAST_VERIFY} gauge",
        f"{LAST_VERIFY} {now}",
        f"# HELP {PROBLEMS} What the last verify found, by problem (before any repair).",
        f"# TYPE {PROBLEMS} gauge",
    ]
    # Each problem at zero too: an alert on it sees the first one.
    for problem, tids in (("tampered", report.tampered), ("missing", report.missing),
                          ("orphan", report.orphans)):
        lines.append(f'{PROBLEMS}{{problem="{problem}"}} {len(tids)}')
    return lines + [
        f"# HELP {PAST_OFFSET} Uploads holding bytes past their committed offset at the "
        "last verify (information: the next chunk or gc cuts them).",
        f"# TYPE {PAST_OFFSET} gauge",
        f"{PAST_OFFSET} {len(report.trailing)}",
    ]


def _repaired(report: VerifyReport, *, now: int) -> list[str]:
    lines = [
        f"# HELP {REMOVED} Transfers and blobs the last verify --repair removed.",
        f"# TYPE {REMOVED} gauge",
    ]
    for (sender, problem, action), n in sorted(report.removed_counts().items()):
        lines.append(
            f'{REMOVED}{{sender="{_label(sender)}",problem="{problem}",action="{action}"}} {n}'
        )
    return lines + [
        f"# HELP {LAST_RUN} When verify --repair last finished (unix seconds).",
        f"# TYPE {LAST_RUN} gauge",
        f"{LAST_RUN} {now}",
    ]


def _previous_repair(path: Path) -> list[str]:
    """The repair lines of the file a previous run wrote (none if there is none)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    names = (REMOVED, LAST_RUN)
    return [line for line in text.splitlines()
            if line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(names)]


def render(report: VerifyReport, *, now: int, previous_repair: list[str] | None = None) -> str:
    """The file's text. ``previous_repair``: the repair lines to keep when
    ``report`` is not a --repair run."""
    lines = _found(report, now=now)
    if report.repaired:
        lines += _repaired(report, now=now)
    else:
        lines += previous_repair or []
    return "\n".join(lines) + "\n"


def write(data_dir: Path, report: VerifyReport, *, now: int) -> Path:
    path = Path(data_dir) / FILE_NAME
    tmp = path.with_name(FILE_NAME + ".tmp")
    previous = [] if report.repaired else _previous_repair(path)
    tmp.write_text(render(report, now=now, previous_repair=previous), "utf-8")
    os.replace(tmp, path)
    return path
