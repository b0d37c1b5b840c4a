"""What the Evidence pages read, server side, and from where: only the stores the deployment serves.

The browser never talks to the bucket: the API server reads the bundles (and, for a
``build_report`` task, the reports folder in the work store) and serves them. Where a task's
evidence is comes from its XCom, which any user with the ``user`` role can write through the REST
API, so a URI is read only when it lies inside a store this deployment configured
(``defaults.served_stores``), and always through that store's own connection, never one an XCom
names. A complete bundle's manifest and evaluation are remembered across requests for the
listings, and so is what its folder held when it was first seen complete: a listing then costs one
delimiter LIST per report name (a thousand bundles a request), not a LIST of every file. Verifying a
bundle always reads the store afresh, since a bucket writer can replace any object.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar

from invarlock_provider.errors import BadInputError
from invarlock_provider.storage.uri import StoreURI, check_evidence_id, check_segment, parse_store_uri

CACHED_FILES = ("manifest.json", "evaluation.report.json")
CACHE_ENTRIES = 20_000
FOLDER_DEPTH = 4


class ImmutableReads:
    """A store whose manifest and evaluation reads are remembered (shared by every request)."""

    _cache: ClassVar[OrderedDict[tuple[str, str], bytes]] = OrderedDict()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_bytes(self, key: str) -> bytes:
        if not key.endswith(CACHED_FILES):
            return self._store.read_bytes(key)
        entry = (str(self._store.uri), key)
        with self._lock:
            if entry in self._cache:
                self._cache.move_to_end(entry)
                return self._cache[entry]
        raw = self._store.read_bytes(key)
        with self._lock:
            self._cache[entry] = raw
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return raw


RECHECK_ENV = "INVARLOCK_EVIDENCE_RECHECK_S"
RECHECK_S = 300.0
_SEEN: OrderedDict[tuple[str, str], tuple[Any, float, float]] = OrderedDict()  # summary, seen at, spread
_SEEN_LOCK = threading.Lock()


def remembered_bundles(store: Any, where: str) -> list[Any]:
    """The bundles below ``where`` (a prefix of report folders, or one report folder), for the
    Evidence listing.

    Which bundles exist is listed on every call, one delimiter LIST per folder (a new bundle shows
    at once, and so does a pruned one where the store drops empty prefixes, as S3 does). A bundle
    seen complete (content first, manifest last) is then remembered, not listed file by file again,
    for a recheck interval (``INVARLOCK_EVIDENCE_RECHECK_S``, 300 s by default, each bundle's spread
    over half to one and a half of it so rechecks do not all fall on one request); one that was not
    complete (still uploading, or damaged) is listed every time. So a bundle whose manifest is
    deleted under a folder the store keeps (a prune killed half-way, a hostile writer) leaves the
    listing within the interval; its own page, which verifies the store as it is now, says so at
    once. Bundles are looked for down to FOLDER_DEPTH folders (``team/report/ev-...``)."""
    from invarlock_provider.env_settings import positive_from_env
    from invarlock_provider.storage.bundle_reader import list_bundles_at
    from invarlock_provider.storage.uri import is_evidence_id, join_key

    recheck = positive_from_env(RECHECK_ENV, RECHECK_S)

    def bundle_keys(folder: str, depth: int) -> list[str]:
        found = []
        for name in store.children(folder):
            if is_evidence_id(name):
                found.append(join_key(folder, name))
            elif depth > 1 and not name.startswith("."):
                found.extend(bundle_keys(join_key(folder, name), depth - 1))
        return found

    keys = bundle_keys(where, FOLDER_DEPTH)
    root, now = str(store.uri), time.monotonic()
    with _SEEN_LOCK:
        known = {}
        for key in keys:
            summary, seen, spread = _SEEN.get((root, key), (None, 0.0, 0.0))
            if summary is not None and now < seen + recheck * spread:
                known[key] = summary
                _SEEN.move_to_end((root, key))
    fresh = list_bundles_at(store, [key for key in keys if key not in known])
    with _SEEN_LOCK:
        for summary in fresh:
            _SEEN.pop((root, summary.key), None)
            if summary.complete:
                remembered = dataclasses.replace(summary, objects={})
                _SEEN[(root, summary.key)] = (remembered, now, 0.5 + random.random())
        while len(_SEEN) > CACHE_ENTRIES:
            _SEEN.popitem(last=False)
    never = datetime.max.replace(tzinfo=UTC)
    return sorted([*known.values(), *fresh], key=lambda b: (b.created_at or never, b.key))


@dataclass(frozen=True)
class EvidenceSource:
    """One evidence store prefix as the Evidence page shows it, and the DAG whose readers may see it."""

    target: str
    conn_id: str | None
    dag_id: str

    def open(self) -> tuple[Any, str]:
        return open_bundle_store(self.target, self.conn_id)


def open_bundle_store(uri: str, conn_id: str | None, *, cached: bool = True) -> tuple[Any, str]:
    """(store, key) for a bundle or prefix URI, through ``conn_id`` for S3; ``cached`` for listings."""
    from invarlock_provider.airflow.hooks import EvidenceStoreHook
    from invarlock_provider.storage.stores import open_store
    from invarlock_provider.storage.uri import bundle_location

    root, key = bundle_location(uri)
    settings = EvidenceStoreHook(conn_id).s3_settings if root.scheme == "s3" else None
    store = open_store(root, settings)
    return (ImmutableReads(store) if cached else store), key


@dataclass(frozen=True)
class ServedStore:
    """One store the deployment serves: the connection it is read through, and where its root is
    (scheme, bucket, path segments), as compared with a URI from an XCom."""

    conn_id: str | None
    where: tuple[str, str, tuple[str, ...]]

    def holds(self, where: tuple[str, str, tuple[str, ...]]) -> bool:
        """Segment by segment: ``s3://ev/nightly`` holds ``s3://ev/nightly/x``, not ``s3://ev/nightly2``."""
        scheme, bucket, parts = self.where
        return where[:2] == (scheme, bucket) and where[2][: len(parts)] == parts


