"""``invarlock prune``: retention for scratch runs (local or in a work store) and for bucket bundles."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from invarlock_provider.cli.errors import reports_errors
from invarlock_provider.cli.store_options import DEFAULT_ARCHIVE_ENV, ENV_HELP, is_store_uri, s3_settings, store_options
from invarlock_provider.cli.trust_options import TRUST_HELP, trust_from, trust_options
from invarlock_provider.errors import BadInputError
from invarlock_provider.storage.uri import bundle_location, check_no_control_characters

RUNS_FOLDER = "runs"

EXAMPLE = (
    """
\b
Examples:
  invarlock prune runs/ --keep-last 3 --max-age 14d --dry-run
  invarlock prune s3://evidence/nightly --max-age 365d --keep-last 10
  invarlock prune s3://work-bucket/work/runs --evidence s3://work-bucket/evidence --keep-last 1 --dry-run
\b
A TARGET whose last folder is `runs` is a runs folder (local, file:// or s3://); anything else
(a local folder, file:// or s3://) is a prefix of evidence bundles.
Runs are deleted only once their report.json is in an archived bundle that verifies now: recorded
in the archive index ($INVARLOCK_HOME/archive-index.json) or in the evidence store given by
--evidence (a work store's runs need --evidence, or INVARLOCK_ARCHIVE_URI), and that bundle
verified (signed by a trusted key, where trust is given); the newest run of every name is always
kept. Symbolic links are never followed.
Bucket bundles: only bundles that verify count (a bundle that does not, or that is dated in the
future, is reported and kept); report names are grouped by their full path; the manifest goes
first (only the one that was verified), then the rest; bundles under Object Lock are kept and
reported; the newest bundle of every report is kept unless --keep-last 0 is given.
"""
    + ENV_HELP
    + TRUST_HELP
)


@click.command("prune", epilog=EXAMPLE)
@click.argument("target")
@click.option("--keep-last", type=click.IntRange(min=0), default=None, help="Keep the N newest per name.")
@click.option("--max-age", default=None, metavar="DURATION", help="Delete only what is older, e.g. 14d, 12h.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted.")
@click.option("--include-unarchived", is_flag=True, help="Local runs: also delete runs that were never archived.")
@click.option("--index", "index_path", type=click.Path(path_type=Path), default=None)
@click.option(
    "--evidence",
    "evidence_uri",
    default=None,
    metavar="URI",
    help="Runs: the evidence store recording what is archived.",
)
@click.option("--grace", default="24h", show_default=True, help="Bucket: age after which incomplete bundles go.")
@click.option("--json", "as_json", is_flag=True)
@trust_options
@store_options
@reports_errors
def prune_command(
    target: str,
    keep_last: int | None,
    max_age: str | None,
    dry_run: bool,
    include_unarchived: bool,
    index_path: Path | None,
    evidence_uri: str | None,
    grace: str,
    as_json: bool,
    trusted_keys: tuple[Path, ...],
    trust_file: Path | None,
    fingerprints: tuple[str, ...],
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
) -> None:
    """Prune TARGET: a runs/ folder, or a prefix of bundles (a local folder, s3://… or file://…)."""
    from invarlock_provider.storage.retention import parse_duration

    age = parse_duration(max_age) if max_age else None
    now = datetime.now(UTC)
    settings = s3_settings(endpoint_url, region, path_style)
    trust = trust_from(trusted_keys, trust_file, fingerprints)
    if not _is_runs_folder(target):
        _prune_bucket(target, keep_last, age, parse_duration(grace), dry_run, as_json, now, settings, trust)
        return
    from invarlock_provider.storage.index import ArchivedRuns, default_index_path, read_index
    from invarlock_provider.storage.retention import plan_runs
    from invarlock_provider.storage.stores import open_store
    from invarlock_provider.storage.workstore import RemoteFolder, work_location

    runs = work_location(target, settings)
    remote = isinstance(runs, RemoteFolder)  # a work store's runs: only the evidence store knows what is archived
    evidence_uri = evidence_uri or (os.environ.get(DEFAULT_ARCHIVE_ENV) if remote else None)
    if remote and not evidence_uri:
        raise BadInputError(f"{target}: give --evidence URI (the evidence store that records which runs are archived)")
    index = None if remote else read_index(index_path or default_index_path())
    evidence = open_store(evidence_uri, settings) if evidence_uri else None
    archived = ArchivedRuns.from_sources(evidence, index, trust, settings)
    decisions, apply = plan_runs(
        runs,
        keep_last=keep_last,
        max_age=age,
        archived=archived,
        include_unarchived=include_unarchived,
        now=now,
    )
    if include_unarchived and any(d.delete and "NOT ARCHIVED" in d.reason for d in decisions):
        click.echo("WARNING: --include-unarchived deletes runs whose reports were never archived", err=True)
    if not dry_run:
        apply()
    _print(decisions, dry_run, as_json)


def _is_runs_folder(target: str) -> bool:
    """A TARGET whose last folder is ``runs``; anything else, a plain path included, is a prefix of
    bundles, as its file:// URI is. A plain path is named as the shell names it (``.`` inside runs/)."""
    check_no_control_characters(target, "prune")
    if is_store_uri(target):
        return target.rstrip("/").rsplit("/", 1)[-1] == RUNS_FOLDER
    return Path(os.path.abspath(target)).name == RUNS_FOLDER


def _prune_bucket(
    target: str,
    keep_last: int | None,
    age: timedelta | None,
    grace: timedelta,
    dry_run: bool,
    as_json: bool,
    now: datetime,
    settings: Any,
    trust: Any,
) -> None:
    from invarlock_provider.storage.retention import prune_bundles
    from invarlock_provider.storage.stores import check_store, open_store

    root, base = bundle_location(target)
    store = open_store(root, settings)
    if root.scheme == "s3":
        check_store(store)
    report = prune_bundles(
        store, base, keep_last=keep_last, max_age=age, grace=grace, dry_run=dry_run, now=now, trust=trust
    )
    extra = {"deleted_objects": report.deleted_objects, "errors": report.errors, "unverified": report.unverified}
    _print(report.decisions, dry_run, as_json, extra=extra)
    if report.unverified and not as_json:
        click.echo(
            f"WARNING: {len(report.unverified)} bundles with a manifest do not verify; kept and not counted "
            "(invarlock verify names what is wrong)",
            err=True,
        )
    if report.errors:
        raise SystemExit(1)


def _print(decisions: list[Any], dry_run: bool, as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        rows = [{"target": d.target, "delete": d.delete, "reason": d.reason} for d in decisions]
        click.echo(json.dumps({"dry_run": dry_run, "decisions": rows, **(extra or {})}, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for decision in decisions:
        click.echo(f"{verb if decision.delete else 'kept':<12} {decision.target}  ({decision.reason})")
    deleted = sum(d.delete for d in decisions)
    click.echo(f"{deleted} {verb}, {len(decisions) - deleted} kept")
