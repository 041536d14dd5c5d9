"""Which blob store the configuration names: files in the data folder, or S3.

The S3 store is imported only when configured: aiobotocore costs every
``sealdrop-relay`` command start-up time that a files relay never needs.
"""

from __future__ import annotations

from .blobs import BlobStore, LocalBlobStore
from .config import RelayConfig


def blob_store(cfg: RelayConfig) -> BlobStore:
    """The relay's blob store, not yet opened (``BlobStore.open``)."""
    location = cfg.s3
    if location is None:
        return LocalBlobStore(cfg.blob_dir)
    from .s3blobs import S3BlobStore

    return S3BlobStore(location, timeout=cfg.s3_timeout_seconds)