def _where(uri: StoreURI) -> tuple[str, str, tuple[str, ...]]:
    """A parsed URI as (scheme, bucket, segments), a local path normalized with its symlinks resolved."""
    if uri.scheme == "s3":  # parse_store_uri allows only plain segments in a bucket prefix
        return "s3", uri.bucket, tuple(part for part in uri.prefix.split("/") if part)
    return "file", "", PurePosixPath(os.path.realpath(PurePosixPath(uri.bucket, uri.prefix))).parts


def served_stores() -> list[ServedStore]:
    from invarlock_provider.airflow.defaults import served_stores as configured

    return [ServedStore(conn_id, _where(parse_store_uri(root))) for root, conn_id in configured()]


def _parsed(uri: object) -> StoreURI | None:
    """An XCom's location as a store URI; None for anything else (an XCom may hold any JSON)."""
    try:
        return parse_store_uri(uri) if isinstance(uri, str) else None
    except BadInputError:
        return None


def serving_store(uri: object, stores: list[ServedStore] | None = None) -> ServedStore | None:
    """The served store holding ``uri`` (the innermost, where roots nest), None when none does. A path
    that climbs with ``..`` is held by none, however it resolves."""
    parsed = _parsed(uri)
    if parsed is None or ".." in PurePosixPath(parsed.bucket, parsed.prefix).parts:
        return None
    where = _where(parsed)
    holding = [store for store in (served_stores() if stores is None else stores) if store.holds(where)]
    return max(holding, key=lambda store: len(store.where[2]), default=None)


def served_conn_id(uri: object) -> str | None:
    """The connection to read ``uri`` through: its served store's; a 403 page for any other store.
    The page names the store only when it parses as one (then it holds no user info or secret)."""
    from fastapi import HTTPException

    store = serving_store(uri)
    if store is None:
        parsed = _parsed(uri)
        named = str(parsed) if parsed is not None else "a location that is not a store URI"
        raise HTTPException(
            403,
            f"this task's evidence is in {named}, a store this deployment does not serve (the Evidence pages "
            "read only the archive target, the local evidence folder and the work store, through their own "
            "connections)",
        )
    return store.conn_id


def check_bundle_path(report_name: str, evidence_id: str) -> tuple[str, str]:
    """A report name and evidence id from a URL: one plain segment and an evidence id, nothing else."""
    return check_segment(report_name, "report name"), check_evidence_id(evidence_id, "evidence id")
