"""Pick the storage backend from settings."""

from __future__ import annotations

from genstack.core.settings import StorageSettings
from genstack.core.storage.base import Storage
from genstack.core.storage.local import LocalStorage
from genstack.core.storage.s3 import MiB, S3Storage


def storage_from_settings(settings: StorageSettings, *, parallel_files: int = 1) -> Storage:
    """``parallel_files``: how many uploads run at once (sizes the connection pool)."""
    if settings.storage_backend() == "local":
        return LocalStorage(
            settings.storage_dir, multipart_threshold=settings.r2_multipart_threshold_mb * MiB
        )
    assert settings.r2_access_key_id is not None
    assert settings.r2_secret_access_key is not None
    return S3Storage(
        endpoint_url=settings.r2_endpoint,
        bucket=settings.r2_bucket,
        access_key_id=settings.r2_access_key_id.get_secret_value(),
        secret_access_key=settings.r2_secret_access_key.get_secret_value(),
        region=settings.r2_region,
        addressing_style=settings.r2_addressing_style,
        part_size=settings.r2_part_size_mb * MiB,
        multipart_threshold=settings.r2_multipart_threshold_mb * MiB,
        concurrency=settings.r2_concurrency,
        max_attempts=settings.r2_max_attempts,
        pool_size=settings.r2_concurrency * parallel_files + 2,
        connect_timeout=settings.r2_connect_timeout_s,
        read_timeout=settings.r2_read_timeout_s,
    )
