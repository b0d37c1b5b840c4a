"""The runs/ layout: timestamped run folders and the "newest run" pointer.

``runs/<name>/<YYYYmmdd_HHMMSS>[_NN]/`` holds one run; ``runs/<name>/report.json`` is a symlink
to the newest complete run's report (a copy where symlinks are unavailable), replaced atomically
only after that run's report exists, so a failed or running evaluation never becomes "latest".
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.reporting.lineage import run_identity

REPORT_FILE = "report.json"
EVENTS_FILE = "events.jsonl"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
RUN_DIR_PATTERN = re.compile(r"^(\d{8}_\d{6})(?:_(\d{2,}))?\Z")  # \Z: no trailing newline


class AlreadyCommittedError(InvarlockError):
    """Another try of an orchestrator-named run folder committed it first; this try's run was discarded."""


def check_run_dir_name(name: str) -> str:
    """An orchestrator's run folder name, which must read as the layout's timestamps do."""
    if not RUN_DIR_PATTERN.match(name):
        raise BadInputError(f"--run-dir-name {name!r}: expected YYYYmmdd_HHMMSS or YYYYmmdd_HHMMSS_NN")
    return name


def ensure_output_dir(out: Path) -> None:
    """``out`` exists and this process may create run folders in it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"output dir not writable: {out} ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BadInputError(f"output dir not writable: {out}")


def create_run_dir(out: Path, now: datetime, name: str | None = None) -> Path:
    """Create a new, empty timestamped folder; a second run in the same second gets _01, _02...

    ``name`` (a timestamp folder name chosen by an orchestrator, so that a retry finds its own
    folder again) must match the layout and not exist yet.
    """
    ensure_output_dir(out)
    if name is not None:
        check_run_dir_name(name)
        try:
            (out / name).mkdir()
        except FileExistsError:
            raise BadInputError(f"run folder already exists: {out / name}") from None
        return out / name
    stamp = now.strftime(TIMESTAMP_FORMAT)
    for attempt in range(100):
        candidate = out / (stamp if attempt == 0 else f"{stamp}_{attempt:02d}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise BadInputError(f"output dir not writable: {out} ({exc.strerror})") from None
        return candidate
    raise BadInputError(f"{out}: more than 100 runs started in the same second")


def run_dir_sort_key(path: Path) -> tuple[str, int]:
    match = RUN_DIR_PATTERN.match(path.name)
    if match is None:
        return ("", -1)
    return (match.group(1), int(match.group(2) or 0))


def completed_runs(out: Path) -> list[Path]:
    """Timestamped run folders under ``out`` that hold a report, oldest first."""
    if not out.is_dir():
        return []
    runs = [
        child
        for child in out.iterdir()
        if child.is_dir() and RUN_DIR_PATTERN.match(child.name) and (child / REPORT_FILE).is_file()
    ]
    return sorted(runs, key=run_dir_sort_key)


def publish_latest(out: Path, run_dir: Path) -> Path:
    """Point ``out/report.json`` at the newest completed run (which may not be ``run_dir``).

    Listing and replacing happen under an exclusive lock, so of two runs finishing at once the one
    that replaces the link last also listed last: the link never moves back to an older run."""
    link = out / REPORT_FILE
    with (out / f".{REPORT_FILE}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = completed_runs(out)
        newest = runs[-1] if runs else run_dir
        tmp = out / f".{REPORT_FILE}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            tmp.symlink_to(Path(newest.name) / REPORT_FILE)
        except OSError:
            shutil.copyfile(newest / REPORT_FILE, tmp)
        os.replace(tmp, link)
    return link


def run_summary(report: dict, report_path: Path) -> dict:
    """The small summary of one run that the CLI prints and the operator returns as XCom."""
    return summarize_run(report, str(report_path.parent), str(report_path), sha256_file(report_path))


def summarize_run(report: dict, run_dir: str, report_location: str, report_sha256: str) -> dict:
    """The same for a run wherever it is: ``run_dir`` and ``report_location`` are paths or URIs.

    ``model`` and ``dataset`` (with their digests) travel too: the run's lineage is built from them
    without downloading the report again.
    """
    metrics = report["metrics"]
    return {
        "run_id": report["run_id"],
        "run_dir": run_dir,
        "report": report_location,
        "report_sha256": report_sha256,
        "ppl_preview": metrics["primary_metric"]["preview"],
        "ppl_final": metrics["primary_metric"]["final"],
        "tokens": metrics["tokens_processed"],
        "tokens_per_s": metrics["throughput_tokens_per_s"],
        "reused_from": (report["meta"].get("reused_from") or {}).get("report"),
        **run_identity(report),
    }


def resolve_report(reference: str | Path) -> Path:
    """Accept a report.json, a timestamped run folder, or runs/<name> (its newest run)."""
    path = Path(reference)
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        if (path / REPORT_FILE).is_file():
            return (path / REPORT_FILE).resolve()
        runs = completed_runs(path)
        if runs:
            return (runs[-1] / REPORT_FILE).resolve()
        raise BadInputError(f"{path}: no report.json in this folder or in any run under it")
    if path.name == REPORT_FILE and path.parent.is_dir():
        runs = completed_runs(path.parent)
        if runs:
            return (runs[-1] / REPORT_FILE).resolve()
    raise BadInputError(f"report not found: {reference}")
