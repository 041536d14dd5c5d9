"""The client's error root. Messages are one line a clinician can act on."""

from __future__ import annotations


class ClientError(Exception):
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class IdentityError(ClientError):
    """No identity, or the identity file cannot be read or is damaged."""


class WrongPassphraseError(IdentityError):
    """The passphrase does not open the identity file."""


class ContactError(ClientError):
    """A contact is unknown, malformed, or its safety number does not match."""


class UnknownContactError(ContactError):
    """No contact with that handle (or that key) is pinned."""


class ContactKeyChangedError(ContactError):
    """A pinned contact presented a different signing key. Refused until re-verified."""


class UnverifiedContactError(ContactError):
    """The contact's safety number was never compared, and no override was given."""


class SafetyNumberMismatchError(ContactError):
    """The safety number given does not belong to the contact's key."""


class ReplayError(ClientError):
    """This manifest id was accepted before: the transfer is a replay."""


class ReceiveError(ClientError):
    """A transfer was refused on receipt (not a recipient, name collision, I/O)."""


class NotAddressedError(ReceiveError):
    """The transfer is not for this profile: no key of ours opens it, or the sender
    did not sign us in as a recipient. Never worth keeping or retrying."""


class SealError(ClientError):
    """A transfer could not be sealed (unreadable or unsupported source file)."""


class FilesChangedError(ClientError):
    """The files changed since an interrupted send started: it cannot be resumed."""


class WitnessError(ClientError):
    """`sealdrop witness` cannot start or keep its state (key file, state file, address)."""


class CosignatureError(ClientError):
    """The relay's checkpoint lacks the witness cosignatures this profile requires."""


class SplitViewError(ClientError):
    """Two checkpoints of one log, both signed by the relay, that no one history explains."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a transfer that the same command resumes.

    A KeyboardInterrupt, so everything that cleans up on one still does; the
    CLI prints ``sealdrop: interrupted: <message>`` and exits 130.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def join_hints(first: str | None, then: str) -> str:
    """Two hint sentences as one: "Is the relay running? Your upload is safe: …"."""
    if not first:
        return then
    first = first.rstrip()
    return f"{first} {then}" if first.endswith((".", "?", "!")) else f"{first}. {then}"
