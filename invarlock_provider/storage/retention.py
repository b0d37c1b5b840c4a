"""Retention: prune local scratch runs once archived, and prune bucket bundles by age/count.

Local runs are evidence until a bundle holding their report.json is archived; by default only
those are deleted, never the newest run of a name. Bucket bundles lose their manifest first, so a
bundle that is half-deleted when something fails reads as incomplete, never as evidence; objects
still under Object Lock retention are reported as kept.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.layout import REPORT_FILE, RUN_DIR_PATTERN, TIMESTAMP_FORMAT, publish_latest, run_dir_sort_key
from invarlock_provider.storage.archive import BundleSummary, list_bundles
from invarlock_provider.storage.objectstore import ObjectStore

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise BadInputError(f"duration {text!r}: expected a number and a unit, e.g. 14d, 12h, 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class PruneDecision:
    target: str
    delete: bool
    reason: str


def _run_time(run_dir: Path) -> datetime:
    stamp = RUN_DIR_PATTERN.match(run_dir.name).group(1)  # type: ignore[union-attr]
    return datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def plan_run_pruning(
    runs_root: Path,
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    archived: set[str],
    include_unarchived: bool,
    now: datetime,
) -> list[PruneDecision]:
    """Decide for every timestamped run under runs/<name>/ whether it may go, and why."""
    if keep_last is None and max_age is None:
        raise BadInputError("give --keep-last N and/or --max-age DURATION")
    if not runs_root.is_dir():
        raise BadInputError(f"{runs_root}: no such runs folder")
    decisions = []
    for name_dir in sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        runs = sorted(
            (p for p in name_dir.iterdir() if p.is_dir() and RUN_DIR_PATTERN.match(p.name)),
            key=run_dir_sort_key,
            reverse=True,
        )
        completed = [run for run in runs if (run / REPORT_FILE).is_file()]
        protected = {runs[0], *completed[:1]} if runs else set()
        for position, run in enumerate(runs):
            decisions.append(
                _decide_run(run, position, protected, keep_last, max_age, archived, include_unarchived, now)
            )
    return decisions


def _decide_run(
    run: Path,
    position: int,
    protected: set[Path],
    keep_last: int | None,
    max_age: timedelta | None,
    archived: set[str],
    include_unarchived: bool,
    now: datetime,
) -> PruneDecision:
    target = str(run)
    if run in protected:
        return PruneDecision(target, False, "newest run of its name")
    if keep_last is not None and position < keep_last:
        return PruneDecision(target, False, f"within the newest {keep_last}")
    age = now - _run_time(run)
    if max_age is not None and age < max_age:
        return PruneDecision(target, False, f"younger than {max_age}")
    report = run / REPORT_FILE
    if not report.is_file():
        return PruneDecision(target, True, "failed run (no report.json)")
    if sha256_file(report) in archived:
        return PruneDecision(target, True, "archived")
    if include_unarchived:
        return PruneDecision(target, True, "NOT ARCHIVED (--include-unarchived)")
    return PruneDecision(target, False, "not archived")


def prune_archived_runs(
    runs_root: Path, *, keep_last: int | None, max_age: str | None, index_path: Path, now: datetime
) -> list[str]:
    """What the DAGs' retention does: archived runs only, never the newest; returns what went."""
    from invarlock_provider.storage.index import read_index

    if keep_last is None and not max_age:
        return []
    decisions = plan_run_pruning(
        runs_root,
        keep_last=keep_last,
        max_age=parse_duration(max_age) if max_age else None,
        archived=set(read_index(index_path)),
        include_unarchived=False,
        now=now,
    )
    apply_run_pruning(decisions)
    return [d.target for d in decisions if d.delete]


def apply_run_pruning(decisions: list[PruneDecision]) -> None:
    """Delete by renaming out of the layout first, so a half-deleted run is never seen as a run."""
    touched = set()
    for decision in decisions:
        if not decision.delete:
            continue
        run = Path(decision.target)
        doomed = run.with_name(f".deleting-{run.name}")
        run.rename(doomed)
        shutil.rmtree(doomed)
        touched.add(run.parent)
    for name_dir in touched:
        if (name_dir / REPORT_FILE).is_symlink() or (name_dir / REPORT_FILE).exists():
            newest = max((p for p in name_dir.iterdir() if RUN_DIR_PATTERN.match(p.name)), key=run_dir_sort_key)
            publish_latest(name_dir, newest)


