"""Object storage: S3-compatible (Cloudflare R2, AWS, MinIO, moto) or a local folder."""

from genstack.core.storage.base import (
    MultipartHooks,
    ObjectInfo,
    Storage,
    StorageError,
    UploadInterruptedError,
    validate_key,
)
from genstack.core.storage.factory import storage_from_settings
from genstack.core.storage.local import LocalStorage
from genstack.core.storage.s3 import S3Storage

__all__ = [
    "LocalStorage",
    "MultipartHooks",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "StorageError",
    "UploadInterruptedError",
    "storage_from_settings",
    "validate_key",
]
