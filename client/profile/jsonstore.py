"""Reading and writing the profile's small JSON stores, one way for all of them.

Each store (contacts, accepted manifest ids, receipts, refused transfers,
forwards) is one file ``{"v": 1, "<section>": {...}}`` of the profile folder,
written atomically with mode 0600 (``outfile.atomic_output``) by a caller
that holds the store's file lock (``filelock``). Reading is bounded: a store
that grew past its limit, or that is not JSON, not UTF-8 or not the expected
shape, is reported as damaged with the store's own error class, never
half-read. What a store does with a damaged file (refuse, or offer a hint to
delete it) stays with the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ClientError
from ..outfile import atomic_output


def read_section(path: Path, section: str, *, what: str, max_bytes: int,
                 error: type[ClientError] = ClientError, hint: str | None = None
                 ) -> dict[str, Any]:
    """The ``section`` object of the store at ``path`` (``{}`` if the file does not
    exist). Raises ``error`` naming ``what`` if it cannot be read or is damaged."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    obj: object = None
    if len(raw) <= max_bytes:
        try:
            obj = json.loads(raw)
        except ValueError:  # UnicodeDecodeError is a ValueError too
            obj = None
    body = obj.get(section) if isinstance(obj, dict) and obj.get("v") == 1 else None
    if not isinstance(body, dict):
        raise error(f"{what} {path} is damaged", hint=hint)
    return body


def write_section(path: Path, section: str, body: dict[str, Any], *, what: str,
                  error: type[ClientError] = ClientError, indent: int | None = None) -> None:
    """Replace the store at ``path`` with ``{"v": 1, section: body}``, atomically."""
    data = json.dumps({"v": 1, section: body}, indent=indent, sort_keys=True).encode() + b"\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with atomic_output(path, mode=0o600) as f:
            f.write(data)
    except OSError as exc:
        raise error(f"cannot write {what} {path}: {exc.strerror}") from exc
