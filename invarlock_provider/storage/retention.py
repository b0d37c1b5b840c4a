"""Retention: prune scratch runs once archived, and prune bucket bundles by age/count.

Runs are evidence until a bundle holding their report.json is archived *and verifies*: a record
saying so is only a claim, so the bundle it names is verified (with the deployment's trust) before
a run goes, never the newest run of a name. Bucket bundles are judged only by bundles that verify:
one that does not (a forged or damaged manifest, a future date) is reported and kept, and never
counts as newer than the real evidence. Report names are grouped by their full path, so
``teamA/quant8`` and ``teamB/quant8`` keep their own newest. A bundle loses its manifest first,
by a conditional delete of the very manifest that was verified, so a bundle that is half-deleted
when something fails reads as incomplete, never as evidence; objects still under Object Lock
retention are reported as kept. Symbolic links are never followed.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from invarlock_provider.errors import BadInputError, InvarlockError
from invarlock_provider.fileio import sha256_bytes, sha256_file
from invarlock_provider.layout import REPORT_FILE, RUN_DIR_PATTERN, publish_latest, run_dir_sort_key
from invarlock_provider.reporting.verify import Verification
from invarlock_provider.storage.bundle import CLOCK_SKEW
from invarlock_provider.storage.bundle_reader import (
    VERIFIERS,
    BundleSummary,
    guarded,
    list_bundles,
    verify_remote_bundle,
)
from invarlock_provider.storage.index import ArchivedRuns
from invarlock_provider.storage.objectstore import ObjectRetainedError, ObjectStore
from invarlock_provider.storage.uri import join_key
from invarlock_provider.storage.workstore import RemoteFolder, is_complete, run_time

_DURATION = re.compile(r"^(\d+)([smhdw])\Z")
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


def _require_rule(keep_last: int | None, max_age: timedelta | None) -> None:
    if keep_last is None and max_age is None:
        raise BadInputError("give --keep-last N and/or --max-age DURATION")


@dataclass(frozen=True)
class RunFolder:
    """One timestamped run, on disk or in a work store; its report is hashed only if it may go."""

    target: str
    dir_name: str
    complete: bool
    report_digest: Callable[[], str]


def plan_run_pruning(
    runs_root: Path,
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    archived: ArchivedRuns,
    include_unarchived: bool,
    now: datetime,
) -> list[PruneDecision]:
    """Decide for every timestamped run under runs/<name>/ whether it may go, and why."""
    _require_rule(keep_last, max_age)
    if not runs_root.is_dir():
        raise BadInputError(f"{runs_root}: no such runs folder")
    by_name = {}
    links = []
    for name_dir in sorted(p for p in runs_root.iterdir() if _plain_dir(p) and not p.name.startswith(".")):
        runs = [p for p in name_dir.iterdir() if RUN_DIR_PATTERN.fullmatch(p.name) and (p.is_symlink() or p.is_dir())]
        links += [PruneDecision(str(p), False, "a symbolic link, never followed") for p in runs if p.is_symlink()]
        by_name[name_dir.name] = [
            RunFolder(str(p), p.name, _plain_file(p / REPORT_FILE), functools.partial(sha256_file, p / REPORT_FILE))
            for p in runs
            if not p.is_symlink()
        ]
    decisions = plan_folder_pruning(
        by_name,
        keep_last=keep_last,
        max_age=max_age,
        archived=archived,
        include_unarchived=include_unarchived,
        now=now,
    )
    return decisions + links


def _plain_dir(path: Path) -> bool:
    return not path.is_symlink() and path.is_dir()


def _plain_file(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()


def plan_folder_pruning(
    by_name: dict[str, list[RunFolder]],
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    archived: ArchivedRuns,
    include_unarchived: bool,
    now: datetime,
) -> list[PruneDecision]:
    """The retention rules, one place for local folders and work stores alike."""
    _require_rule(keep_last, max_age)
    decisions = []
    for name in sorted(by_name):
        runs = sorted(by_name[name], key=lambda run: run_dir_sort_key(Path(run.dir_name)), reverse=True)
        completed = [run for run in runs if run.complete]
        protected = {runs[0].target, *(run.target for run in completed[:1])} if runs else set()
        for position, run in enumerate(runs):
            decisions.append(
                _decide_run(run, position, protected, keep_last, max_age, archived, include_unarchived, now)
            )
    return decisions


def _decide_run(
    run: RunFolder,
    position: int,
    protected: set[str],
    keep_last: int | None,
    max_age: timedelta | None,
    archived: ArchivedRuns,
    include_unarchived: bool,
    now: datetime,
) -> PruneDecision:
    target = run.target
    if target in protected:
        return PruneDecision(target, False, "newest run of its name")
    if keep_last is not None and position < keep_last:
        return PruneDecision(target, False, f"within the newest {keep_last}")
    age = now - run_time(run.dir_name)
    if max_age is not None and age < max_age:
        return PruneDecision(target, False, f"younger than {max_age}")
    if not run.complete:
        return PruneDecision(target, True, "failed run (no report.json)")
    why_not = archived.check(run.report_digest())
    if why_not is None:
        return PruneDecision(target, True, "archived (its bundle verifies)")
    if include_unarchived:
        return PruneDecision(target, True, f"NOT ARCHIVED (--include-unarchived; {why_not})")
    return PruneDecision(target, False, why_not)


def plan_runs(
    runs_root: Path | RemoteFolder,
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    archived: ArchivedRuns,
    include_unarchived: bool,
    now: datetime,
) -> tuple[list[PruneDecision], Callable[[], None]]:
    """The decisions for a runs folder on disk or in a work store, and what carries them out."""
    if isinstance(runs_root, RemoteFolder):
        by_name, objects = store_run_folders(runs_root)
        decisions = plan_folder_pruning(
            by_name,
            keep_last=keep_last,
            max_age=max_age,
            archived=archived,
            include_unarchived=include_unarchived,
            now=now,
        )
        return decisions, functools.partial(apply_store_run_pruning, runs_root.store, decisions, objects)
    decisions = plan_run_pruning(
        runs_root,
        keep_last=keep_last,
        max_age=max_age,
        archived=archived,
        include_unarchived=include_unarchived,
        now=now,
    )
    return decisions, functools.partial(apply_run_pruning, decisions)


def prune_archived_runs(
    runs_root: Path | RemoteFolder,
    *,
    keep_last: int | None,
    max_age: str | None,
    archived: ArchivedRuns,
    now: datetime,
) -> list[str]:
    """What the DAGs' retention does: archived runs only, never the newest; returns what went."""
    if keep_last is None and not max_age:
        return []
    age = parse_duration(max_age) if max_age else None
    decisions, apply = plan_runs(
        runs_root, keep_last=keep_last, max_age=age, archived=archived, include_unarchived=False, now=now
    )
    apply()
    return [d.target for d in decisions if d.delete]