# --- bucket bundles -------------------------------------------------------------------------------


@dataclass
class BundlePruneReport:
    decisions: list[PruneDecision]
    deleted_objects: int
    kept_locked: dict[str, str]
    errors: dict[str, str]


def plan_bundle_pruning(
    bundles: list[BundleSummary],
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    grace: timedelta,
    now: datetime,
) -> list[tuple[BundleSummary, PruneDecision]]:
    """Keep the newest bundle of every report name unless an explicit ``keep_last=0`` says otherwise:
    an age rule alone must not leave a report with no evidence at all."""
    if keep_last is None and max_age is None:
        raise BadInputError("give --keep-last N and/or --max-age DURATION")
    plan = []
    by_name: dict[str, list[BundleSummary]] = {}
    for bundle in bundles:
        by_name.setdefault(bundle.report_name, []).append(bundle)
    for name_bundles in by_name.values():
        complete = sorted((b for b in name_bundles if b.complete), key=lambda b: b.created_at, reverse=True)
        for position, bundle in enumerate(complete):
            created = bundle.created_at or now
            if keep_last is None and position == 0:
                decision = PruneDecision(bundle.uri, False, "newest of its report name (--keep-last 0 allows it)")
            elif keep_last is not None and position < keep_last:
                decision = PruneDecision(bundle.uri, False, f"within the newest {keep_last}")
            elif max_age is not None and now - created < max_age:
                decision = PruneDecision(bundle.uri, False, f"younger than {max_age}")
            else:
                decision = PruneDecision(bundle.uri, True, f"created {created.isoformat(timespec='seconds')}")
            plan.append((bundle, decision))
        for bundle in (b for b in name_bundles if not b.complete):
            age = now - (bundle.newest_object or now)
            if age >= grace:
                plan.append((bundle, PruneDecision(bundle.uri, True, f"incomplete (no manifest) for {age}")))
            else:
                plan.append((bundle, PruneDecision(bundle.uri, False, f"incomplete, within the {grace} grace")))
    return plan


def prune_bundles(
    store: ObjectStore,
    prefix: str,
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    grace: timedelta = timedelta(hours=24),
    dry_run: bool = False,
    now: datetime | None = None,
) -> BundlePruneReport:
    now = now or datetime.now(UTC)
    plan = plan_bundle_pruning(list_bundles(store, prefix), keep_last=keep_last, max_age=max_age, grace=grace, now=now)
    doomed = [(bundle, decision) for bundle, decision in plan if decision.delete]
    decisions = [decision for _, decision in plan]
    report = BundlePruneReport(decisions=decisions, deleted_objects=0, kept_locked={}, errors={})
    if dry_run or not doomed:
        return report
    kept: dict[str, str] = {
        uri: f"under Object Lock until {until}" for uri, until in _locked_bundles(store, [b for b, _ in doomed], now)
    }
    report.kept_locked.update(kept)
    doomed = [(b, d) for b, d in doomed if b.uri not in kept]
    manifests = [b.manifest_key for b, _ in doomed if b.complete]
    first = store.delete(manifests)
    gone = set(first.deleted)
    rest = [
        key
        for bundle, _ in doomed
        if not bundle.complete or bundle.manifest_key in gone
        for key in bundle.keys
        if key != bundle.manifest_key
    ]
    second = store.delete(rest)
    report.deleted_objects = len(first.deleted) + len(second.deleted)
    for outcome in (first, second):
        report.errors.update(outcome.errors)
        report.kept_locked.update(outcome.kept_locked)
    problems = {**report.errors, **report.kept_locked}
    for bundle, _ in doomed:
        message = next((problems[key] for key in bundle.keys if key in problems), None)
        if message is not None:
            kept[bundle.uri] = message
    report.decisions = [
        PruneDecision(d.target, False, f"kept: {kept[d.target]}") if d.target in kept else d for d in decisions
    ]
    return report


def _locked_bundles(store: ObjectStore, bundles: list[BundleSummary], now: datetime) -> list[tuple[str, str]]:
    """Bundles whose manifest (written last, locked like the rest) is still under retention."""
    if not store.supports_object_lock():
        return []
    locked = []
    for bundle in bundles:
        key = bundle.manifest_key if bundle.complete else bundle.keys[0]
        info = store.head(key)
        if info is not None and info.locked_until is not None and info.locked_until > now:
            locked.append((bundle.uri, info.locked_until.isoformat(timespec="seconds")))
    return locked
