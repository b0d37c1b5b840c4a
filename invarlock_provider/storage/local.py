"""The embedded default store: a local folder laid out exactly like a bucket.

Writes are atomic (temp file + rename) and re-read to confirm the sha256, so the same guarantees
hold as with S3's server-side checksums. Object lock does not exist for plain folders.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.storage.objectstore import DeleteOutcome, ObjectExistsError, ObjectInfo, ObjectLock
from invarlock_provider.storage.uri import StoreURI


class LocalFolderStore:
    def __init__(self, uri: StoreURI) -> None:
        self.uri = uri
        self.root = uri.root
        # The folder the URI names (root + prefix): checked for writes, never removed by deletes.
        self.folder = Path(uri.bucket, uri.prefix)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root.resolve() and self.root.resolve() not in path.parents:
            raise BadInputError(f"key {key!r} escapes the store folder {self.root}")
        return path

    def check_writable(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"{self.uri}: cannot create store folder ({exc.strerror})") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise BadInputError(f"{self.uri}: store folder is not writable")

    def put_file(
        self, key: str, path: Path, sha256: str | None, lock: ObjectLock | None = None, *, if_absent: bool = False
    ) -> None:
        if lock is not None:
            raise BadInputError(f"{self.uri}: a local folder has no object lock; drop --object-lock-days")
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        if sha256_file(tmp) != (sha256 or sha256_file(path)):
            tmp.unlink(missing_ok=True)
            raise InvarlockError(f"{self.uri.locate(key)}: checksum mismatch after copy")
        if not if_absent:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)  # fails when the target exists: the local form of If-None-Match
        except FileExistsError:
            raise ObjectExistsError(f"{self.uri.locate(key)} already exists") from None
        finally:
            tmp.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return self._info(key, path, with_digest=True)

    def _info(self, key: str, path: Path, *, with_digest: bool) -> ObjectInfo:
        stat = path.stat()
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            sha256=sha256_file(path) if with_digest else None,
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

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        root = self.root.resolve()  # _path resolves too: keys stay relative even under a symlinked root
        base = self._path(prefix) if prefix else root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(root).as_posix()
                yield self._info(key, path, with_digest=False)

    def delete(self, keys: list[str]) -> DeleteOutcome:
        outcome = DeleteOutcome()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
                outcome.deleted.append(key)
            except OSError as exc:
                outcome.errors[key] = exc.strerror or str(exc)
            _remove_empty_parents(path.parent, self.folder)
        return outcome

    def supports_object_lock(self) -> bool:
        return False

    def link(self, key: str, expires_s: int = 3600) -> str:
        return self._path(key).as_uri()


def _remove_empty_parents(folder: Path, floor: Path) -> None:
    floor = floor.resolve()
    folder = folder.resolve()
    while folder != floor and floor in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