def store_run_folders(runs: RemoteFolder) -> tuple[dict[str, list[RunFolder]], dict[str, list[str]]]:
    """runs/<name>/<timestamp>/ folders of a work store from one listing, and the keys of each."""
    depth = len(runs.key.split("/"))
    keys: dict[tuple[str, str], list[str]] = {}
    for info in runs.store.list(runs.key):
        parts = info.key.split("/")
        if len(parts) > depth + 2 and RUN_DIR_PATTERN.match(parts[depth + 1]):
            keys.setdefault((parts[depth], parts[depth + 1]), []).append(info.key)
    by_name: dict[str, list[RunFolder]] = {}
    objects: dict[str, list[str]] = {}
    for (name, dir_name), run_keys in sorted(keys.items()):
        folder = runs.child(name, dir_name)
        report_key = join_key(folder.key, REPORT_FILE)
        digest = functools.partial(_stored_digest, runs.store, report_key)
        by_name.setdefault(name, []).append(RunFolder(folder.uri, dir_name, is_complete(run_keys, folder.key), digest))
        objects[folder.uri] = run_keys
    return by_name, objects


def _stored_digest(store: ObjectStore, key: str) -> str:
    return sha256_bytes(store.read_bytes(key))


def apply_store_run_pruning(store: ObjectStore, decisions: list[PruneDecision], objects: dict[str, list[str]]) -> None:
    """report.json goes first, so a half-deleted run reads as unfinished, never as a run to reuse."""
    for decision in decisions:
        if not decision.delete:
            continue
        keys = objects[decision.target]
        reports = [key for key in keys if key.endswith(f"/{REPORT_FILE}")]
        for batch in (reports, [key for key in keys if key not in reports]):
            outcome = store.delete(batch)
            if outcome.errors or outcome.kept_locked:
                key, message = next(iter({**outcome.errors, **outcome.kept_locked}.items()))
                raise InvarlockError(f"{store.uri.locate(key)}: could not delete ({message})")


