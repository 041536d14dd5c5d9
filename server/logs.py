"""Structured logs: one JSON object per line on stderr.

What is logged is decided at each call site, and the rule is narrow: event
names, route templates (never raw paths, which carry handles), status codes,
durations, byte counts and transfer ids. Never handles, request bodies, header
values, file names or anything else a client sent.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER_NAME = "sealdrop.relay"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages and tracebacks of unexpected
            # errors may quote data, so they stay out of the log.
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, separators=(",", ":"), default=str)


def setup_logging(level: str = "info", stream: Any = None) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    # aiohttp's own loggers: keep their errors, in the same format, without
    # access lines (those carry raw paths; our middleware logs route templates).
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.internal"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.addHandler(handler)
        lg.setLevel("WARNING")
        lg.propagate = False
    logging.getLogger("aiohttp.access").disabled = True
    return logger


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})


def now() -> float:
    return time.time()
