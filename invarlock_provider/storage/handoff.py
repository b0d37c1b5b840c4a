"""What the CLI and the operators do to read runs and write reports, wherever they live.

Each function takes a location as a person or an XCom gives it (a local path, ``file://`` or
``s3://``) and a private scratch folder for what has to be local while it is worked on; callers
remove the scratch when they are done, so nothing of one task is left for another to trip over.
The scratch mirrors the stores' keys, ``scratch/<bucket>/<key>``, for the runs read and the
reports folder written alike: a relative path between two of them is the relative key between
them in the bucket, so a reference written into an evaluation holds where it is published.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.reporting.evaluation import EVALUATION_FILE, HTML_FILE, JUNIT_FILE
from invarlock_provider.reporting.run_report import RunReport, load_run_report
from invarlock_provider.storage.objectstore import ObjectStore
from invarlock_provider.storage.uri import check_segment
from invarlock_provider.storage.workstore import (
    RemoteFolder,
    fetch_report,
    fetch_reports,
    publish_reports,
    work_location,
)


@dataclass(frozen=True)
class WrittenReport:
    evaluation: dict[str, Any]
    evaluation_uri: str
    evaluation_sha256: str
    report_dir: str
    page: str
    shown: str  # how a person reads the location: the path as given, or the URI
    events_copied: bool
    publish_s: float  # time spent handing the folder to the store (0 for a local folder)
    junit_uri: str | None = None  # the gates as JUnit XML, when written


def location_uri(location: Path | RemoteFolder) -> str:
    return location.uri if isinstance(location, RemoteFolder) else location.resolve().as_uri()


def load_run(reference: str, role: str, scratch: Path, settings: Any = None, sha256: str | None = None) -> RunReport:
    """A run report from a path or URI; with ``sha256`` (what XCom recorded) its bytes must match."""
    from invarlock_provider.layout import resolve_report

    location = work_location(reference, settings)
    if isinstance(location, RemoteFolder):
        return load_run_report(fetch_report(location, scratch / location.store.uri.bucket, sha256), role)
    report = load_run_report(resolve_report(location), role)
    if sha256 and report.sha256 != sha256:
        raise BadInputError(f"{report.path}: sha256 {report.sha256} differs from {sha256} recorded by the caller")
    return report


def write_report(
    output: str,
    subject: RunReport,
    baseline: RunReport,
    policy: Any,
    *,
    scratch: Path,
    settings: Any = None,
    copy_baseline: bool = False,
    with_events: bool = False,
    html: bool = False,
    junit: bool = False,
) -> WrittenReport:
    """Write reports/<name>/ where ``output`` says; a store folder is built in scratch, then published.
    ``with_events`` copies the subject run's events.jsonl beside its report when the run has one."""
    from invarlock_provider.reporting.evaluation import copy_run_events, write_evaluation
    from invarlock_provider.reporting.html import write_html

    location = work_location(output, settings)
    # The folder's name is the report name every bundle of it will carry: refused here, not at archive.
    check_segment(location.name if isinstance(location, RemoteFolder) else location.resolve().name, "report name")
    local = scratch / location.store.uri.bucket / location.key if isinstance(location, RemoteFolder) else location
    theirs = _mirrored_bucket(baseline.path, scratch)
    if not copy_baseline and theirs != _mirrored_bucket(local, scratch):
        where = f"s3://{theirs}" if theirs else "a local folder"
        raise BadInputError(
            f"--output {output}: the baseline is in {where}, another store than the output, so the evaluation "
            "cannot reference it by a relative path; pass --copy-baseline"
        )
    target, evaluation, beside = write_evaluation(local, subject, baseline, policy, copy_baseline=copy_baseline)
    events_copied = with_events and copy_run_events(subject.path.parent, local)
    if html:
        write_html(target, evaluation)
    if junit:
        from invarlock_provider.fileio import write_bytes_atomic
        from invarlock_provider.reporting.junit import junit_xml

        write_bytes_atomic(local / JUNIT_FILE, junit_xml(evaluation, local.name))
    page = HTML_FILE if html else EVALUATION_FILE
    started = time.perf_counter()
    if isinstance(location, RemoteFolder):
        digest = publish_reports(local, location, beside)
        uri, page_uri, shown = location.child(EVALUATION_FILE).uri, location.child(page).uri, None
    else:
        digest = sha256_file(target)
        uri, page_uri, shown = target.resolve().as_uri(), (local / page).resolve().as_uri(), str(target)
    publish_s = time.perf_counter() - started if isinstance(location, RemoteFolder) else 0.0
    junit_uri = None
    if junit:
        remote = isinstance(location, RemoteFolder)
        junit_uri = location.child(JUNIT_FILE).uri if remote else (local / JUNIT_FILE).resolve().as_uri()
    return WrittenReport(
        evaluation, uri, digest, location_uri(location), page_uri, shown or uri, events_copied, publish_s, junit_uri
    )


def _mirrored_bucket(path: Path, scratch: Path) -> str | None:
    """The bucket whose mirror in scratch holds ``path``; None for a local file, which is outside it."""
    try:
        return path.resolve().relative_to(scratch.resolve()).parts[0]
    except ValueError:
        return None


def stage_reports(
    reference: str, scratch: Path, settings: Any = None, sha256: str | None = None
) -> tuple[Path, dict[Path, tuple[ObjectStore, str]]]:
    """A reports/<name>/ folder ready to archive: local as it is, or downloaded from a store (with
    where each file came from, so the archive can copy it server side)."""
    location = work_location(reference, settings)
    if not isinstance(location, RemoteFolder):
        if sha256 and (location / EVALUATION_FILE).is_file() and sha256_file(location / EVALUATION_FILE) != sha256:
            raise BadInputError(f"{location / EVALUATION_FILE}: sha256 differs from {sha256} recorded by the caller")
        return location, {}
    local, sources = fetch_reports(location, scratch, sha256)
    return local, {path: (location.store, key) for path, key in sources.items()}
