"""The transparency log's pure parts: Merkle proofs (RFC 9162), C2SP signed
notes, checkpoints, cosignatures, tiles and proof bundles, and sealdrop's log
entries. No I/O: the relay stores, the client fetches, both through these.

See docs/transparency.md for what is logged and what it proves.
"""
