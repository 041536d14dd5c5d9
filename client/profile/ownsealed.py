"""Files of the profile encrypted to the user's own key (age, hybrid recipient).

What names patients or lets a send resume (the send record, the sender's
record of each case) is kept encrypted to the profile's own identity, so a
copied profile folder without the passphrase reveals none of it. One way to
write and read such a file, for every store that keeps one.
"""

from __future__ import annotations

import io
from pathlib import Path

from sealdrop.crypto import age
from sealdrop.crypto.identity import SecretIdentity

from ..outfile import atomic_output


def write_sealed(path: Path, plaintext: bytes, identity: SecretIdentity) -> None:
    """Encrypt ``plaintext`` to ``identity``'s own key and write it atomically (0600,
    its folder 0700). OSError is the caller's to word."""
    buf = io.BytesIO()
    with age.Encryptor(buf, [age.parse_recipient(identity.bundle.pq)]) as enc:
        enc.write(plaintext)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_output(path, mode=0o600) as f:
        f.write(buf.getvalue())


def read_sealed(path: Path, identity: SecretIdentity, max_bytes: int) -> bytes:
    """The plaintext of a file ``write_sealed`` wrote, at most ``max_bytes`` of it.
    Raises OSError or age.AgeError."""
    data = path.read_bytes()[:max_bytes]
    with age.Decryptor(io.BytesIO(data), identity.age_identities()) as dec:
        return dec.read(max_bytes)
