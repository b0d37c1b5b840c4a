"""Where a run is written while it works, and how it becomes a run others may read.

A run folder name chosen by an orchestrator (``--run-dir-name``) is shared by every try of one
task in one DAG run, and a try whose runner died may still be running. So no try writes under
that name while it works: each stages under ``runs/<name>/.tries/<run dir>/<run id>/`` (its run
id is its own) and commits with one create-only step, and a stale try can never replace or mix into
a committed run:

- a local folder: the staged ``run/`` folder is renamed to ``runs/<name>/<run dir>``; rename never
  replaces a non-empty folder (POSIX), and a committed run folder is never empty;
- a work store: the run is scored in local scratch; its events are mirrored to the staging prefix
  while it works (so a page or an operator can follow it), then ``report.json`` is put create-only
  (the commit), then ``events.jsonl``. A committer that dies between the two leaves its final
  events staged, so anyone can complete the run from them (:func:`complete_stored_run`).

Checkpoints of scored windows are staged beside the run (``checkpoint.json``), so a later try of
the same run folder, on any worker that reaches the store, can resume. Committing removes the
whole ``.tries/<run dir>/`` of that run. A run without an orchestrator's name (``PlainSite``) is
written where it will stay, as before: its name is new, so no other try can share it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_file, write_bytes_atomic
from invarlock_provider.layout import (
    EVENTS_FILE,
    REPORT_FILE,
    RUN_DIR_PATTERN,
    AlreadyCommittedError,
    create_run_dir,
    ensure_output_dir,
    publish_latest,
)
from invarlock_provider.scratch import claim, owner_is_dead

TRIES_DIR = ".tries"
CHECKPOINT_FILE = "checkpoint.json"
STAGED_RUN_DIR = "run"
MAX_CHECKPOINT_BYTES = 64 << 20
MAX_EVENTS_BYTES = 64 << 20


@dataclass(frozen=True)
class Committed:
    """A committed run, as the CLI prints it and operators hand it on: paths or URIs and a digest."""

    run_dir: str
    report: str
    report_sha256: str
    upload_s: float = 0.0


class RunSite(Protocol):
    """What a run needs from where it is written (see the module docstring). ``resumable``: a later
    try can share this run's folder name, so checkpoints are worth saving."""

    run_dir_name: str | None
    resumable: bool

    def prepare(self, now: datetime) -> tuple[Path, str]:
        """The local folder the run writes report.json and events.jsonl into, and its run id."""

    def final_location(self) -> str: ...

    def commit(self, run_dir: Path) -> Committed: ...

    def mirror_events(self, events: Path) -> None: ...

    def save_checkpoint(self, data: bytes) -> None: ...

    def checkpoints(self) -> Iterator[tuple[str, bytes]]:
        """Other tries' checkpoints of this run folder, as (where, bytes)."""


def new_run_id(run_name: str, run_dir_name: str) -> str:
    return f"{run_name}-{run_dir_name}-{secrets.token_hex(3)}"


class PlainSite:
    """A local run under a new timestamped name, written in place (no other try shares the name)."""

    resumable = False

    def __init__(self, out: Path) -> None:
        self.out = out
        self.run_dir_name: str | None = None
        self._run_dir: Path | None = None

    def prepare(self, now: datetime) -> tuple[Path, str]:
        self._run_dir = create_run_dir(self.out, now)
        self.run_dir_name = self._run_dir.name
        return self._run_dir, new_run_id(self.out.name, self._run_dir.name)

    def final_location(self) -> str:
        return str(self._run_dir)

    def commit(self, run_dir: Path) -> Committed:
        publish_latest(self.out, run_dir)
        report = run_dir / REPORT_FILE
        return Committed(str(run_dir), str(report), sha256_file(report))

    def mirror_events(self, events: Path) -> None:
        """The events file is already where readers look."""

    def save_checkpoint(self, data: bytes) -> None:
        """No later try can share this run's name, so nothing would ever resume from it."""

    def checkpoints(self) -> Iterator[tuple[str, bytes]]:
        return iter(())


def check_run_dir_name(name: str) -> str:
    if not RUN_DIR_PATTERN.match(name):
        raise BadInputError(f"--run-dir-name {name!r}: expected YYYYmmdd_HHMMSS or YYYYmmdd_HHMMSS_NN")
    return name


