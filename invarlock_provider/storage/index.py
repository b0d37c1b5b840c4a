"""Which run reports are safely in object storage: a local index and a record in the store.

``invarlock prune`` deletes a local run only when its report.json sha256 is recorded here, i.e.
when a bundle holding it was archived with a complete manifest. The index lives at
``$INVARLOCK_HOME/archive-index.json`` (default ``~/.invarlock``); ``--index`` overrides it.
Updates take an exclusive lock and replace the file atomically, so concurrent archive tasks on
one worker never lose each other's entries. Workers that share no disk ask the evidence store
instead: every archive also writes ``<prefix>/.archived-runs/<report sha256>.json`` there.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import write_json_atomic
from invarlock_provider.storage.objectstore import ObjectLock, ObjectStore

INDEX_ENV = "INVARLOCK_HOME"
INDEX_FILE = "archive-index.json"
_DIGEST_FILE = re.compile(r"^[0-9a-f]{64}\.json$")


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


def read_index(path: Path) -> dict[str, dict[str, Any]]:
    """report sha256 -> where it was archived."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise BadInputError(f"{path}: archive index is not valid JSON; fix or remove it") from None
    return data.get("reports", {}) if isinstance(data, dict) else {}


def record_archived(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    with _locked(path):
        reports = read_index(path)
        reports.update(entries)
        write_json_atomic(path, {"schema_version": "invarlock.archive-index/1", "reports": reports})


# --- the record in the evidence store itself --------------------------------------------------------

ARCHIVED_RUNS_FOLDER = ".archived-runs"  # never a report name: those cannot start with a dot
ARCHIVED_RUN_SCHEMA = "invarlock.archived-run/1"


def record_archived_in_store(
    store: ObjectStore, entries: dict[str, dict[str, Any]], lock: ObjectLock | None = None
) -> None:
    """One small object per archived run report, named by its sha256, so any worker can ask "was
    this run archived?" and parallel archive tasks never overwrite each other's records. Locked like
    the bundle that made it true (a later bundle holding the same report adds a version)."""
    from invarlock_provider.storage.workstore import put_bytes

    for digest, entry in entries.items():
        record = {"schema_version": ARCHIVED_RUN_SCHEMA, "report_sha256": digest, **entry}
        put_bytes(store, store.uri.key(ARCHIVED_RUNS_FOLDER, f"{digest}.json"), json.dumps(record).encode(), lock)


def archived_in_store(store: ObjectStore) -> set[str]:
    """sha256 of every run report recorded as archived in this evidence store (one listing)."""
    digests = set()
    for info in store.list(store.uri.key(ARCHIVED_RUNS_FOLDER)):
        name = info.key.rsplit("/", 1)[-1]
        if _DIGEST_FILE.match(name):
            digests.add(name.removesuffix(".json"))
    return digests
