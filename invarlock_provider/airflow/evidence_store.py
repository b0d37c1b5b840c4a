"""What the Evidence pages read, server side, through the archive tasks' own connections.

The browser never talks to the bucket: the API server reads the bundles (and, for a
``build_report`` task, the reports folder in the work store) and serves them. A complete bundle
never changes (its files are content-addressed and its manifest is written last, once), so
manifests and evaluations are remembered across requests; a listing costs only the LIST calls
after the first page load.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

from invarlock_provider.storage.uri import EVIDENCE_ID, check_segment

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


def open_bundle_store(uri: str, conn_id: str | None) -> tuple[Any, str]:
    """(store, key) for a bundle or prefix URI, through ``conn_id`` for S3 (as the archive task did)."""
    from invarlock_provider.airflow.hooks import EvidenceStoreHook
    from invarlock_provider.cli.store_options import bundle_location
    from invarlock_provider.storage.stores import open_store

    root, key = bundle_location(uri)
    settings = EvidenceStoreHook(conn_id).s3_settings if root.scheme == "s3" else None
    return ImmutableReads(open_store(root, settings)), key


def check_bundle_path(report_name: str, evidence_id: str) -> tuple[str, str]:
    """A report name and evidence id from a URL: one plain segment and an evidence id, nothing else."""
    check_segment(report_name, "report name")
    if not EVIDENCE_ID.match(evidence_id):
        from invarlock_provider.errors import BadInputError

        raise BadInputError(f"evidence id {evidence_id!r} is not allowed: expected ev- and 24 hex digits")
    return report_name, evidence_id


def read_json(store: Any, key: str) -> dict[str, Any]:
    return json.loads(store.read_bytes(key))
