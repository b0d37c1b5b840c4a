"""Which run reports are safely in object storage: the records archives leave, and their check.

``invarlock prune`` deletes a run only once its report.json is in an archived bundle. Every archive
leaves two records of that: ``<prefix>/.archived-runs/<report sha256>/<report name>/<evidence
id>.json`` in the evidence store (workers that share no disk ask the store), created once per
bundle, and an entry in the worker's local index ``$INVARLOCK_HOME/archive-index.json`` (default
``~/.invarlock``; ``--index`` overrides it), updated under an exclusive lock and replaced
atomically. A record is only a claim (anyone who can write to the bucket can write one): before
a run goes, :class:`ArchivedRuns` verifies the bundle the record names and checks that it holds
that very report.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import write_json_atomic
from invarlock_provider.storage.objectstore import ObjectExistsError, ObjectLock, ObjectStore
from invarlock_provider.strict_json import MalformedJSONError, loads_object

INDEX_ENV = "INVARLOCK_HOME"
INDEX_FILE = "archive-index.json"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def default_index_path() -> Path:
    home = os.environ.get(INDEX_ENV)
    return Path(home) / INDEX_FILE if home else Path.home() / ".invarlock" / INDEX_FILE


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_index(path: Path) -> dict[str, list[dict[str, Any]]]:
    """report sha256 -> every bundle it was archived in (an older index held one entry per report)."""
    if not path.is_file():
        return {}
    try:
        data = loads_object(path.read_bytes(), str(path))
    except MalformedJSONError:
        raise BadInputError(f"{path}: archive index is not valid JSON; fix or remove it") from None
    reports = data.get("reports", {})
    if not isinstance(reports, dict):
        return {}
    return {
        digest: [e for e in (entries if isinstance(entries, list) else [entries]) if isinstance(e, dict)]
        for digest, entries in reports.items()
    }


def record_archived(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    with _locked(path):
        reports = read_index(path)
        for digest, entry in entries.items():
            known = reports.setdefault(digest, [])
            if entry not in known:
                known.append(entry)
        write_json_atomic(path, {"schema_version": "invarlock.archive-index/2", "reports": reports})


# --- the record in the evidence store itself --------------------------------------------------------

ARCHIVED_RUNS_FOLDER = ".archived-runs"  # never a report name: those cannot start with a dot
ARCHIVED_RUN_SCHEMA = "invarlock.archived-run/1"
MAX_RECORD_BYTES = 64 * 1024


def _record_key(store: ObjectStore, digest: str, entry: dict[str, Any]) -> str:
    report_name = entry["bundle"].rstrip("/").split("/")[-2]
    return store.uri.key(ARCHIVED_RUNS_FOLDER, digest, report_name, f"{entry['evidence_id']}.json")


def record_archived_in_store(
    store: ObjectStore, entries: dict[str, dict[str, Any]], lock: ObjectLock | None = None
) -> None:
    """One small object per archived run report and bundle, created once (its content follows from
    the bundle, so a retry finds the same record there), locked like the bundle that made it true."""
    from invarlock_provider.storage.workstore import put_bytes

    for digest, entry in entries.items():
        record = {"schema_version": ARCHIVED_RUN_SCHEMA, "report_sha256": digest, **entry}
        # Already there: an earlier try's record, or a claim another writer made; retention verifies either.
        with contextlib.suppress(ObjectExistsError):
            put_bytes(store, _record_key(store, digest, entry), json.dumps(record).encode(), lock, if_absent=True)


def archive_records(store: ObjectStore) -> dict[str, list[str]]:
    """report sha256 -> the keys of the bundles (in this store) that records say hold it (one
    listing; a record written before bundles had their own records folder is read for its bundle)."""
    folder = store.uri.key(ARCHIVED_RUNS_FOLDER)
    records: dict[str, list[str]] = {}
    for info in store.list(folder):
        parts = info.key[len(folder) + 1 :].split("/")
        if len(parts) == 3 and _DIGEST.fullmatch(parts[0]) and parts[2].endswith(".json"):
            records.setdefault(parts[0], []).append(store.uri.key(parts[1], parts[2].removesuffix(".json")))
        elif len(parts) == 1 and _DIGEST.fullmatch(parts[0].removesuffix(".json")):
            bundle = _legacy_record_bundle(store, info.key)
            if bundle is not None:
                records.setdefault(parts[0].removesuffix(".json"), []).append(bundle)
    return records


def archived_in_store(store: ObjectStore) -> set[str]:
    """sha256 of every run report some record in this evidence store claims is archived."""
    return set(archive_records(store))


def _legacy_record_bundle(store: ObjectStore, key: str) -> str | None:
    """The bundle key a one-record-per-report object names, if it names one in this store."""
    try:
        record = loads_object(store.read_bytes(key), store.uri.locate(key), max_bytes=MAX_RECORD_BYTES)
    except InvarlockError:
        return None
    bundle = record.get("bundle")
    root = store.uri.locate("")
    if not isinstance(bundle, str) or not bundle.startswith(root.rstrip("/") + "/"):
        return None
    return bundle[len(root.rstrip("/")) + 1 :]


class ArchivedRuns:
    """Whether a run report is in an archived bundle that verifies now, with the deployment's trust.

    ``locations`` maps a report's sha256 to where records say it was archived, as ``(store, key)``
    openers; each bundle is verified once (the result is kept) and must list that report as its
    ``report.json`` or ``baseline/report.json``.
    """

    def __init__(self, locations: dict[str, list[Callable[[], tuple[ObjectStore, str]]]], trust: Any = None) -> None:
        self._locations = locations
        self._trust = trust
        self._verified: dict[str, tuple[bool, str, set[str]]] = {}

    @classmethod
    def from_sources(
        cls,
        evidence: ObjectStore | None,
        index: dict[str, list[dict[str, Any]]] | None,
        trust: Any = None,
        settings: Any = None,
    ) -> ArchivedRuns:
        locations: dict[str, list[Callable[[], tuple[ObjectStore, str]]]] = {}
        if evidence is not None:
            for digest, keys in archive_records(evidence).items():
                locations.setdefault(digest, []).extend((lambda key=key: (evidence, key)) for key in keys)
        for digest, entries in (index or {}).items():
            for entry in entries:
                if isinstance(entry.get("bundle"), str):
                    locations.setdefault(digest, []).append(lambda uri=entry["bundle"]: _open_bundle(uri, settings))
        return cls(locations, trust)

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and self.check(digest) is None

    def check(self, digest: str) -> str | None:
        """None when an archived bundle holding this report verifies; otherwise why the run stays."""
        openers = self._locations.get(digest, [])
        if not openers:
            return "not archived"
        reasons = []
        for opener in openers:
            try:
                store, key = opener()
            except InvarlockError as exc:
                reasons.append(str(exc))
                continue
            uri = store.uri.locate(key)
            if uri not in self._verified:
                self._verified[uri] = _verify_holding(store, key, uri, self._trust)
            ok, reason, holds = self._verified[uri]
            if ok and digest in holds:
                return None
            reasons.append(reason if not ok else f"{uri} does not hold this report")
        return f"archived copy does not verify: {reasons[0]}"


def _open_bundle(uri: str, settings: Any) -> tuple[ObjectStore, str]:
    from invarlock_provider.storage.stores import open_store
    from invarlock_provider.storage.uri import bundle_location

    root, key = bundle_location(uri)
    return open_store(root, settings if root.scheme == "s3" else None), key


def _verify_holding(store: ObjectStore, key: str, uri: str, trust: Any) -> tuple[bool, str, set[str]]:
    from invarlock_provider.storage.bundle import REQUIRED_FILES
    from invarlock_provider.storage.bundle_reader import guarded, read_manifest, verify_remote_bundle

    result = guarded(uri, lambda: verify_remote_bundle(store, key, uri, trust, attachments=False))
    if not result.ok:
        failed = result.failed()[0]
        return False, f"{uri}: {failed.name}: {failed.detail}", set()
    _, manifest, _ = read_manifest(store, key, uri)
    holds = {entry["sha256"] for entry in manifest["files"] if entry["path"] in REQUIRED_FILES[:2]}
    return True, "", holds
