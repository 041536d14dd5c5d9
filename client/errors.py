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


class LogVerificationError(ClientError):
    """The relay's transparency log does not check out (docs/transparency.md).

    Never a warning: the command stops, says what the relay did wrong, and
    exits with the subclass's own ``exit_status`` so a script or a monitoring
    tool can tell one refusal from another (the table is in
    docs/transparency.md, "What the client checks").
    """

    exit_status = 20


class LogUnavailableError(LogVerificationError):
    """The pinned relay no longer serves its log, or serves one this client cannot read."""

    exit_status = 21


class LogSignatureError(LogVerificationError):
    """The checkpoint is not signed by the log key pinned at init, or names another log."""

    exit_status = 22


class LogRollbackError(LogVerificationError):
    """The relay shows a smaller log than one this profile verified before."""

    exit_status = 23


class LogForkError(LogVerificationError):
    """The new checkpoint does not extend the one verified before: history was rewritten."""

    exit_status = 24


class LogInclusionError(LogVerificationError):
    """A key bundle or a transfer the relay serves is not (exactly) in its log."""

    exit_status = 25


class ForeignOwnKeyError(LogVerificationError):
    """The log holds a key for this profile's own handle that this profile never made."""

    exit_status = 26


class LoggedKeyChangeError(LogVerificationError):
    """The log holds a new signing key for a pinned contact: a key change to check by phone."""

    exit_status = 27


class ForgedReceiptError(LogVerificationError):
    """A signed receipt the relay shows does not verify with the recipient's pinned key,
    or is not in the log."""

    exit_status = 28


class CosignatureError(LogVerificationError):
    """The relay's checkpoint lacks the witness cosignatures this profile requires
    (``sealdrop config require-cosignatures``): not stored, nothing sent."""

    exit_status = 29


class SplitViewError(LogVerificationError):
    """Two checkpoints of one log, both signed by the relay, that no one history explains."""

    exit_status = 30
