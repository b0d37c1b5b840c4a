"""Open the store a URI names."""

from __future__ import annotations

from invarlock_provider.storage.local import LocalFolderStore
from invarlock_provider.storage.objectstore import ObjectStore
from invarlock_provider.storage.s3 import S3Settings, S3Store
from invarlock_provider.storage.uri import StoreURI, parse_store_uri


def open_store(uri: str | StoreURI, settings: S3Settings | None = None) -> ObjectStore:
    parsed = parse_store_uri(uri) if isinstance(uri, str) else uri
    if parsed.scheme == "file":
        return LocalFolderStore(parsed)
    return S3Store(parsed, settings)


def check_store(store: ObjectStore) -> None:
    """Fail early, before any local state changes, when the store is unusable."""
    if isinstance(store, S3Store):
        store.check_access()
    elif isinstance(store, LocalFolderStore):
        store.check_writable()
