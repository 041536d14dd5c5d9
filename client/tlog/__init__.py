"""The client's checks of the relay's transparency log (docs/transparency.md).

``logclient.LogClient`` follows the log as each command runs (consistency
from the last checkpoint this profile verified, a scan of the new entries),
and checks the inclusion of every key bundle and transfer the client relies
on; ``receipts`` signs this profile's receipts and verifies the ones the
relay shows a sender. The proofs themselves are ``sealdrop.crypto.tlog``'s.
"""
