"""A run's tries in a work store: scored in local scratch, their timeline mirrored and their
checkpoints saved under ``runs/<name>/.tries/<run dir>/<run id>/``, committed by the create-only
upload of report.json (see ``run_sites.py`` for the protocol and the local folder's tries)."""

from __future__ import annotations

import contextlib
import json
import posixpath
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from invarlock_provider.errors import InvarlockError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.layout import (
    EVENTS_FILE,
    REPORT_FILE,
    AlreadyCommittedError,
    check_run_dir_name,
    create_run_dir,
)
from invarlock_provider.run_sites import (
    CHECKPOINT_FILE,
    MAX_CHECKPOINT_BYTES,
    MAX_EVENTS_BYTES,
    MAX_REPORT_BYTES,
    TRIES_DIR,
    Committed,
    new_run_id,
)
from invarlock_provider.storage.objectstore import ObjectExistsError
from invarlock_provider.storage.workstore import (
    RemoteFolder,
    completed_runs,
    publish_latest,
    put_bytes,
    upload_run,
)
from invarlock_provider.strict_json import loads_object


class StoreTrySite:
    """A run into a work store: scored in local scratch, mirrored and checkpointed to its staging
    prefix, committed by the create-only upload of report.json."""

    resumable = True

    def __init__(self, folder: RemoteFolder, run_dir_name: str, scratch: Path) -> None:
        self.folder = folder
        self.run_dir_name = check_run_dir_name(run_dir_name)
        self.scratch = scratch
        self.tries = folder.child(TRIES_DIR, run_dir_name)
        self.run_id = ""

    def prepare(self, now: datetime) -> tuple[Path, str]:
        self.run_id = new_run_id(self.folder.name, self.run_dir_name)
        return create_run_dir(self.scratch / self.folder.name, now, self.run_dir_name), self.run_id

    def final_location(self) -> str:
        return self.folder.child(self.run_dir_name).uri

    def _staged(self, name: str) -> str:
        return self.tries.child(self.run_id, name).key

    def commit(self, run_dir: Path) -> Committed:
        started = time.perf_counter()
        store = self.folder.store
        events = run_dir / EVENTS_FILE
        store.put_file(self._staged(EVENTS_FILE), events, sha256_file(events))  # what completes a cut-off commit
        try:
            stored = upload_run(self.folder, run_dir)
        except AlreadyCommittedError:
            clear_stored_tries(self.tries.child(self.run_id))  # the loser's staging is nobody's now
            raise
        clear_stored_tries(self.tries)
        return Committed(stored.run_dir, stored.report, stored.report_sha256, time.perf_counter() - started)

    def mirror_events(self, events: Path) -> None:
        """The in-progress copy that pages and operators follow; a failed copy never stops a run."""
        with contextlib.suppress(InvarlockError, OSError):  # the next event copies the whole timeline again
            self.folder.store.put_file(self._staged(EVENTS_FILE), events, sha256_file(events))

    def save_checkpoint(self, data: bytes) -> None:
        put_bytes(self.folder.store, self._staged(CHECKPOINT_FILE), data)

    def checkpoints(self) -> Iterator[tuple[str, bytes]]:
        store = self.folder.store
        for info in store.list(self.tries.key):
            parts = info.key[len(self.tries.key) + 1 :].split("/")
            if len(parts) != 2 or parts[1] != CHECKPOINT_FILE or parts[0] == self.run_id:
                continue
            where = store.uri.locate(info.key)
            yield where, (store.read_bytes(info.key) if info.size <= MAX_CHECKPOINT_BYTES else b"")

    def earlier_runs(self) -> Iterator[tuple[str, bytes]]:
        store = self.folder.store
        for name in reversed(completed_runs(self.folder)):
            key = self.folder.child(name, REPORT_FILE).key
            info = store.head(key)
            if info is not None:
                yield store.uri.locate(key), (store.read_bytes(key) if info.size <= MAX_REPORT_BYTES else b"")


def clear_stored_tries(tries: RemoteFolder) -> None:
    """Remove a committed run's staging prefix (every try's); what is left is only clutter."""
    keys = [info.key for info in tries.store.list(tries.key)]
    if keys:
        tries.store.delete(keys)


def complete_stored_run(run_folder: RemoteFolder, report_bytes: bytes) -> bool:
    """Finish a commit whose committer died after report.json: its staged final events become the
    run's events.jsonl (create-only). False when no staged events of that run id are there."""
    store = run_folder.store
    run_id = loads_object(report_bytes, run_folder.child(REPORT_FILE).uri).get("run_id")
    if not isinstance(run_id, str) or "/" in run_id:
        return False
    tries = run_folder.parent.child(TRIES_DIR, run_folder.name)
    staged_key = tries.child(run_id, EVENTS_FILE).key
    info = store.head(staged_key)
    if info is None or info.size > MAX_EVENTS_BYTES:
        return False
    staged = store.read_bytes(staged_key)
    lines = staged.decode("utf-8", errors="replace").splitlines()
    try:
        records = [json.loads(line) for line in lines]
    except ValueError:
        return False
    if not records or any(r.get("run_id") != run_id for r in records) or records[-1].get("phase") != "finalize":
        return False
    # Completed meanwhile by another reader: the same bytes, from the same staged copy.
    with contextlib.suppress(ObjectExistsError):
        put_bytes(store, posixpath.join(run_folder.key, EVENTS_FILE), staged, if_absent=True)
    clear_stored_tries(tries)
    publish_latest(run_folder.parent)
    return True
