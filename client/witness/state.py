"""The witness's memory: per log origin, the size and root it last cosigned.

One JSON file (``--state``)::

    {"v": 1, "logs": {"sealdrop.invalid/relay1": {"size": 42, "root": "<b64>"}}}

Why it is fsynced (file, then folder) before a cosignature leaves: a witness
that cosigned size 42 with root R, crashed before R reached the disk, and came
back remembering size 40 could then cosign a 42 with another root. Two
cosigned, diverging trees are exactly what a witness exists to prevent.

Why the whole process holds ``<state>.lock``: the check of the old size and
the write of the new one must be one step (C2SP tlog-witness's race between
two requests). Inside the process an asyncio lock serialises requests; the
flock keeps a second ``witness serve`` on the same file from interleaving.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import WitnessError
from ..outfile import atomic_output
from ..profile.filelock import lock_path


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    root: bytes


def load_state(path: Path) -> dict[str, Head]:
    """The cosigned heads by origin; an absent file is a witness that never cosigned."""
    try:
        obj = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # Never start afresh over a damaged file: that forgets what was cosigned.
        raise WitnessError(f"cannot read the witness state {path}: it is damaged ({exc})",
                           hint="restore it from a backup; never delete it") from exc
    try:
        if obj.get("v") != 1:
            raise ValueError("unknown version")
        heads = {}
        for origin, head in obj["logs"].items():
            size, root = head["size"], base64.b64decode(head["root"], validate=True)
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or len(root) != 32:
                raise ValueError(f"bad head for {origin}")
            heads[str(origin)] = Head(size, root)
        return heads
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise WitnessError(f"the witness state {path} is damaged: {exc}",
                           hint="restore it from a backup; never delete it") from exc


def save_state(path: Path, heads: Mapping[str, Head]) -> None:
    """Replace the file atomically and make the rename durable before returning."""
    path = Path(path)
    obj = {"v": 1, "logs": {origin: {"size": h.size, "root": base64.b64encode(h.root).decode()}
                            for origin, h in sorted(heads.items())}}
    try:
        with atomic_output(path, mode=0o600) as f:  # fsyncs the file before the rename
            f.write((json.dumps(obj, indent=1) + "\n").encode("utf-8"))
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename itself, or a crash could bring back the old file
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise WitnessError(f"cannot write the witness state {path}: {exc.strerror}") from exc


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``<state>.lock`` for the life of the witness, or refuse at once."""
    lock = lock_path(Path(path))
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise WitnessError(f"cannot open {lock}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WitnessError(f"another witness is already serving the state {path}",
                               hint="stop it first: two would race on what they cosigned"
                               ) from None
        yield
    finally:
        os.close(fd)
