"""Where a run is written while it works, and how it becomes a run others may read (the local
folders here; a work store's tries are ``storage/store_tries.py``).

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
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_file, write_bytes_atomic
from invarlock_provider.layout import (
    REPORT_FILE,
    AlreadyCommittedError,
    check_run_dir_name,
    completed_runs,
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
MAX_REPORT_BYTES = 256 << 20


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

    resumable: bool

    def prepare(self, now: datetime) -> tuple[Path, str]:
        """The local folder the run writes report.json and events.jsonl into, and its run id."""

    def final_location(self) -> str: ...

    def commit(self, run_dir: Path) -> Committed: ...

    def mirror_events(self, events: Path) -> None: ...

    def save_checkpoint(self, data: bytes) -> None: ...

    def checkpoints(self) -> Iterator[tuple[str, bytes]]:
        """Other tries' checkpoints of this run folder, as (where, bytes)."""

    def earlier_runs(self) -> Iterator[tuple[str, bytes]]:
        """Complete runs of this run's name, newest first, as (report location, report bytes)."""


def new_run_id(run_name: str, run_dir_name: str) -> str:
    return f"{run_name}-{run_dir_name}-{secrets.token_hex(3)}"


class PlainSite:
    """A local run under a new timestamped name, written in place (no other try shares the name)."""

    resumable = False

    def __init__(self, out: Path) -> None:
        self.out = out
        self._run_dir: Path | None = None

    def prepare(self, now: datetime) -> tuple[Path, str]:
        self._run_dir = create_run_dir(self.out, now)
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

    def earlier_runs(self) -> Iterator[tuple[str, bytes]]:
        return local_earlier_runs(self.out)


class LocalTrySite:
    """A local run folder named by an orchestrator: staged per try, committed by rename."""

    resumable = True

    def __init__(self, out: Path, run_dir_name: str) -> None:
        self.out = out
        self.run_dir_name = check_run_dir_name(run_dir_name)
        self.tries = out / TRIES_DIR / run_dir_name
        self.run_id = ""

    @property
    def final(self) -> Path:
        return self.out / self.run_dir_name

    def prepare(self, now: datetime) -> tuple[Path, str]:
        ensure_output_dir(self.out)
        if self.final.exists():
            raise BadInputError(f"run folder already exists: {self.final}")
        self.run_id = new_run_id(self.out.name, self.run_dir_name)
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
        path = self.tries / self.run_id / CHECKPOINT_FILE
        try:
            write_bytes_atomic(path, data)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None

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

    def earlier_runs(self) -> Iterator[tuple[str, bytes]]:
        return local_earlier_runs(self.out)

    def _tidy(self) -> None:
        """Remove the staging of tries whose process has ended (a live stale try keeps its own, and
        finds the run committed when it tries to commit), then the folders left empty."""
        for folder in self.tries.glob("*") if self.tries.is_dir() else ():
            if owner_is_dead(folder):
                shutil.rmtree(folder, ignore_errors=True)
        _remove_if_empty(self.tries)
        _remove_if_empty(self.out / TRIES_DIR)


def local_earlier_runs(out: Path) -> Iterator[tuple[str, bytes]]:
    for run_dir in reversed(completed_runs(out)):
        report = run_dir / REPORT_FILE
        yield str(report), (report.read_bytes() if report.stat().st_size <= MAX_REPORT_BYTES else b"")


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