def apply_run_pruning(decisions: list[PruneDecision]) -> None:
    """Delete by renaming out of the layout first, so a half-deleted run is never seen as a run."""
    touched = set()
    for decision in decisions:
        if not decision.delete:
            continue
        run = Path(decision.target)
        if not _plain_dir(run):  # replaced by a link since it was planned: never followed
            continue
        doomed = run.with_name(f".deleting-{run.name}")
        run.rename(doomed)
        shutil.rmtree(doomed)  # removes links inside, never their targets
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
    unverified: list[str] = field(default_factory=list)  # bundles with a manifest that do not verify


def plan_bundle_pruning(
    bundles: list[BundleSummary],
    verified: dict[str, Verification],
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    grace: timedelta,
    now: datetime,
) -> list[tuple[BundleSummary, PruneDecision]]:
    """Rank, per report path, only the bundles that verify and are not dated in the future; keep the
    newest of every report path unless an explicit ``keep_last=0`` says otherwise (an age rule alone
    must not leave a report with no evidence at all). ``verified``: bundle key -> its verification."""
    if keep_last is None and max_age is None:
        raise BadInputError("give --keep-last N and/or --max-age DURATION")
    plan = []
    by_path: dict[str, list[BundleSummary]] = {}
    for bundle in bundles:
        by_path.setdefault(bundle.report_path, []).append(bundle)
    for path_bundles in by_path.values():
        ranked = []
        for bundle in (b for b in path_bundles if b.has_manifest):
            problem = _why_unranked(bundle, verified.get(bundle.key), now)
            if problem is None:
                ranked.append(bundle)
            else:
                plan.append((bundle, PruneDecision(bundle.uri, False, f"{problem}; kept, not counted")))
        ranked.sort(key=lambda b: (b.created_at, b.key), reverse=True)
        for position, bundle in enumerate(ranked):
            created = bundle.created_at
            if keep_last is None and position == 0:
                decision = PruneDecision(bundle.uri, False, "newest of its report name (--keep-last 0 allows it)")
            elif keep_last is not None and position < keep_last:
                decision = PruneDecision(bundle.uri, False, f"within the newest {keep_last}")
            elif max_age is not None and now - created < max_age:  # type: ignore[operator]
                decision = PruneDecision(bundle.uri, False, f"younger than {max_age}")
            else:
                decision = PruneDecision(bundle.uri, True, f"created {created.isoformat(timespec='seconds')}")  # type: ignore[union-attr]
            plan.append((bundle, decision))
        for bundle in (b for b in path_bundles if not b.has_manifest):
            age = now - (bundle.newest_object or now)
            if age >= grace:
                plan.append((bundle, PruneDecision(bundle.uri, True, f"incomplete (no manifest) for {age}")))
            else:
                plan.append((bundle, PruneDecision(bundle.uri, False, f"incomplete, within the {grace} grace")))
    return plan


def _why_unranked(bundle: BundleSummary, verification: Verification | None, now: datetime) -> str | None:
    """Why a bundle with a manifest may not count as evidence for retention; None when it may."""
    if verification is None or not verification.ok:
        failed = verification.failed()[0] if verification is not None else None
        return f"DOES NOT VERIFY ({failed.name}: {failed.detail})" if failed else "DOES NOT VERIFY"
    created = bundle.created_at
    received = bundle.manifest_info.last_modified if bundle.manifest_info else now
    if created is None or created > now + CLOCK_SKEW or created > received + CLOCK_SKEW:
        return f"DATED IN THE FUTURE (created_at {bundle.manifest and bundle.manifest.get('created_at')})"
    return None


