"""deploy/prometheus/sealdrop-alerts.yml: valid rules that watch what the relay
really exports, for every alert docs/operations.md promises."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sealdrop.server import metrics, verify_metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "sealdrop-alerts.yml"

# What each alert is for (the list) -> the alert that covers it.
PROMISED = {
    "internal errors": "SealdropInternalErrors",
    "5xx ratio": "SealdropHigh5xxRatio",
    "507s": "SealdropStorageFull",
    "clock drift": "SealdropClockDrift",
    "failed gc, backup or verify": "SealdropUnitFailed",
    "timers that stopped": "SealdropTimerLate",
    "a verify that stopped finishing": "SealdropVerifyStale",
    "database reachability": "SealdropDatabaseUnreachable",
    "certificate expiry": "SealdropCertificateExpiresSoon",
    "scrape failures": "SealdropScrapeFailing",
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    assert isinstance(doc, dict) and isinstance(doc["groups"], list)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _exported() -> set[str]:
    names = set(metrics.COUNTERS) | set(metrics.GAUGES)
    for name in metrics.HISTOGRAMS:
        names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    # verify runs as its own short process, not behind /metrics: its series come
    # from the file it writes (DATA/verify.prom) through node_exporter's textfile
    # collector, so they are the relay's too.
    return names | set(verify_metrics.NAMES)


def test_every_promised_alert_is_there_and_well_formed() -> None:
    rules = _rules()
    by_name = {r["alert"]: r for r in rules}
    assert len(by_name) == len(rules), "alert names are unique"
    missing = {why: name for why, name in PROMISED.items() if name not in by_name}
    assert missing == {}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"].strip()
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]


def test_rules_name_only_metrics_the_relay_exports() -> None:
    exported = _exported()
    used = {m for r in _rules() for m in re.findall(r"\bsealdrop_[a-z_]+", r["expr"])}
    assert used and used <= exported, used - exported


def test_rules_watch_label_values_that_exist_from_the_start() -> None:
    """A status or reason an alert matches must be one the relay exports at zero,
    or the alert misses the first event (rate() needs a previous sample)."""
    exprs = " ".join(r["expr"] for r in _rules())
    for status in re.findall(r'status="(\d+)"', exprs):
        assert status in metrics.WATCHED_STATUSES, status
    for reason in re.findall(r'reason="([a-z_]+)"', exprs):
        assert reason in metrics.AUTH_FAILURE_REASONS + metrics.DELETE_REASONS, reason


def test_unit_names_match_deploy() -> None:
    # a template unit is named by its instances: sealdrop-relay@8781.service
    units = {p.name.replace("@.", "@8781.")
             for p in (ROOT / "deploy").glob("sealdrop-relay*.service")}
    failed = next(r for r in _rules() if r["alert"] == "SealdropUnitFailed")
    pattern = re.search(r'name=~"([^"]+)"', failed["expr"])
    assert pattern is not None
    regex = pattern.group(1).replace("\\\\", "\\")
    assert units and all(re.fullmatch(regex, u) for u in units), units
    assert "sealdrop-relay@8781.service" in units
    assert not re.fullmatch(regex, "sealdrop-relay@.service")  # the template never runs


def test_every_shipped_timer_is_watched_at_its_period() -> None:
    late = next(r for r in _rules() if r["alert"] == "SealdropTimerLate")["expr"]
    watched: dict[str, int] = {}
    for selector, days in re.findall(r'\{name=~?"([^"]+)"\}(?: > 0\))? > (\d+) \* 86400', late):
        regex = selector.replace("\\\\", "\\")
        for timer in (ROOT / "deploy").glob("*.timer"):
            if re.fullmatch(regex, timer.name):
                watched[timer.name] = int(days)
    # Longer than the period, or the alert fires between two runs on time.
    assert watched == {"sealdrop-relay-gc.timer": 2, "sealdrop-relay-backup.timer": 2,
                       "sealdrop-relay-verify.timer": 8}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
