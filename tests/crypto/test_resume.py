"""Re-creating the exact same ciphertext from a saved ResumeState (resumable send)."""

from __future__ import annotations

import io
import os

import pytest

from sealdrop.crypto import age
from sealdrop.crypto.age.stream import CHUNK_SIZE


def _encrypt(
    data: bytes, recipients: list[age.Recipient], **kw: object
) -> tuple[bytes, age.ResumeState]:
    out = io.BytesIO()
    enc = age.Encryptor(out, recipients, **kw)  # type: ignore[arg-type]
    enc.write(data)
    enc.close()
    return out.getvalue(), enc.resume_state


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 7]
)
@pytest.mark.parametrize("pq", [False, True])
def test_resume_state_reproduces_ciphertext_exactly(size: int, pq: bool) -> None:
    ident = (
        age.HybridIdentity.generate(os.urandom) if pq else age.X25519Identity.generate(os.urandom)
    )
    data = os.urandom(size)
    first, state = _encrypt(data, [ident.recipient()])
    again, _ = _encrypt(data, [], resume=age.ResumeState.from_bytes(state.to_bytes()))
    assert again == first
    assert len(first) == age.Encryptor.ciphertext_size(len(state.header), size)
    out = io.BytesIO()
    age.decrypt(io.BytesIO(again), out, [ident])
    assert out.getvalue() == data


def test_changed_plaintext_changes_only_the_tail() -> None:
    ident = age.X25519Identity.generate(os.urandom)
    data = os.urandom(3 * CHUNK_SIZE)
    first, state = _encrypt(data, [ident.recipient()])
    changed = data[: 2 * CHUNK_SIZE] + bytes(CHUNK_SIZE)
    second, _ = _encrypt(changed, [], resume=state)
    prefix = len(state.header) + 16 + 2 * (CHUNK_SIZE + 16)
    # A resumed upload compares what it regenerates against what it sent:
    # the untouched prefix matches, the changed chunk does not.
    assert second[:prefix] == first[:prefix]
    assert second[prefix:] != first[prefix:]


def test_resume_state_hides_its_secret_in_repr() -> None:
    ident = age.X25519Identity.generate(os.urandom)
    _, state = _encrypt(b"x", [ident.recipient()])
    assert state.file_key.hex() not in repr(state)
    assert "secret" in repr(state)


def test_resume_state_rejects_malformed_bytes() -> None:
    with pytest.raises(age.RecipientError):
        age.ResumeState.from_bytes(b"short")
