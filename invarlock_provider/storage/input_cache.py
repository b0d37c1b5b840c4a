"""Model and data files read from an object store, kept in a worker-local cache keyed by content.

Tasks share nothing but the store, so a checkpoint a training job uploaded to a bucket must reach
whichever worker evaluates it. It is fetched here once per worker and then read from disk by every
later run; several tasks on one worker share the cache safely.

Layout under the cache folder (``INVARLOCK_INPUT_CACHE``, default ``~/.cache/invarlock/inputs``):

- ``blobs/<sha256>``: one read-only file per content, whatever key it came from;
- ``known/<identity>``: the sha256 an object version (store, key, size, ETag) was found to have, so
  an unchanged object is not downloaded again;
- ``entries/<digest>/``: one fetched prefix (or file) as a folder of hard links to its blobs, built
  beside and renamed into place whole, so no half-written entry is ever seen;
- ``entries/<digest>.lock``: held shared by every run that reads the entry; eviction deletes only
  entries it can lock exclusively without waiting;
- ``cache.lock``: held while blobs are placed, entries built, and the cache evicted;
- ``tmp/``: downloads in progress (what a killed fetch leaves there is removed by the next one).

Every download is checked: its size against the listing, its sha256 against the store's own
checksum where the store keeps one, and the object's ETag and size after the download against the
listing, so an object replaced while it was read (a checkpoint still being uploaded) is discarded
with one line, never cached. The cache is bounded (``INVARLOCK_INPUT_CACHE_GB``, least recently used
entries go first, blobs no entry uses with them).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from invarlock_provider.env_settings import positive_from_env
from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import canonical_json, sha256_bytes, write_bytes_atomic
from invarlock_provider.storage.objectstore import ObjectChangedError, ObjectInfo, ObjectStore
from invarlock_provider.strict_json import loads_object

CACHE_ENV = "INVARLOCK_INPUT_CACHE"
CACHE_LIMIT_ENV = "INVARLOCK_INPUT_CACHE_GB"
DEFAULT_LIMIT_GB = 200.0
DOWNLOADERS = 8  # checkpoint shards are large: a few parallel GETs fill a link, more only queue
TMP_MAX_AGE_S = 24 * 3600  # a download older than this is a killed fetch's leftover


class InputChangedError(BadInputError):
    """An object changed between its listing and the end of its download."""


@dataclass(frozen=True)
class FetchedObject:
    """One object of a fetched input, as recorded in the run's meta."""

    name: str
    size: int
    sha256: str
    version_id: str | None
    etag: str | None

    def as_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "etag": self.etag,
            "version_id": self.version_id,
        }


@dataclass
class StoredInput:
    """A fetched input: where it came from, where it is on this worker, and what it was made of.

    ``path`` stays readable while the entry's shared lock is held: until :meth:`release`, or until
    the process exits."""

    uri: str
    path: Path
    objects: list[FetchedObject]
    digest: str
    downloaded: int
    hold: IO[bytes] | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "digest": self.digest,
            "objects": [item.as_record() for item in self.objects],
        }

    def release(self) -> None:
        if self.hold is not None:
            self.hold.close()
            self.hold = None


def cache_folder() -> Path:
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "invarlock" / "inputs"


def cache_limit_bytes() -> int:
    return int(positive_from_env(CACHE_LIMIT_ENV, DEFAULT_LIMIT_GB, "a size in GiB") * 1024**3)


def input_digest(objects: list[FetchedObject]) -> str:
    """What an input is, by content: names and sha256s, never keys, ETags or dates."""
    return sha256_bytes(canonical_json(sorted([item.name, item.sha256] for item in objects)))


