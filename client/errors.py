"""The client's error root. Messages are one line a clinician can act on."""

from __future__ import annotations


class ClientError(Exception):
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint
