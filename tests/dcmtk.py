"""dcmtk's programs, never pynetdicom's namesakes.

pynetdicom installs its own ``echoscu``, ``storescu`` and ``storescp`` into the
virtualenv's bin folder, which comes first on PATH when the tests run from
``scripts/test``: a bare ``shutil.which("echoscu")`` finds pynetdicom's, whose
options and messages differ. The tests that mean dcmtk look outside the venv.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

_VENV_BIN = Path(sys.executable).parent.resolve()


def dcmtk(name: str) -> str | None:
    """The path of dcmtk's ``name`` on PATH outside the virtualenv, or None."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and Path(d).resolve() != _VENV_BIN]
    return shutil.which(name, path=os.pathsep.join([*dirs, "/usr/bin"]))
