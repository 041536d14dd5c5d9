"""The download spool: the ciphertext of transfers being received, per relay id.

Only ciphertext is ever spooled: it may sit on disk while a download is
interrupted, and a new run continues from its length. The spool is a cache,
not a promise, so it is not fsynced: if a power loss leaves garbage in its
tail, decryption refuses the transfer, the entry is dropped and the next run
downloads afresh.
"""

from __future__ import annotations

from pathlib import Path

from .layout import SPOOL_DIR, spool_file


class Spool:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    def path(self, relay_id: str) -> Path:
        """The spool file of ``relay_id``; its folder is created (mode 0700)."""
        path = spool_file(self.home, relay_id)
        (self.home / SPOOL_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def held(self, relay_id: str, size: int) -> int:
        """Bytes already spooled for ``relay_id``; an entry longer than ``size`` is dropped."""
        path = self.path(relay_id)
        have = path.stat().st_size if path.exists() else 0
        if have > size:
            path.unlink()
            have = 0
        return have

    def drop(self, relay_id: str) -> None:
        spool_file(self.home, relay_id).unlink(missing_ok=True)
