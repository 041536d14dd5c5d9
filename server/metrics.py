"""Prometheus metrics in the text exposition format, written by hand.

Names carry the ``sealdrop_`` prefix and base units (bytes, seconds). Labels
are bounded sets (method, route template, status, reason); never a handle, a
transfer id or anything else per user.
"""

from __future__ import annotations

from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_HELP = {
    "sealdrop_http_requests_total": ("counter", "HTTP requests handled."),
    "sealdrop_http_request_duration_seconds": ("histogram", "Time to handle a request."),
    "sealdrop_upload_bytes_total": ("counter", "Ciphertext bytes committed by uploads."),
    "sealdrop_download_bytes_total": ("counter", "Ciphertext bytes sent to downloaders."),
    "sealdrop_transfers_created_total": ("counter", "Transfers created."),
    "sealdrop_transfers_completed_total": ("counter", "Transfers finalised."),
    "sealdrop_transfers_deleted_total": ("counter", "Transfers deleted, by reason."),
    "sealdrop_auth_failures_total": ("counter", "Rejected request signatures, by reason."),
    "sealdrop_rate_limited_total": ("counter", "Requests refused by the rate limiter."),
    "sealdrop_internal_errors_total": ("counter", "Unexpected errors answered with 500."),
}

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.hist: dict[str, dict[Labels, list[float]]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self.counters[name]
        series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self.hist[name]
        slots = series.get(key)
        if slots is None:
            slots = series[key] = [0.0] * (len(BUCKETS) + 2)  # buckets, count, sum
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                slots[i] += 1
        slots[-2] += 1
        slots[-1] += value

    def render(self, gauges: dict[str, tuple[str, dict[Labels, float]]]) -> str:
        lines: list[str] = []
        for name in sorted(set(self.counters) | set(_HELP)):
            kind, text = _HELP.get(name, ("counter", ""))
            if kind != "counter":
                continue
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
            for labels, value in sorted(self.counters.get(name, {}).items()):
                lines.append(f"{name}{_fmt_labels(labels)} {value:g}")
        for name in sorted(set(self.hist) | {n for n, (k, _) in _HELP.items() if k == "histogram"}):
            lines += [f"# HELP {name} {_HELP[name][1]}", f"# TYPE {name} histogram"]
            for labels, slots in sorted(self.hist.get(name, {}).items()):
                for i, bound in enumerate(BUCKETS):
                    lab = _fmt_labels(labels + (("le", f"{bound:g}"),))
                    lines.append(f"{name}_bucket{lab} {slots[i]:g}")
                lab = _fmt_labels(labels + (("le", "+Inf"),))
                lines.append(f"{name}_bucket{lab} {slots[-2]:g}")
                lines.append(f"{name}_count{_fmt_labels(labels)} {slots[-2]:g}")
                lines.append(f"{name}_sum{_fmt_labels(labels)} {slots[-1]:g}")
        for name, (text, series) in sorted(gauges.items()):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
            for labels, value in sorted(series.items()):
                lines.append(f"{name}{_fmt_labels(labels)} {value:g}")
        return "\n".join(lines) + "\n"
