"""What the Evidence pages read, server side, and from where: only the stores the deployment serves.

The browser never talks to the bucket: the API server reads the bundles (and, for a
``build_report`` task, the reports folder in the work store) and serves them. Where a task's
evidence is comes from its XCom, which any user with the ``user`` role can write through the REST
API, so a URI is read only when it lies inside a store this deployment configured
(``defaults.served_stores``), and always through that store's own connection, never one an XCom
names. A complete bundle's manifest and evaluation are remembered across requests for the
listings (a listing then costs only the LIST calls after the first page load); verifying a bundle
always reads the store afresh, since a bucket writer can replace any object.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, ClassVar

from invarlock_provider.errors import BadInputError
from invarlock_provider.storage.uri import StoreURI, check_evidence_id, check_segment, parse_store_uri

CACHED_FILES = ("manifest.json", "evaluation.report.json")
CACHE_ENTRIES = 20_000


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