class LocalTrySite:
    """A local run folder named by an orchestrator: staged per try, committed by rename."""

    resumable = True

    def __init__(self, out: Path, run_dir_name: str) -> None:
        self.out = out
        self.run_dir_name: str | None = check_run_dir_name(run_dir_name)
        self.tries = out / TRIES_DIR / run_dir_name
        self.run_id = ""

    @property
    def final(self) -> Path:
        return self.out / str(self.run_dir_name)

    def prepare(self, now: datetime) -> tuple[Path, str]:
        ensure_output_dir(self.out)
        if self.final.exists():
            raise BadInputError(f"run folder already exists: {self.final}")
        self.run_id = new_run_id(self.out.name, str(self.run_dir_name))
        staged = self.tries / self.run_id / STAGED_RUN_DIR
        staged.mkdir(parents=True)
        claim(staged.parent)
        return staged, self.run_id

    def final_location(self) -> str:
        return str(self.final)

    def commit(self, run_dir: Path) -> Committed:
        try:
            os.rename(run_dir, self.final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(self.tries / self.run_id, ignore_errors=True)
            self._tidy()
            raise AlreadyCommittedError(
                f"{self.final}: another try of this run committed it first; this try's run was discarded"
            ) from None
        shutil.rmtree(self.tries / self.run_id, ignore_errors=True)
        self._tidy()
        publish_latest(self.out, self.final)
        report = self.final / REPORT_FILE
        return Committed(str(self.final), str(report), sha256_file(report))

    def mirror_events(self, events: Path) -> None:
        """Staged locally: the events are followed at their staged path."""

    def save_checkpoint(self, data: bytes) -> None:
        write_bytes_atomic(self.tries / self.run_id / CHECKPOINT_FILE, data)

    def checkpoints(self) -> Iterator[tuple[str, bytes]]:
        if not self.tries.is_dir():
            return
        for path in sorted(self.tries.glob(f"*/{CHECKPOINT_FILE}")):
            if path.parent.name == self.run_id or not path.is_file():
                continue
            if path.stat().st_size > MAX_CHECKPOINT_BYTES:
                yield str(path), b""  # refused by the reader, with its name
                continue
            yield str(path), path.read_bytes()


    def _tidy(self) -> None:
        """Remove the staging of tries whose process has ended (a live stale try keeps its own, and
        finds the run committed when it tries to commit), then the folders left empty."""
        for folder in self.tries.glob("*") if self.tries.is_dir() else ():
            if owner_is_dead(folder):
                shutil.rmtree(folder, ignore_errors=True)
        _remove_if_empty(self.tries)
        _remove_if_empty(self.out / TRIES_DIR)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


class StoreTrySite:
    """A run into a work store: scored in local scratch, mirrored and checkpointed to its staging
    prefix, committed by the create-only upload of report.json."""

    resumable = True

    def __init__(self, folder: object, run_dir_name: str, scratch: Path) -> None:
        from invarlock_provider.storage.workstore import RemoteFolder

        assert isinstance(folder, RemoteFolder)
        self.folder = folder
        self.run_dir_name: str | None = check_run_dir_name(run_dir_name)
        self.scratch = scratch
        self.tries = folder.child(TRIES_DIR, run_dir_name)
        self.run_id = ""
        self.mirror_failed = False

    def prepare(self, now: datetime) -> tuple[Path, str]:
        self.run_id = new_run_id(self.folder.name, str(self.run_dir_name))
        return create_run_dir(self.scratch / self.folder.name, now, self.run_dir_name), self.run_id

    def final_location(self) -> str:
        return self.folder.child(str(self.run_dir_name)).uri

    def _staged(self, name: str) -> str:
        return self.tries.child(self.run_id, name).key

    def commit(self, run_dir: Path) -> Committed:
        from invarlock_provider.storage.workstore import upload_run

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
        try:
            self.folder.store.put_file(self._staged(EVENTS_FILE), events, sha256_file(events))
        except (InvarlockError, OSError):
            self.mirror_failed = True

    def save_checkpoint(self, data: bytes) -> None:
        from invarlock_provider.storage.workstore import put_bytes

        put_bytes(self.folder.store, self._staged(CHECKPOINT_FILE), data)

    def checkpoints(self) -> Iterator[tuple[str, bytes]]:
        store = self.folder.store
        for info in store.list(self.tries.key):
            parts = info.key[len(self.tries.key) + 1 :].split("/")
            if len(parts) != 2 or parts[1] != CHECKPOINT_FILE or parts[0] == self.run_id:
                continue
            where = store.uri.locate(info.key)
            yield where, (store.read_bytes(info.key) if info.size <= MAX_CHECKPOINT_BYTES else b"")


def clear_stored_tries(tries: object) -> None:
    """Remove a committed run's staging prefix (every try's); what is left is only clutter."""
    from invarlock_provider.storage.workstore import RemoteFolder

    assert isinstance(tries, RemoteFolder)
    keys = [info.key for info in tries.store.list(tries.key)]
    if keys:
        tries.store.delete(keys)


def complete_stored_run(run_folder: object, report_bytes: bytes) -> bool:
    """Finish a commit whose committer died after report.json: its staged final events become the
    run's events.jsonl (create-only). False when no staged events of that run id are there."""
    import json

    from invarlock_provider.storage.objectstore import ObjectExistsError
    from invarlock_provider.storage.workstore import RemoteFolder, publish_latest
    from invarlock_provider.strict_json import loads_object

    assert isinstance(run_folder, RemoteFolder)
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
    from invarlock_provider.storage.workstore import put_bytes

    # Completed meanwhile by another reader: the same bytes, from the same staged copy.
    with contextlib.suppress(ObjectExistsError):
        put_bytes(store, posixpath.join(run_folder.key, EVENTS_FILE), staged, if_absent=True)
    clear_stored_tries(tries)
    publish_latest(run_folder.parent)
    return True
