"""The local archive index: which run reports are safely in object storage.

``invarlock prune`` deletes a local run only when its report.json sha256 is recorded here, i.e.
when a bundle holding it was archived with a complete manifest. The index lives at
``$INVARLOCK_HOME/archive-index.json`` (default ``~/.invarlock``); ``--index`` overrides it.
Updates take an exclusive lock and replace the file atomically, so concurrent archive tasks on
one worker never lose each other's entries.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import write_json_atomic

INDEX_ENV = "INVARLOCK_HOME"
INDEX_FILE = "archive-index.json"


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
