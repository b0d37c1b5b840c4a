"""The embedded default store: a local folder laid out exactly like a bucket.

Writes are atomic (temp file + rename) and re-read to confirm the sha256, so the same guarantees
hold as with S3's server-side checksums; create-only writes are a hard link, which fails when the
name exists, the local form of ``If-None-Match: *``. Object lock does not exist for plain folders.

Keys are never resolved through symbolic links: a bucket has none, and a link planted inside a
bundle must not make a read leave the store or a delete remove the link's target. Listing skips
links; reading, writing or deleting through one is refused.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.storage.objectstore import (
    DeleteOutcome,
    ObjectChangedError,
    ObjectExistsError,
    ObjectInfo,
    ObjectLock,
)
from invarlock_provider.storage.uri import StoreURI


class LocalFolderStore:
    def __init__(self, uri: StoreURI) -> None:
        self.uri = uri
        self.root = uri.root
        # The folder the URI names (root + prefix): checked for writes, never removed by deletes.
        self.folder = Path(uri.bucket, uri.prefix)

    def _path(self, key: str) -> Path:
        """The file a key names, built segment by segment below the root, no segment a link."""
        parts = key.split("/") if key else []
        if any(part in {"", ".", ".."} for part in parts):
            raise BadInputError(f"key {key!r} is not a plain path inside the store folder {self.root}")
        path = self.root.resolve()
        for part in parts:
            path = path / part
            if path.is_symlink():
                raise BadInputError(f"{self.uri.locate(key)}: {path} is a symbolic link; a store folder holds none")
        return path

    def check_writable(self, *, create: bool = True) -> None:
        """The store folder exists (created here unless ``create`` is false) and is writable.

        Without ``create`` a missing folder is judged by its nearest existing ancestor, where the first
        write would create it: ``invarlock doctor`` checks a store and must leave nothing behind.
        """
        if not create and not self.folder.is_dir():
            existing = next(p for p in (self.folder, *self.folder.absolute().parents) if p.exists())
            if not existing.is_dir():
                raise BadInputError(f"{self.uri}: cannot create store folder ({existing} is not a folder)")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise BadInputError(f"{self.uri}: cannot create store folder ({existing} is not writable)")
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"{self.uri}: cannot create store folder ({exc.strerror})") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise BadInputError(f"{self.uri}: store folder is not writable")

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
        if lock is not None:
            raise BadInputError(f"{self.uri}: a local folder has no object lock; drop --object-lock-days")
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{id(path):x}.tmp")
        shutil.copyfile(path, tmp)
        try:
            if sha256_file(tmp) != (sha256 or sha256_file(path)):
                raise InvarlockError(f"{self.uri.locate(key)}: checksum mismatch after copy")
            if if_absent:
                try:
                    os.link(tmp, target)  # fails when the target exists: the local form of If-None-Match
                except FileExistsError:
                    raise ObjectExistsError(f"{self.uri.locate(key)} already exists") from None
            elif if_match is not None:
                with _exclusive(target):
                    current = sha256_file(target) if target.is_file() else None
                    if current != if_match:
                        raise ObjectChangedError(f"{self.uri.locate(key)} changed since it was read")
                    os.replace(tmp, target)
            else:
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return self._info(key, path, with_digest=True)

    def _info(self, key: str, path: Path, *, with_digest: bool) -> ObjectInfo:
        status = path.stat()
        digest = sha256_file(path) if with_digest else None
        return ObjectInfo(
            key=key,
            size=status.st_size,
            last_modified=datetime.fromtimestamp(status.st_mtime, UTC),
            sha256=digest,
            etag=digest,
        )

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise BadInputError(f"{self.uri}: no object {key}")
        return path.read_bytes()

    def download(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(self._path(key), tmp)
        os.replace(tmp, target)

    def download_hashed(self, key: str, target: Path, size: int, etag: str | None) -> str:
        """Copied and hashed in one pass; a file whose size or digest is no longer the listed one was
        replaced meanwhile (a folder's etag is its sha256)."""
        import hashlib

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        digest = hashlib.sha256()
        source = self._path(key)
        try:
            with source.open("rb") as reader, tmp.open("wb") as writer:
                while chunk := reader.read(1 << 20):
                    digest.update(chunk)
                    writer.write(chunk)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise ObjectChangedError(f"{self.uri.locate(key)}: deleted while it was downloaded") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        copied = tmp.stat().st_size
        if copied != size or (etag is not None and digest.hexdigest() != etag):
            tmp.unlink(missing_ok=True)
            raise ObjectChangedError(f"{self.uri.locate(key)}: replaced while it was downloaded")
        os.replace(tmp, target)
        return digest.hexdigest()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every regular file below ``prefix``, in key order; links (to files or folders) are skipped."""
        root = self.root.resolve()  # _path resolves the root too: keys stay relative under a symlinked root
        base = self._path(prefix) if prefix else root
        if not base.is_dir():
            return
        found = []
        for folder, subfolders, files in os.walk(base, followlinks=False):
            subfolders[:] = [name for name in subfolders if not Path(folder, name).is_symlink()]
            for name in files:
                path = Path(folder, name)
                if name.startswith(".") or not stat.S_ISREG(path.lstat().st_mode):
                    continue
                found.append((path.relative_to(root).as_posix(), path))
        for key, path in sorted(found):
            yield self._info(key, path, with_digest=False)

    def children(self, prefix: str) -> list[str]:
        """As ``list`` sees them: hidden names and links left out."""
        base = self._path(prefix) if prefix else self.root.resolve()
        if not base.is_dir():
            return []
        with os.scandir(base) as entries:
            return sorted(
                entry.name
                for entry in entries
                if not entry.name.startswith(".") and not entry.is_symlink() and (entry.is_dir() or entry.is_file())
            )

    def delete(self, keys: list[str]) -> DeleteOutcome:
        outcome = DeleteOutcome()
        for key in keys:
            try:
                path = self._path(key)
                path.unlink(missing_ok=True)
                outcome.deleted.append(key)
            except (OSError, BadInputError) as exc:
                outcome.errors[key] = getattr(exc, "strerror", None) or str(exc)
                continue
            _remove_empty_parents(path.parent, self.folder)
        return outcome

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only while it still holds the bytes whose digest is ``etag``."""
        path = self._path(key)
        with _exclusive(path) as lock_file:
            if not path.is_file() or sha256_file(path) != etag:
                return False
            path.unlink()
            lock_file.unlink()  # a waiter holds the old file and finds the key gone; nothing is left behind
        _remove_empty_parents(path.parent, self.folder)
        return True

    def supports_object_lock(self) -> bool:
        return False

    def link(self, key: str, expires_s: int = 3600) -> str:
        return self._path(key).as_uri()


@contextmanager
def _exclusive(path: Path) -> Iterator[Path]:
    """One read-compare-write at a time per key, across processes on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = path.parent / f".{path.name}.lock"
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield lock_file
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_empty_parents(folder: Path, floor: Path) -> None:
    floor = floor.resolve()
    while folder != floor and floor in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
