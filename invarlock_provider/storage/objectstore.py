"""The object-store interface the archive, fetch, ls, verify and prune commands are written against.

Two backends implement it: S3 (any S3-compatible endpoint) and a local folder. Keys are always
'/'-separated and relative to the store's bucket (S3) or root folder (local).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from invarlock_provider.errors import InvarlockError
from invarlock_provider.storage.uri import StoreURI


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    sha256: str | None = None
    locked_until: datetime | None = None
    etag: str | None = None  # what a conditional write or delete compares (S3 ETag; sha256 on a folder)
    version_id: str | None = None  # on a versioned bucket, from HEAD (a listing does not say)


LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


@dataclass(frozen=True)
class ObjectLock:
    mode: str
    retain_until: datetime


@dataclass
class DeleteOutcome:
    deleted: list[str] = field(default_factory=list)
    kept_locked: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class ObjectExistsError(InvarlockError):
    """A create-only write found the key already there (another writer committed first)."""


class ObjectChangedError(InvarlockError):
    """A conditional write found the key holding other bytes than the caller read (another writer)."""


class ObjectRetainedError(InvarlockError):
    """The store refused a delete: the object is under retention (Object Lock) or a legal hold."""


class ObjectStore(Protocol):
    uri: StoreURI

    def put_file(
        self,
        key: str,
        path: Path,
        sha256: str | None,
        lock: ObjectLock | None = None,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> None:
        """Upload a file and confirm its bytes arrived intact (server-side checksums or a re-read);
        ``sha256`` is the expected digest when the caller already knows it. ``if_absent`` makes the
        write create-only (S3 ``If-None-Match: *``), raising ObjectExistsError when the key exists;
        ``if_match`` replaces the object only while its etag is still that one (ObjectChangedError)."""

    def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or None when it does not exist."""

    def read_bytes(self, key: str) -> bytes: ...

    def download(self, key: str, target: Path) -> None: ...

    def download_hashed(self, key: str, target: Path, size: int, etag: str | None) -> str:
        """Download the ``size``-byte object as listed and return its sha256, computed while the
        bytes arrive (no second read of the file). Every read asks for ``etag``: an object replaced
        meanwhile raises ObjectChangedError instead of mixing two versions."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (paginated transparently)."""

    def children(self, prefix: str) -> list[str]:
        """The names one level below ``prefix``, folders and objects alike, sorted: S3's delimiter
        listing, which names a thousand bundles in one request without listing their files."""

    def delete(self, keys: list[str]) -> DeleteOutcome:
        """Delete permanently; objects still under retention are reported as kept."""

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only while its etag is ``etag``; False when it changed or is gone."""

    def supports_object_lock(self) -> bool: ...

    def link(self, key: str, expires_s: int = 3600) -> str:
        """A URL a person can open to read the object (presigned for S3)."""
