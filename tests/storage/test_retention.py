"""Retention for local runs (archive index) and bucket bundles (real SeaweedFS, local folder)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invarlock_provider.errors import BadInputError
from invarlock_provider.fileio import sha256_file
from invarlock_provider.storage.archive import archive_report
from invarlock_provider.storage.bundle_reader import list_bundles
from invarlock_provider.storage.retention import parse_duration, plan_run_pruning, prune_bundles
from invarlock_provider.storage.s3 import S3Store
from invarlock_provider.storage.stores import open_store
from invarlock_provider.storage.uri import parse_store_uri
from tests.storage.conftest import cli, date_evaluation

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def make_runs(root: Path, name: str, stamps: list[str], failed: tuple[str, ...] = ()) -> list[Path]:
    runs = []
    for stamp in stamps:
        run = root / name / stamp
        run.mkdir(parents=True)
        (run / "events.jsonl").write_text("{}\n")
        if stamp not in failed:
            (run / "report.json").write_text(json.dumps({"run": f"{name}/{stamp}"}))
        runs.append(run)
    return runs


def test_durations() -> None:
    assert parse_duration("14d") == timedelta(days=14)
    assert parse_duration("12h") == timedelta(hours=12)
    with pytest.raises(BadInputError, match="expected a number and a unit"):
        parse_duration("two weeks")


class Claims:
    """The planning rules alone: which digests count as archived (real bundles are verified by
    ArchivedRuns; tests below and in test_evidence_integrity.py use real ones)."""

    def __init__(self, digests: set[str]) -> None:
        self.digests = digests

    def check(self, digest: str) -> str | None:
        return None if digest in self.digests else "not archived"


def test_only_archived_runs_are_pruned_and_never_the_newest(tmp_path: Path) -> None:
    runs = make_runs(
        tmp_path / "runs",
        "quant8",
        ["20260101_000000", "20260102_000000", "20260103_000000", "20260530_000000"],
        failed=("20260102_000000",),
    )
    archived = Claims({sha256_file(runs[0] / "report.json")})
    decisions = {
        Path(d.target).name: d
        for d in plan_run_pruning(
            tmp_path / "runs",
            keep_last=None,
            max_age=timedelta(days=14),
            archived=archived,
            include_unarchived=False,
            now=NOW,
        )
    }
    assert decisions["20260101_000000"].delete
    assert decisions["20260101_000000"].reason == "archived (its bundle verifies)"
    assert decisions["20260102_000000"].delete and "failed run" in decisions["20260102_000000"].reason
    assert not decisions["20260103_000000"].delete and decisions["20260103_000000"].reason == "not archived"
    assert not decisions["20260530_000000"].delete and decisions["20260530_000000"].reason == "newest run of its name"


def test_prune_cli_deletes_archived_runs_and_keeps_latest_pointer(
    tmp_path: Path, reports: Path, index_path: Path
) -> None:
    """Two old runs whose reports are in a bundle that verifies go; the newest run stays."""
    runs = make_runs(tmp_path / "runs", "baseline", ["20250101_000000", "20250102_000000", "20250103_000000"])
    shutil.copy(reports / "quant8_balanced" / "report.json", runs[0] / "report.json")
    shutil.copy(reports / "baseline" / "report.json", runs[1] / "report.json")
    (tmp_path / "runs" / "baseline" / "report.json").symlink_to("20250103_000000/report.json")
    code, _, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", (tmp_path / "evidence").as_uri())
    assert code == 0, stderr
    code, stdout, _ = cli("prune", str(tmp_path / "runs"), "--keep-last", "1", "--dry-run")
    assert code == 0 and "would delete" in stdout and "2 would delete, 1 kept" in stdout
    assert all(r.exists() for r in runs)
    code, stdout, _ = cli("prune", str(tmp_path / "runs"), "--keep-last", "1")
    assert code == 0 and "2 deleted, 1 kept" in stdout
    assert [r.exists() for r in runs] == [False, False, True]
    assert json.loads((tmp_path / "runs" / "baseline" / "report.json").read_text())["run"] == "baseline/20250103_000000"
    assert not list((tmp_path / "runs" / "baseline").glob(".deleting-*"))


def test_include_unarchived_is_loud(tmp_path: Path, index_path: Path) -> None:
    runs = make_runs(tmp_path / "runs", "x", ["20250101_000000", "20250102_000000"])
    code, stdout, stderr = cli("prune", str(tmp_path / "runs"), "--max-age", "1d", "--include-unarchived")
    assert code == 0
    assert "WARNING: --include-unarchived" in stderr and "NOT ARCHIVED" in stdout
    assert [r.exists() for r in runs] == [False, True]


def test_prune_needs_a_rule(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    code, _, stderr = cli("prune", str(tmp_path / "runs"))
    assert code == 2 and "give --keep-last N and/or --max-age DURATION" in stderr


# --- bucket bundles -----------------------------------------------------------------------------------


class RecordingStore:
    """Wraps a real store and records the order of delete requests (no behaviour changed)."""

    def __init__(self, store) -> None:
        self._store = store
        self.uri = store.uri
        self.deletes: list[list[str]] = []

    def delete(self, keys: list[str]):
        self.deletes.append(list(keys))
        return self._store.delete(keys)

    def delete_if_match(self, key: str, etag: str) -> bool:
        self.deletes.append([f"if-match:{key}"])
        return self._store.delete_if_match(key, etag)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def archive_two_versions(store, reports: Path, index_path: Path) -> tuple[str, str]:
    date_evaluation(reports / "quant8_balanced", NOW - timedelta(days=400))
    first = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    folder = reports / "quant8_balanced"
    code, _, stderr = cli(
        "report",
        "--run",
        str(folder / "report.json"),
        "--baseline",
        str(reports / "baseline" / "report.json"),
        "--format",
        "report",
        "--output",
        str(folder),
        "--tier",
        "aggressive",
    )  # new evidence under the same report name
    assert code == 0, stderr
    date_evaluation(reports / "quant8_balanced", NOW - timedelta(days=2))
    second = archive_report(store, reports / "quant8_balanced", index_path=index_path)
    return first.evidence_id, second.evidence_id


def test_bucket_prune_by_age_deletes_manifest_first(
    seaweed, bucket, s3_settings, reports: Path, index_path: Path
) -> None:
    store = RecordingStore(S3Store(parse_store_uri(f"s3://{bucket}/nightly"), s3_settings))
    old, new = archive_two_versions(store, reports, index_path)
    dry = prune_bundles(store, "nightly", keep_last=None, max_age=timedelta(days=365), dry_run=True, now=NOW)
    assert {Path(d.target).name: d.delete for d in dry.decisions} == {old: True, new: False}
    assert store.deletes == []
    report = prune_bundles(store, "nightly", keep_last=None, max_age=timedelta(days=365), now=NOW)
    assert report.deleted_objects == 4 and not report.errors  # 3 files + manifest; the html went with the dating
    assert store.deletes[0] == [f"if-match:nightly/quant8_balanced/{old}/manifest.json"]  # the one verified
    assert len(store.deletes) == 2
    remaining = [b.evidence_id for b in list_bundles(store, "nightly")]
    assert remaining == [new]


def test_bucket_prune_keep_last_and_incomplete_bundles(
    seaweed, bucket, s3_settings, reports: Path, index_path: Path
) -> None:
    store = S3Store(parse_store_uri(f"s3://{bucket}/nightly"), s3_settings)
    _, new = archive_two_versions(store, reports, index_path)
    seaweed.client().put_object(
        Bucket=bucket, Key="nightly/quant8_balanced/ev-0123456789abcdef01234567/report.json", Body=b"{}"
    )
    within_grace = prune_bundles(store, "nightly", keep_last=1, max_age=None, now=datetime.now(UTC))
    assert sorted(b.evidence_id for b in list_bundles(store, "nightly")) == sorted([new, "ev-0123456789abcdef01234567"])
    assert any("within the" in d.reason and "grace" in d.reason for d in within_grace.decisions)
    prune_bundles(store, "nightly", keep_last=1, max_age=None, now=datetime.now(UTC) + timedelta(days=2))
    assert [b.evidence_id for b in list_bundles(store, "nightly")] == [new]


def test_locked_bundles_are_kept_and_reported(
    seaweed, locked_bucket, s3_settings, reports: Path, index_path: Path
) -> None:
    store = S3Store(parse_store_uri(f"s3://{locked_bucket}/nightly"), s3_settings)
    result = archive_report(store, reports / "quant8_balanced", object_lock_days=1, index_path=index_path)
    before = seaweed.client().list_object_versions(Bucket=locked_bucket)
    report = prune_bundles(store, "nightly", keep_last=0, max_age=timedelta(0), now=datetime.now(UTC))
    assert report.deleted_objects == 0 and not report.errors
    assert "under Object Lock until" in next(iter(report.kept_locked.values()))
    assert [d.delete for d in report.decisions] == [False]
    after = seaweed.client().list_object_versions(Bucket=locked_bucket)
    assert after.get("Versions") == before.get("Versions") and not after.get("DeleteMarkers")
    assert [b.evidence_id for b in list_bundles(store, "nightly")] == [result.evidence_id]

    # Even when our clock says the retention is over, the server's lock decides: nothing is deleted.
    later = prune_bundles(
        store, "nightly", keep_last=0, max_age=timedelta(0), now=datetime.now(UTC) + timedelta(days=2)
    )
    assert later.deleted_objects == 0 and later.kept_locked
    assert seaweed.client().list_object_versions(Bucket=locked_bucket).get("Versions") == before.get("Versions")


def test_bucket_prune_paginates_and_batches(seaweed, bucket, s3_settings, reports: Path) -> None:
    """25 real bundles and 1,250 objects: listing crosses the 1,000-key page, deletes the 1,000-key batch."""
    client = seaweed.client()
    store = RecordingStore(S3Store(parse_store_uri(f"s3://{bucket}/bulk"), s3_settings))
    for number in range(25):
        folder = reports / f"r{number % 3}"
        if not folder.exists():
            shutil.copytree(reports / "quant8_balanced", folder)
        date_evaluation(folder, NOW - timedelta(days=100 + number))
        result = archive_report(store, folder)
        for extra in range(50 - len(list(store.list(result.bundle_key)))):
            client.put_object(Bucket=bucket, Key=f"{result.bundle_key}/extra/f{extra}.json", Body=b"{}")
    assert len([info for info in store.list("bulk") if "/.archived-runs/" not in info.key]) == 1250
    report = prune_bundles(store, "bulk", keep_last=0, max_age=timedelta(days=1), now=NOW)
    assert report.deleted_objects == 1250 and not report.errors and not report.unverified
    assert [info.key for info in store.list("bulk") if "/.archived-runs/" not in info.key] == []


def test_an_age_rule_alone_keeps_the_newest_bundle_of_each_name(seaweed, bucket, s3_settings, reports: Path) -> None:
    store = S3Store(parse_store_uri(f"s3://{bucket}/old"), s3_settings)
    ids = []
    for number, name in enumerate(["a", "a", "b"]):
        folder = reports / name
        if not folder.exists():
            shutil.copytree(reports / "quant8_balanced", folder)
        date_evaluation(folder, NOW - timedelta(days=400 - number))
        ids.append(archive_report(store, folder).evidence_id)
    report = prune_bundles(store, "old", keep_last=None, max_age=timedelta(days=30), now=NOW)
    assert sorted(b.evidence_id for b in list_bundles(store, "old")) == sorted(ids[1:])
    assert sum("newest of its report name" in d.reason for d in report.decisions) == 2


def test_file_store_archive_verify_and_prune(reports: Path, tmp_path: Path, index_path: Path) -> None:
    """The embedded default: a local folder laid out like a bucket."""
    uri = (tmp_path / "evidence").as_uri()
    code, stdout, stderr = cli("archive", str(reports / "quant8_balanced"), "--to", uri, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    bundle_dir = tmp_path / "evidence" / "quant8_balanced" / result["evidence_id"]
    assert (bundle_dir / "manifest.json").is_file() and (bundle_dir / "baseline" / "report.json").is_file()
    assert result["bundle_uri"] == bundle_dir.as_uri()
    assert cli("archive", str(reports / "quant8_balanced"), "--to", uri, "--json")[1].count('"already_archived": true')
    assert cli("verify", str(bundle_dir))[0] == 0
    assert cli("verify", bundle_dir.as_uri())[0] == 0
    code, stdout, _ = cli("ls", uri)
    assert code == 0 and "PASS" in stdout
    original = (bundle_dir / "report.json").read_bytes()
    (bundle_dir / "report.json").write_text("{}")
    code, stdout, _ = cli("verify", str(bundle_dir))
    assert code == 1 and "FAIL bundle.report.json: report.json changed" in stdout
    store = open_store(uri)
    later = datetime.now(UTC) + timedelta(days=1)
    report = prune_bundles(store, "", keep_last=0, max_age=timedelta(0), now=later)
    assert report.deleted_objects == 0 and report.unverified == [bundle_dir.as_uri()]  # reported, never deleted
    (bundle_dir / "report.json").write_bytes(original)
    report = prune_bundles(store, "", keep_last=0, max_age=timedelta(0), now=later)
    assert report.deleted_objects == 5
    assert not (tmp_path / "evidence" / "quant8_balanced").exists()


def test_local_store_refuses_object_lock(reports: Path, tmp_path: Path, index_path: Path) -> None:
    code, _, stderr = cli(
        "archive", str(reports / "quant8_balanced"), "--to", (tmp_path / "e").as_uri(), "--object-lock-days", "3"
    )
    assert code == 2 and "has no Object Lock" in stderr
    shutil.rmtree(tmp_path / "e", ignore_errors=True)
