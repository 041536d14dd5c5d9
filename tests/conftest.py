"""Suite-wide guard: the code under test is imported only as `sealdrop.*`.

pytest puts the repository root on sys.path (the tests are packages), so a
stray `import crypto` or `from client import ...` in a test would load the
same source a second time under another name and pass on a checkout while the
installed wheel has no such module. Fail the run instead.
"""

from __future__ import annotations

import sys

import pytest

_ROOT_NAMES = ("crypto", "server", "client")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stray = sorted(n for n in sys.modules if n.split(".")[0] in _ROOT_NAMES)
    if stray:
        sys.stderr.write(
            "error: modules imported outside the sealdrop namespace: "
            + ", ".join(stray)
            + "\nhint: import them as sealdrop.crypto / sealdrop.server / sealdrop.client\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