def verify_all(store: ObjectStore, bundles: list[BundleSummary], trust: Any = None) -> dict[str, Verification]:
    """Every bundle with a manifest, verified in parallel; each failure that bundle's own."""

    def verify(bundle: BundleSummary) -> Verification:
        return guarded(
            bundle.uri, lambda: verify_remote_bundle(store, bundle.key, bundle.uri, trust, attachments=False)
        )

    with_manifest = [bundle for bundle in bundles if bundle.has_manifest]
    with ThreadPoolExecutor(max_workers=VERIFIERS) as pool:
        return dict(zip([b.key for b in with_manifest], pool.map(verify, with_manifest), strict=True))


def prune_bundles(
    store: ObjectStore,
    prefix: str,
    *,
    keep_last: int | None,
    max_age: timedelta | None,
    grace: timedelta = timedelta(hours=24),
    dry_run: bool = False,
    now: datetime | None = None,
    trust: Any = None,
) -> BundlePruneReport:
    now = now or datetime.now(UTC)
    bundles = list_bundles(store, prefix)
    verified = verify_all(store, bundles, trust)
    plan = plan_bundle_pruning(bundles, verified, keep_last=keep_last, max_age=max_age, grace=grace, now=now)
    decisions = [decision for _, decision in plan]
    unverified = [bundle.uri for bundle, d in plan if bundle.has_manifest and "kept, not counted" in d.reason]
    report = BundlePruneReport(decisions=decisions, deleted_objects=0, kept_locked={}, errors={}, unverified=unverified)
    doomed = [(bundle, decision) for bundle, decision in plan if decision.delete]
    if dry_run or not doomed:
        return report
    kept: dict[str, str] = {
        uri: f"under Object Lock until {until}" for uri, until in _locked_bundles(store, [b for b, _ in doomed], now)
    }
    for bundle, _ in doomed:
        if bundle.uri in kept:
            continue
        reason = _delete_bundle(store, bundle, verified.get(bundle.key), report)
        if reason is not None:
            kept[bundle.uri] = reason
    report.kept_locked.update({uri: reason for uri, reason in kept.items() if "Object Lock" in reason})
    report.decisions = [
        PruneDecision(d.target, False, f"kept: {kept[d.target]}") if d.target in kept else d for d in decisions
    ]
    return report


def _delete_bundle(
    store: ObjectStore, bundle: BundleSummary, verification: Verification | None, report: BundlePruneReport
) -> str | None:
    """Manifest first (only the one that was verified), then the rest; why it was kept, or None."""
    if bundle.has_manifest:
        etag = verification.manifest_etag if verification is not None else None
        try:
            if etag is None or not store.delete_if_match(bundle.manifest_key, etag):
                return "its manifest changed or vanished while being pruned"
        except ObjectRetainedError as exc:  # retention the store enforces, though our clock says it is over
            report.kept_locked[bundle.manifest_key] = str(exc)
            return str(exc)
        except InvarlockError as exc:
            report.errors[bundle.manifest_key] = str(exc)
            return str(exc)
        report.deleted_objects += 1
    elif store.head(bundle.manifest_key) is not None:
        return "completed by an archive while being pruned"
    outcome = store.delete(bundle.keys)
    report.deleted_objects += len([key for key in outcome.deleted if key != bundle.manifest_key])
    report.errors.update(outcome.errors)
    report.kept_locked.update(outcome.kept_locked)
    problems = {**outcome.errors, **outcome.kept_locked}
    return next((problems[key] for key in bundle.keys if key in problems), None)


def _locked_bundles(store: ObjectStore, bundles: list[BundleSummary], now: datetime) -> list[tuple[str, str]]:
    """Bundles whose manifest (written last, locked like the rest) is still under retention."""
    if not store.supports_object_lock():
        return []
    locked = []
    for bundle in bundles:
        key = bundle.manifest_key if bundle.has_manifest else bundle.keys[0]
        info = store.head(key)
        if info is not None and info.locked_until is not None and info.locked_until > now:
            locked.append((bundle.uri, info.locked_until.isoformat(timespec="seconds")))
    return locked