class InputCache:
    def __init__(self, root: Path | None = None, limit_bytes: int | None = None) -> None:
        self.root = root or cache_folder()
        self.limit = cache_limit_bytes() if limit_bytes is None else limit_bytes
        try:
            for name in ("blobs", "known", "entries", "tmp"):
                (self.root / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"input cache {self.root}: {exc.strerror or exc}; set {CACHE_ENV}") from None

    def fetch(
        self,
        store: ObjectStore,
        key: str,
        *,
        single_file: bool = False,
        check_names: Callable[[list[str]], None] | None = None,
    ) -> StoredInput:
        """The prefix ``key`` (every object below it; names with a hidden segment left out) or, with
        ``single_file``, the one object ``key``, as a local folder or file. ``check_names`` sees the
        listed names before anything is downloaded (a checkpoint without weights fails there)."""
        uri = store.uri.locate(key)
        listed = self._listing(store, key, uri, single_file)
        if check_names is not None:
            check_names(sorted(listed))
        self._clear_stale_downloads()
        for _ in range(3):  # a blob evicted by another worker between download and use: fetch it again
            missing = {name: info for name, info in listed.items() if self._known_blob(store, info) is None}
            self._download_all(store, uri, missing)
            with self._locked():
                blobs = {name: self._known_blob(store, info) for name, info in listed.items()}
                if any(blob is None for blob in blobs.values()):
                    continue
                objects = [FetchedObject(name, info.size, *blobs[name], info.etag) for name, info in listed.items()]
                digest = input_digest(objects)
                hold = self._hold(digest)
                entry = self._entry(digest, objects)
                self._evict()
            target = entry / next(iter(listed)) if single_file else entry
            return StoredInput(uri, target, sorted(objects, key=lambda o: o.name), digest, len(missing), hold)
        raise InvarlockError(f"{uri}: the input cache {self.root} kept losing its files while fetching; is it shared?")

    def _listing(self, store: ObjectStore, key: str, uri: str, single_file: bool) -> dict[str, ObjectInfo]:
        if single_file:
            info = store.head(key)
            if info is None:
                raise BadInputError(f"{uri}: no such object")
            return {PurePosixPath(key).name: info}
        base = f"{key.rstrip('/')}/"
        listed = {}
        for info in store.list(key.rstrip("/")):
            name = info.key[len(base) :]
            parts = PurePosixPath(name).parts
            if not name or any(part.startswith(".") for part in parts):
                continue
            listed[name] = info
        if not listed:
            raise BadInputError(f"{uri}: no objects under this prefix")
        return dict(sorted(listed.items()))

    def _identity(self, store: ObjectStore, info: ObjectInfo) -> Path:
        """An object version's record: content cannot change under one ETag and size, so the sha256
        found once for them holds; without an ETag (a local folder) the object is read every time."""
        text = f"{store.uri}\n{info.key}\n{info.size}\n{info.etag}"
        return self.root / "known" / hashlib.sha256(text.encode()).hexdigest()

    def _known_blob(self, store: ObjectStore, info: ObjectInfo) -> tuple[str, str | None] | None:
        """(sha256, version id) of an object version already in the cache; None to download it."""
        if info.etag is None:
            return None
        try:
            record = loads_object(self._identity(store, info).read_bytes(), "input cache record")
        except (OSError, InvarlockError):
            return None
        digest, version = record.get("sha256"), record.get("version_id")
        if not isinstance(digest, str) or len(digest) != 64 or not isinstance(version, str | None):
            return None
        blob = self.root / "blobs" / digest
        if not blob.is_file() or blob.stat().st_size != info.size:
            return None
        return digest, version

    def _download_all(self, store: ObjectStore, uri: str, missing: dict[str, ObjectInfo]) -> None:
        """Download what the cache lacks, in parallel."""
        if not missing:
            return
        self._make_room(sum(info.size for info in missing.values()), uri)
        with ThreadPoolExecutor(max_workers=DOWNLOADERS, thread_name_prefix="invarlock-fetch") as pool:
            list(pool.map(lambda item: self._download(store, uri, *item), missing.items()))

    def _download(self, store: ObjectStore, uri: str, name: str, info: ObjectInfo) -> None:
        tmp = self.root / "tmp" / f"{secrets.token_hex(8)}.part"
        where = f"{uri}/{name}" if not uri.endswith(name) else uri
        try:
            try:
                digest = store.download_hashed(info.key, tmp, info.size, info.etag)
            except ObjectChangedError:
                digest = ""  # named below, with what the store holds now
            except OSError as exc:
                raise self._disk_error(exc, where) from None
            size = tmp.stat().st_size if digest else -1
            after = store.head(info.key)
            changed = (
                after is None
                or after.size != info.size
                or size != info.size
                or (info.etag is not None and after.etag != info.etag)
            )
            if changed:
                now = "gone" if after is None else f"{after.size} bytes, ETag {after.etag}"
                raise InputChangedError(
                    f"{where}: changed during the download (listed {info.size} bytes, ETag {info.etag}; now {now}); "
                    "nothing was cached: run again once the upload is finished"
                )
            if after.sha256 is not None and after.sha256 != digest:
                raise InputChangedError(f"{where}: sha256 {digest} differs from the store's checksum {after.sha256}")
            blob = self.root / "blobs" / digest
            with self._locked():
                if not blob.is_file():
                    tmp.chmod(0o444)
                    os.replace(tmp, blob)
                record = {"sha256": digest, "version_id": after.version_id}
                write_bytes_atomic(self._identity(store, info), canonical_json(record))
        finally:
            tmp.unlink(missing_ok=True)

    def _disk_error(self, exc: OSError, where: str) -> InvarlockError:
        if exc.errno == errno.ENOSPC:
            return BadInputError(
                f"input cache {self.root}: no space left on the device while fetching {where}; "
                f"free space there, point {CACHE_ENV} at a larger disk, or lower {CACHE_LIMIT_ENV}"
            )
        return BadInputError(f"input cache {self.root}: {exc.strerror or exc} while fetching {where}")

    def _entry(self, digest: str, objects: list[FetchedObject]) -> Path:
        """The entry's folder, built in tmp/ and renamed into place whole (under the cache lock)."""
        entry = self.root / "entries" / digest
        if entry.is_dir():
            os.utime(entry)  # least recently used goes first
            return entry
        building = self.root / "tmp" / f"entry-{secrets.token_hex(8)}"
        try:
            for item in objects:
                target = building / item.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(self.root / "blobs" / item.sha256, target)
            os.rename(building, entry)
        except OSError as exc:
            shutil.rmtree(building, ignore_errors=True)
            raise self._disk_error(exc, str(entry)) from None
        return entry

    def _hold(self, digest: str) -> IO[bytes]:
        handle = (self.root / "entries" / f"{digest}.lock").open("ab")
        fcntl.flock(handle, fcntl.LOCK_SH)
        return handle

    def _make_room(self, need: int, uri: str) -> None:
        """Evict before a download so it fits the limit; refuse one that can never fit, or that the
        disk cannot take, before a byte is written."""
        if need > self.limit:
            raise BadInputError(
                f"{uri}: {need / 1024**3:.2f} GiB is more than the input cache may hold "
                f"({CACHE_LIMIT_ENV}={self.limit / 1024**3:g})"
            )
        with self._locked():
            self._evict(need=need)
        free = shutil.disk_usage(self.root).free
        if need > free:
            raise BadInputError(
                f"input cache {self.root}: {uri} needs {need} bytes, the disk has {free} free; "
                f"free space there or point {CACHE_ENV} at a larger disk"
            )

    def _evict(self, *, need: int = 0) -> None:
        """Least recently used entries first, each only if no run holds it; then every blob that no
        entry links (a blob's link count is its users plus one). Called under the cache lock."""
        blobs = list((self.root / "blobs").iterdir())
        total = sum(blob.stat().st_size for blob in blobs)
        if total + need <= self.limit:
            return
        entries = sorted(
            (path for path in (self.root / "entries").iterdir() if path.is_dir()),
            key=lambda path: path.stat().st_mtime,
        )
        for entry in entries:
            lock_path = entry.parent / f"{entry.name}.lock"
            with lock_path.open("ab") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a run reads it now
                shutil.rmtree(entry)
                lock_path.unlink()  # no one can be waiting for it: holders take it under the cache lock
            total -= self._drop_unused_blobs()
            if total + need <= self.limit:
                return
        self._drop_unused_blobs()

    def _drop_unused_blobs(self) -> int:
        freed = 0
        for blob in (self.root / "blobs").iterdir():
            status = blob.stat()
            if status.st_nlink == 1:
                blob.unlink()
                freed += status.st_size
        return freed

    def _clear_stale_downloads(self) -> None:
        cutoff = time.time() - TMP_MAX_AGE_S
        for leftover in (self.root / "tmp").iterdir():
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            except OSError:
                continue

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / "cache.lock").open("ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
